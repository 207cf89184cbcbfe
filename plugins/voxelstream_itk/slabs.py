"""A lazy dask array made of z slabs, each read by one task from the file itself.

Both ways of reading (memory-mapped raw data, SimpleITK streaming) share this: a task is
``read(z0, z1, **plain_kwargs)`` and returns the slab ``[z0:z1]`` in ``(z, y, x[, c])``
order. Only plain data (paths, offsets, dtype names) goes into the graph, so it pickles
to dask.distributed workers and nothing is read before the graph runs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

__all__ = ["SLAB_BYTES", "slab_depth", "slab_array"]

# A slab of 64 slices matches the store's default 64-voxel chunk edge (so rechunking to it
# only splits y and x); for very large slices fewer slices keep one task near this size.
SLAB_SLICES = 64
SLAB_BYTES = 64 * 2**20


def slab_depth(slice_bytes: int, slices: int = SLAB_SLICES, max_bytes: int = SLAB_BYTES) -> int:
    """Slices per task: ``slices``, or fewer when that would exceed ``max_bytes``."""
    return max(1, min(slices, max_bytes // max(1, slice_bytes)))


def _file_token(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def slab_array(
    read: Callable[..., np.ndarray],
    shape: tuple[int, ...],
    dtype: str,
    depth: int,
    /,
    *,
    path: str,
    **kwargs: Any,
) -> da.Array:
    """Dask array of ``shape`` (z first) whose z chunks of ``depth`` slices are each
    ``read(z0, z1, path=path, **kwargs)``. The graph name depends on the file's size and
    modification time, so a changed file is never served from a stale cache."""
    nz = shape[0]
    bounds = [(z0, min(z0 + depth, nz)) for z0 in range(0, nz, depth)]
    task = functools.partial(read, path=path, **kwargs)
    name = f"{read.__name__.replace('_', '-')}-" + tokenize(
        read.__module__, read.__qualname__, path, _file_token(path), shape, dtype, depth, sorted(kwargs.items())
    )
    rest = (0,) * (len(shape) - 1)
    dsk = {(name, i, *rest): (task, z0, z1) for i, (z0, z1) in enumerate(bounds)}
    chunks = (tuple(z1 - z0 for z0, z1 in bounds),) + tuple((n,) for n in shape[1:])
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    return da.Array(graph, name, chunks, dtype=np.dtype(dtype))
