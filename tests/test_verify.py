"""Checksummed chunks, ``voxelstream verify [--repair]``, and damage contained to its volume."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import zarr

import voxelstream as vs
from voxelstream.cli.main import main
from voxelstream.errors import StoreError
from voxelstream.pipeline import StageCall, run_pipeline
from voxelstream.testing import sample_volume


@pytest.fixture
def store(tmp_path) -> vs.Store:
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    for i, vid in enumerate(("a", "b", "c")):
        store.write(sample_volume((16, 16, 16), seed=i), vid, chunks=8, params={"k": 1})
    return store


def _flip_a_byte(store: vs.Store, vid: str, name: str = "image") -> str:
    """Flip one byte in the middle of one chunk file; returns the chunk key."""
    base = store.path / "volumes" / vid / name / "0"
    chunk = sorted(p for p in base.rglob("*") if p.is_file() and p.name != "zarr.json")[3]
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    return str(chunk.relative_to(base))


def test_chunks_carry_crc32c_that_zarr_itself_checks(store):
    arr = zarr.open_array(store=str(store.path), path="volumes/a/image/0", mode="r")
    assert [c.to_dict()["name"] for c in arr.metadata.codecs][-1] == "crc32c"
    key = _flip_a_byte(store, "a")
    with pytest.raises(ValueError, match="checksum"):  # zarr's own reader agrees it is damaged
        arr[:]
    assert key.startswith("c/")


def test_a_damaged_chunk_fails_its_volume_naming_volume_output_and_chunk(store):
    key = _flip_a_byte(store, "b")
    with pytest.raises(StoreError, match=re.escape(f"b: output 'image': chunk {key}")):
        store.open("b").data.compute()
    assert "checksum" in _smooth_fails_b_only(store)


def _smooth_fails_b_only(store: vs.Store) -> str:
    """Run a stage over the store: volume b fails with one line naming its chunk, a and c
    are made; returns b's error line."""
    out, err = io.StringIO(), io.StringIO()
    report = run_pipeline(store, [StageCall("gaussian", {"sigma": 1.0})], output="smooth", chunks=8, out=out, err=err)
    assert report.exit_code == 1
    (line,) = [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]
    assert line.startswith("error: b: b: output 'image': chunk c/")
    assert store.volume_ids("smooth") == ["a", "c"]
    return line


def test_verify_finds_damage_and_repair_makes_a_rerun_rebuild_it(store, capsys):
    assert main(["verify", "--store", str(store.path)]) == 0
    assert "no damage" in capsys.readouterr().out
    key = _flip_a_byte(store, "b")
    (store.path / "volumes/c/image/zarr.json").write_text('{"zarr_format": 3, "node_type": "gr')  # garbled
    assert main(["verify", "--store", str(store.path)]) == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("damaged:")]
    assert len(lines) == 2
    assert lines[0].startswith("damaged: b/image: chunk " + key) and "checksum" in lines[0]
    assert lines[1].startswith("damaged: c/image:")
    assert main(["verify", "--store", str(store.path), "--repair"]) == 1
    assert not store.is_complete("b") and store.is_complete("a")
    assert main(["verify", "--store", str(store.path)]) == 0  # incomplete outputs claim nothing
    # the rerun that makes them rebuilds exactly the repaired ones
    for i, vid in enumerate(("a", "b", "c")):
        if not store.is_complete(vid, params={"k": 1}):
            store.write(sample_volume((16, 16, 16), seed=i), vid, chunks=8, params={"k": 1})
    np.testing.assert_array_equal(store.open("b").data.compute(), sample_volume((16, 16, 16), seed=1).data.compute())
    assert main(["verify", "--store", str(store.path)]) == 0


def test_an_array_whose_shape_disagrees_with_its_metadata_is_reported(store):
    doc_path = store.path / "volumes/a/image/0/zarr.json"
    doc = json.loads(doc_path.read_text())
    doc["shape"] = [1, 16, 16, 8]
    doc_path.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="a: output 'image'.*shape"):
        store.open("a")
    out, err = io.StringIO(), io.StringIO()
    run_pipeline(store, [StageCall("gaussian", {"sigma": 1.0})], output="smooth", chunks=8, out=out, err=err)
    assert [ln.split(":")[1].strip() for ln in err.getvalue().splitlines() if ln.startswith("error:")] == ["a"]
    assert store.volume_ids("smooth") == ["b", "c"]


def test_a_volume_whose_group_document_is_gone_is_reported_not_dropped(store, capsys):
    (store.path / "volumes/b/zarr.json").unlink()
    out, err = io.StringIO(), io.StringIO()
    report = run_pipeline(store, [StageCall("gaussian", {"sigma": 1.0})], output="smooth", chunks=8, out=out, err=err)
    assert report.exit_code == 1
    assert [ln.split(":")[1].strip() for ln in err.getvalue().splitlines() if ln.startswith("error:")] == ["b"]
    assert main(["verify", "--store", str(store.path)]) == 1
    assert "damaged: b:" in capsys.readouterr().out
    assert main(["verify", "--store", str(store.path), "--repair"]) == 1  # it found damage, and repaired it
    assert "repaired: b:" in capsys.readouterr().out
    assert main(["verify", "--store", str(store.path)]) == 0
    assert store.volume_ids("image") == ["a", "b", "c"] and store.is_complete("b", params={"k": 1})


def test_a_deleted_chunk_file_is_found(store, capsys):
    """Chunks holding only the fill value are not stored, so without a record a missing file
    would read as zeros: the completion marker records which chunks hold a file."""
    base = store.path / "volumes" / "c" / "image" / "0"
    victim = sorted(p for p in base.rglob("*") if p.is_file() and p.name != "zarr.json")[2]
    victim.unlink()
    assert main(["verify", "--store", str(store.path)]) == 1
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("damaged:")]
    key = str(victim.relative_to(base))
    assert line.startswith(f"damaged: c/image: chunk {key} is missing")


def test_a_deleted_chunk_file_fails_its_volume_when_read_and_the_others_go_on(store):
    base = store.path / "volumes" / "b" / "image" / "0"
    victim = sorted(p for p in base.rglob("*") if p.is_file() and p.name != "zarr.json")[5]
    key = str(victim.relative_to(base))
    victim.unlink()
    with pytest.raises(StoreError, match=re.escape(f"b: output 'image': chunk {key} is missing")):
        store.open("b").data.compute()
    with pytest.raises(StoreError, match=re.escape(f"chunk {key} is missing")):
        store.read_region("b", "image", (slice(None), slice(0, 16), slice(0, 16), slice(0, 16)))
    assert "missing" in _smooth_fails_b_only(store)


def test_chunks_of_fill_value_only_are_not_stored_and_still_read_as_the_fill_value(tmp_path):
    """The record of stored chunks must not turn the chunks zarr never writes into errors."""
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    arr = np.zeros((16, 16, 16), np.int16)
    arr[8:, 8:, 8:] = np.arange(512, dtype=np.int16).reshape(8, 8, 8)  # one chunk of 8 holds data
    store.write(vs.Volume.from_array(arr), "v", chunks=8)
    files = [p for p in (store.path / "volumes/v/image/0/c").rglob("*") if p.is_file()]
    assert len(files) == 1  # as zarr's write_empty_chunks=False: the 7 zero chunks have no file
    np.testing.assert_array_equal(store.open("v").data.compute()[0], arr)
    np.testing.assert_array_equal(zarr.open_array(store=str(store.path), path="volumes/v/image/0")[0], arr)
    assert main(["verify", "--store", str(store.path)]) == 0
