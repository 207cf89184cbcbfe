"""Stores voxelstream did not make are refused with one line and left byte-for-byte as they
were; opening a store of ours to read never writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import zarr

import voxelstream as vs
from voxelstream.cli.main import main
from voxelstream.errors import StoreError
from voxelstream.testing import sample_volume


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and folder: content hash and modification time (ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            out[str(p.relative_to(root))] = (digest, p.stat().st_mtime_ns)
    return out


def _ome_zarr_from_ome_zarr_py(path: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    data = np.random.default_rng(0).integers(0, 255, (1, 8, 16, 16)).astype(np.uint8)
    root = zarr.open_group(parse_url(str(path), mode="w").store, mode="w")
    write_image(data, root, axes="czyx", scaler=None)


def _zarr_v2(path: Path) -> None:
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.create_array("a", shape=(4, 4), dtype="i2")[:] = 1


def _bare_array(path: Path) -> None:
    zarr.create_array(str(path), shape=(4, 4, 4), dtype="f4")[:] = 2.0


@pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler:DeprecationWarning")
@pytest.mark.parametrize("make, words", [
    (_ome_zarr_from_ome_zarr_py, "another tool"),
    (_zarr_v2, "Zarr v2"),
    (_bare_array, "bare Zarr array"),
])
def test_a_foreign_store_is_refused_and_untouched(tmp_path, capsys, make, words):
    path = tmp_path / "foreign.zarr"
    make(path)
    before = _snapshot(path)
    with pytest.raises(StoreError, match=words):
        vs.open_store(path)
    with pytest.raises(StoreError, match=words):
        vs.open_store(path, create=True)
    scans = tmp_path / "scans"
    scans.mkdir()
    sample_volume((6, 6, 6)).to_zarr(tmp_path / "ours.zarr", "v")  # something readable to ingest
    for argv in (["ingest", str(tmp_path / "ours.zarr"), "--store", str(path)], ["verify", "--store", str(path)],
                 ["verify", "--store", str(path), "--repair"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    assert _snapshot(path) == before


def test_a_folder_of_other_files_is_not_made_a_store(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "note.txt").write_text("mine")
    before = _snapshot(folder)
    with pytest.raises(StoreError, match="not a voxelstream store"):
        vs.open_store(folder, create=True)
    assert _snapshot(folder) == before


def test_opening_and_reading_our_store_never_writes(tmp_path):
    store = sample_volume((10, 11, 12)).to_zarr(tmp_path / "s.zarr", "v", chunks=8)
    before = _snapshot(store.path)
    again = vs.open_store(store.path)
    again.volume_ids()
    again.volume_ids("image")
    again.open("v").data.compute()
    again.read_region("v", "image", (slice(None), slice(2, 5), slice(0, 11), slice(3, 4)))
    again.is_complete("v", params={})
    assert main(["verify", "--store", str(store.path)]) == 0
    assert _snapshot(store.path) == before
