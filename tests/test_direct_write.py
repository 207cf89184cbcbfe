"""Volumes with a BlockSource are written without dask or zarr-python (voxelstream.store.direct):
the files must be exactly the ones the dask path (and so zarr) writes, the array document
exactly zarr's, whatever the threads and blocks; a failing source must leave nothing behind."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os

import dask.array as da
import numpy as np
import pytest
import zarr

import voxelstream as vs
from voxelstream.lazy import BlockSource
from voxelstream.store import direct
from voxelstream.store.planning import default_codecs


def _files(root) -> dict[str, str]:
    return {os.path.relpath(os.path.join(d, f), root): hashlib.md5(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, files in os.walk(root) for f in files}


def _read(a: np.ndarray, region):
    return a[region].copy()


def _sourced(a: np.ndarray, per_chunk: bool = False, chunks=None) -> vs.Volume:
    """A volume whose data is a BlockSource over ``a`` (channel-first)."""
    src = BlockSource(a.shape, a.dtype, functools.partial(_read, a), lambda: da.from_array(a, chunks=(1, 7, 9, 11)),
                      chunks=chunks, per_chunk=per_chunk)
    return vs.Volume(src, np.diag([0.7, 0.8, 2.5, 1.0]), {"id": "v"})


def _sample(dtype) -> np.ndarray:
    rng = np.random.default_rng(3)
    a = rng.normal(0, 300, (1, 21, 30, 26)).astype(dtype)
    a[:, :8, :8, :8] = 0  # a chunk of fill value only: not stored
    if np.dtype(dtype).kind == "f":
        a[0, 3, 4, 5] = np.nan
        a[0, 20, 29, 25] = -np.inf
    return a


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8, np.float64, np.int64, bool])
def test_array_document_is_zarrs(tmp_path, dtype):
    ref = zarr.create_array(tmp_path / "ref.zarr", shape=(1, 5, 6, 7), chunks=(1, 2, 3, 4), dtype=dtype,
                            compressors=default_codecs(), fill_value=0, dimension_names=["c", "z", "y", "x"])
    want = json.loads((tmp_path / "ref.zarr" / "zarr.json").read_text())
    assert direct.array_doc(ref.shape, ref.chunks, np.dtype(dtype), ["c", "z", "y", "x"]) == want


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
@pytest.mark.parametrize("per_chunk", [False, True])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_direct_files_are_the_dask_paths_files(tmp_path, dtype, per_chunk, workers, monkeypatch):
    a = _sample(dtype)
    monkeypatch.setattr(direct, "direct_workers", lambda: workers)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    vol = _sourced(a, per_chunk)
    store.write(vol, "v", "direct", chunks=8)
    assert vol._data is None  # written from the source: no dask graph was built
    store.write(vs.Volume(vol.data, vol.affine, vol.meta), "v", "dask", chunks=8)
    base = tmp_path / "s.zarr" / "volumes" / "v"
    assert _files(base / "direct" / "0") == _files(base / "dask" / "0")
    got = zarr.open_array(tmp_path / "s.zarr", path="volumes/v/direct/0", mode="r")[...]
    np.testing.assert_array_equal(got, a)
    # the direct path maps the chunks it wrote; the dask path walks the folders: the same map
    got, want = store.output_attrs("v", "direct"), store.output_attrs("v", "dask")
    assert (got["chunk_files"], got["stored_chunks"]) == (want["chunk_files"], want["stored_chunks"])
    # and the count is the chunks not of fill value only (those are neither stored nor mapped)
    grid = itertools.product(range(0, 21, 8), range(0, 30, 8), range(0, 26, 8))
    assert got["chunk_files"] == sum(not np.all(a[:, z:z + 8, y:y + 8, x:x + 8] == 0) for z, y, x in grid)


def test_small_write_budget_gives_the_same_files(tmp_path):
    a = _sample(np.int16)
    root = tmp_path / "a"
    direct.write_source(functools.partial(_read, a), a.shape, a.dtype, (1, 8, 8, 8), root)
    other = tmp_path / "b"
    direct.write_source(functools.partial(_read, a), a.shape, a.dtype, (1, 8, 8, 8), other, budget=1, workers=2)
    assert _files(root) == _files(other) and len(_files(root)) == 3 * 4 * 4 - 1


def test_block_regions_cover_the_volume_once():
    shape, chunks = (2, 21, 30, 26), (2, 8, 8, 8)
    for per_chunk in (False, True):
        for budget in (1, 3000, 10**9):
            seen = np.zeros(shape, dtype=int)
            for region in direct.block_regions(shape, chunks, 4, budget, per_chunk):
                assert all(r.start % c == 0 for r, c in zip(region, chunks))  # whole chunks: one writer each
                seen[region] += 1
            assert (seen == 1).all()


def test_failing_source_commits_nothing(tmp_path):
    a = _sample(np.int16)

    def broken(region):
        if region[1].start >= 16:
            raise OSError("disk went away")
        return a[region]

    store = vs.open_store(tmp_path / "s.zarr", create=True)
    vol = vs.Volume(BlockSource(a.shape, a.dtype, broken, lambda: da.from_array(a)), np.eye(4), {})
    with pytest.raises(OSError, match="disk went away"):
        store.write(vol, "v", chunks=8)
    assert store.names("v") == [] or not store.is_complete("v")


def test_wrong_block_shape_is_an_error(tmp_path):
    a = _sample(np.int16)
    vol = vs.Volume(BlockSource(a.shape, a.dtype, lambda region: a[:, :2], lambda: da.from_array(a)), np.eye(4), {})
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    with pytest.raises(ValueError, match="returned shape"):
        store.write(vol, "v", chunks=8)


def test_stored_volume_reads_regions_without_dask(tmp_path):
    a = _sample(np.float32)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(vs.Volume.from_array(a[0]), "v", chunks=8)
    vol = store.open("v")
    assert vol.source is not None and vol._data is None
    region = (slice(0, 1), slice(3, 17), slice(5, 30), slice(0, 9))
    np.testing.assert_array_equal(vol.source.read(region), a[region])
    np.testing.assert_array_equal(vol.data.compute(), a)  # the dask form, built on demand, agrees


def test_heap_trims_during_a_long_write_change_nothing(tmp_path, monkeypatch):
    a = _sample(np.float32)
    direct.write_source(functools.partial(_read, a), a.shape, a.dtype, (1, 8, 8, 8), tmp_path / "a", workers=2)
    calls = []
    real = direct._heap_trimmer

    def counted():
        trim = real()
        return lambda: calls.append(trim())

    monkeypatch.setattr(direct, "TRIM_EVERY", 3000)  # "long": a trim every couple of blocks
    monkeypatch.setattr(direct, "_heap_trimmer", counted)
    direct.write_source(functools.partial(_read, a), a.shape, a.dtype, (1, 8, 8, 8), tmp_path / "b", workers=2)
    assert len(calls) >= 5 and _files(tmp_path / "a") == _files(tmp_path / "b")


def test_stored_arrays_are_read_from_their_document_without_zarr(tmp_path):
    """The store's own arrays are opened from zarr.json alone (direct.PlainArray); reads equal
    zarr-python's, fancy keys are handed to zarr, and any other layout is zarr's to open."""
    from voxelstream.store.reading import _source

    a = _sample(np.int16)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(vs.Volume.from_array(a[0]), "v", chunks=8)
    root, path = str(tmp_path / "s.zarr"), "volumes/v/image/0"
    plain, _ = direct.plain_array(root, path)
    assert plain.shape == a.shape and plain.chunks == (1, 8, 8, 8) and plain.dtype == a.dtype
    reader = store.reader("v")
    ref = zarr.open_array(root, path=path, mode="r")
    rng = np.random.default_rng(4)
    for _ in range(20):
        lo = [int(rng.integers(0, n)) for n in a.shape[1:]]
        sel = (slice(0, 1), *(slice(l, int(rng.integers(l + 1, n + 1))) for l, n in zip(lo, a.shape[1:])))
        np.testing.assert_array_equal(reader[sel], ref[sel])
    np.testing.assert_array_equal(reader[0, [1, 5], 3], a[0, [1, 5], 3])  # fancy: through zarr
    other = zarr.create_array(tmp_path / "other.zarr", shape=(1, 9, 9, 9), chunks=(1, 4, 4, 4), dtype="int16",
                              compressors=[zarr.codecs.ZstdCodec()], fill_value=0)
    other[:] = 3
    assert direct.plain_array(str(tmp_path / "other.zarr"), "") is None
    assert int(np.asarray(_source(str(tmp_path / "other.zarr"), "", "t", "other")[0, 1, 2, 3])) == 3
