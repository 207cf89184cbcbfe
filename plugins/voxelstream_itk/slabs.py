"""A lazy dask array made of blocks, each read by one task from the file itself.

Every way of reading (memory-mapped or streamed raw data, SimpleITK's streaming reader)
shares this: a task is ``read(z0, z1, y0, y1, **plain_kwargs)`` and returns the block
``[z0:z1, y0:y1]`` in ``(z, y, x[, c])`` order. Blocks are sized by bytes, not slices: up
to :data:`SLAB_SLICES` whole slices while they fit :data:`SLAB_BYTES`, and a slice larger
than that (a 20000 x 20000 scan) is read in bands of rows. Only plain data (paths, offsets,
dtype names) goes into the graph, so it pickles to dask.distributed workers and nothing is
read before the graph runs.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

__all__ = ["SLAB_BYTES", "SLAB_SLICES", "block_plan", "slab_depth", "slab_array"]

# A slab of 64 slices matches the store's default 64-voxel chunk edge (so rechunking to it
# only splits y and x); for large slices fewer slices keep one task near SLAB_BYTES.
SLAB_SLICES = 64
SLAB_BYTES = 64 * 2**20


def slab_depth(slice_bytes: int, slices: int = SLAB_SLICES, max_bytes: int = SLAB_BYTES) -> int:
    """Slices per task: ``slices``, or fewer when that would exceed ``max_bytes``."""
    return max(1, min(slices, max_bytes // max(1, slice_bytes)))


def block_plan(shape: tuple[int, ...], itemsize: int, depth: int | None = None,
               max_bytes: int = SLAB_BYTES, deep: bool = False) -> tuple[int, int]:
    """``(slices, rows)`` per task for an array of ``shape`` (z, y, x[, c]).

    Default (data read front to back, e.g. inflated streams): whole slices, ``depth`` or
    as many as fit ``max_bytes`` (:func:`slab_depth`), and one slice in bands of rows when
    a slice alone is larger. ``deep`` (random access, e.g. memory maps): :data:`SLAB_SLICES`
    slices (the store's chunk depth) in bands of rows that fit ``max_bytes`` (multiples of
    64 rows where possible), so that one block feeds whole store chunks: thin full-plane
    slabs would make the store hold a whole 64-slice section of them at once."""
    row_bytes = int(np.prod(shape[2:], dtype=np.int64)) * itemsize
    slice_bytes = row_bytes * shape[1]
    if deep:
        z = min(shape[0], depth or SLAB_SLICES)
        rows = max_bytes // max(1, z * row_bytes)
        if rows < 1:  # even one row of that many slices is too much: fewer slices
            return max(1, max_bytes // max(1, row_bytes)), 1
        if rows < shape[1] and rows >= 64:
            rows -= rows % 64
        return z, min(shape[1], rows)
    if slice_bytes <= max_bytes:
        return (depth or slab_depth(slice_bytes, max_bytes=max_bytes)), shape[1]
    return 1, max(1, min(shape[1], max_bytes // max(1, row_bytes)))


def _file_token(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def slab_array(
    read: Callable[..., np.ndarray],
    shape: tuple[int, ...],
    dtype: str,
    depth: int | None = None,
    /,
    *,
    path: str,
    max_bytes: int = SLAB_BYTES,
    deep: bool = False,
    **kwargs: Any,
) -> da.Array:
    """Dask array of ``shape`` (z first) whose blocks (see :func:`block_plan`; ``deep`` for
    random-access sources) are each
    ``read(z0, z1, y0, y1, path=path, **kwargs)``. The graph name depends on the file's
    size and modification time, so a changed file is never served from a stale cache."""
    nz, ny = shape[0], shape[1]
    zd, band = block_plan(shape, np.dtype(dtype).itemsize, depth, max_bytes, deep)
    zb = [(z0, min(z0 + zd, nz)) for z0 in range(0, nz, zd)]
    yb = [(y0, min(y0 + band, ny)) for y0 in range(0, ny, band)]
    task = functools.partial(read, path=path, **kwargs)
    name = f"{read.__name__.replace('_', '-')}-" + tokenize(
        read.__module__, read.__qualname__, path, _file_token(path), shape, dtype, zd, band, sorted(kwargs.items())
    )
    rest = (0,) * (len(shape) - 2)
    dsk = {(name, i, j, *rest): (task, z0, z1, y0, y1)
           for i, (z0, z1) in enumerate(zb) for j, (y0, y1) in enumerate(yb)}
    chunks = (tuple(z1 - z0 for z0, z1 in zb), tuple(y1 - y0 for y0, y1 in yb)) + tuple((n,) for n in shape[2:])
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    assert math.prod(len(c) for c in chunks) == len(dsk)
    return da.Array(graph, name, chunks, dtype=np.dtype(dtype))
