"""The store reads and writes plain-layout chunks itself (numcodecs Blosc + files), outside
zarr-python's event loop: what it writes must be exactly what zarr writes, and what it reads
exactly what zarr reads."""

from __future__ import annotations

import hashlib
import os

import dask.array as da
import numpy as np
import pytest
import zarr

import voxelstream as vs
import voxelstream.store.chunkio as st
from voxelstream.store.planning import default_codecs


def _chunk_files(root) -> dict[str, str]:
    return {
        os.path.relpath(os.path.join(d, f), root): hashlib.md5(open(os.path.join(d, f), "rb").read()).hexdigest()
        for d, _, files in os.walk(root)
        for f in files
        if f != "zarr.json"
    }


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_written_chunk_files_are_the_ones_zarr_writes(tmp_path, dtype):
    rng = np.random.default_rng(1)
    a = rng.normal(0, 100, (20, 21, 22)).astype(dtype)
    a[:8, :8, :8] = 0  # a chunk of fill value only: zarr does not store it
    a[16:, 16:, 16:] = 0  # an edge chunk of fill value only
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(vs.Volume.from_array(da.from_array(a, chunks=(8, 16, 8))), "v", chunks=8)
    ref = zarr.create_array(tmp_path / "ref.zarr", shape=(1, *a.shape), chunks=(1, 8, 8, 8), dtype=a.dtype,
                            compressors=default_codecs(), fill_value=0)
    ref[:] = a[None]
    ours = _chunk_files(tmp_path / "s.zarr" / "volumes" / "v" / "image" / "0")
    assert ours == _chunk_files(tmp_path / "ref.zarr")
    assert len(ours) == 27 - 2
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "s.zarr", path="volumes/v/image/0")[0], a)


def test_direct_reads_match_numpy_for_any_slices(tmp_path):
    rng = np.random.default_rng(2)
    a = rng.integers(-1000, 1000, (19, 23, 17)).astype(np.int16)
    a[:8] = 0
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(vs.Volume.from_array(da.from_array(a, chunks=8)), "v", chunks=8)
    arr = zarr.open_array(tmp_path / "s.zarr", path="volumes/v/image/0", mode="r")
    reader = st.ChunkReader(arr, st.plain_codec(arr))
    for _ in range(30):
        lo = [int(rng.integers(0, n)) for n in a.shape]
        sel = tuple(slice(l, int(rng.integers(l + 1, n + 1))) for l, n in zip(lo, a.shape))
        np.testing.assert_array_equal(reader[(slice(0, 1), *sel)][0], a[sel])
    whole = reader[0:1, 8:16, 8:16, 0:8]
    whole[...] = 7  # a chunk handed to dask is its own writable array
    np.testing.assert_array_equal(reader[0:1, 8:16, 8:16, 0:8][0], a[8:16, 8:16, 0:8])
    np.testing.assert_array_equal(store.open("v").data[0, 3:17, 5:20, 1:16].compute(), a[3:17, 5:20, 1:16])


def test_other_layouts_go_through_zarr(tmp_path):
    zstd = zarr.create_array(tmp_path / "z.zarr", shape=(4, 4, 4), chunks=(2, 2, 2), dtype="int16",
                             compressors=zarr.codecs.ZstdCodec())
    assert st.plain_codec(zstd) is None
    mem = zarr.create_array(zarr.storage.MemoryStore(), shape=(4, 4, 4), chunks=(2, 2, 2), dtype="int16",
                            compressors=vs.store.default_compressor())
    assert st.plain_codec(mem) is None
