"""The ``resample`` stage without a dask graph: any output region computed directly from the
input's :class:`~voxelstream.lazy.BlockSource`.

Each region is made exactly as the graph's per-chunk task makes a chunk (the same taps from
global indices, the same axis order, the same float32 arithmetic voxel by voxel), only for a
larger block at a time, so the values are bit-identical to the dask path's for every block
cutting (tests/test_resample.py). Input blocks (the store's chunks) are read once and kept
in a small cache while the output blocks that overlap them are made (several output blocks
share input chunks, as the graph's tasks share input keys); the cache holds a few rows of
chunks along the first spatial axis, so memory does not grow with the number of slices.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from voxelstream.lazy import BlockSource

from .stage import _COMPUTE_DTYPE, _ChunkPlan, _interpolate, _non_finite_kept, _taps, axis_order

__all__ = ["resampled_source", "BlockCache"]

#: Rows of input chunks (along the first spatial axis) the cache keeps: an output block of
#: one chunk row needs at most 2 input rows when upsampling along z, and 2 threads work on
#: neighbouring output rows.
CACHED_ROWS = 2


class BlockCache:
    """Reads regions of a :class:`BlockSource` through a cache of its aligned chunks (LRU,
    bounded in bytes). Thread-safe; a chunk two threads want at once is read once."""

    def __init__(self, source: BlockSource, max_bytes: int | None = None) -> None:
        self.source = source
        self.chunks = source.chunks or source.shape
        row = source.shape[0] * self.chunks[1] * int(np.prod(source.shape[2:])) * source.dtype.itemsize
        self.max_bytes = max_bytes if max_bytes is not None else CACHED_ROWS * row
        self._blocks: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._loading: dict[tuple[int, ...], threading.Event] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:  # a copy elsewhere starts with an empty cache
        return (BlockCache, (self.source, self.max_bytes))

    def _block(self, idx: tuple[int, ...]) -> np.ndarray:
        while True:
            with self._lock:
                got = self._blocks.get(idx)
                if got is not None:
                    self._blocks.move_to_end(idx)
                    return got
                event = self._loading.get(idx)
                if event is None:
                    event = self._loading[idx] = threading.Event()
                    break
            event.wait()  # another thread is reading it
        try:
            region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, self.chunks, self.source.shape))
            block = np.asarray(self.source.read(region))
            with self._lock:
                self._blocks[idx] = block
                self._bytes += block.nbytes
                while self._bytes > self.max_bytes and len(self._blocks) > 1:
                    _, old = self._blocks.popitem(last=False)
                    self._bytes -= old.nbytes
        finally:
            with self._lock:
                self._loading.pop(idx).set()
        return block

    def read(self, region: tuple[slice, ...], dtype: np.dtype) -> np.ndarray:
        """``region`` of the source as a new ``dtype`` array (converted while copied)."""
        if self.source.chunks is None:  # no grid to cache by (e.g. a memory-mapped file): read it
            return np.array(self.source.read(region), dtype=dtype)
        out = np.empty(tuple(r.stop - r.start for r in region), dtype=dtype)
        ranges = [range(r.start // c, -(-r.stop // c)) for r, c in zip(region, self.chunks)]
        for idx in itertools.product(*ranges):
            block = self._block(idx)
            lo = [max(r.start, i * c) for r, i, c in zip(region, idx, self.chunks)]
            hi = [min(r.stop, (i + 1) * c) for r, i, c in zip(region, idx, self.chunks)]
            out[tuple(slice(a - r.start, b - r.start) for a, b, r in zip(lo, hi, region))] = block[
                tuple(slice(a - i * c, b - i * c) for a, b, i, c in zip(lo, hi, idx, self.chunks))]
        return out


#: Output tile edge a region is computed in: a 64^3 tile's passes stay in the CPU caches
#: (2-4x faster per voxel than a band of the whole plane, measured).
TILE = 64


def _read(cache: BlockCache, ratios: tuple[float, ...], order: int, region: tuple[slice, ...]) -> np.ndarray:
    """Output ``region`` ``(c, z, y, x)``, tile by tile."""
    edges = [range(r.start, r.stop, TILE) for r in region[1:]]
    if all(len(e) == 1 for e in edges):
        return _tile(cache, ratios, order, region)
    out = np.empty(tuple(r.stop - r.start for r in region), dtype=cache.source.dtype if order == 0 else _COMPUTE_DTYPE)
    for starts in itertools.product(*edges):
        tile = (region[0], *(slice(s, min(s + TILE, r.stop)) for s, r in zip(starts, region[1:])))
        out[(slice(None), *(slice(t.start - r.start, t.stop - r.start) for t, r in zip(tile[1:], region[1:])))] = \
            _tile(cache, ratios, order, tile)
    return out


def _tile(cache: BlockCache, ratios: tuple[float, ...], order: int, region: tuple[slice, ...]) -> np.ndarray:
    """Output ``region``: the input region its taps need, interpolated one axis at a time as
    the graph's tasks do (:func:`.stage._resample_chunk`)."""
    in_shape = cache.source.shape[1:]
    out_ranges = tuple((r.start, r.stop) for r in region[1:])
    taps = [_taps(j0, j1, ratio, n, order) for (j0, j1), ratio, n in zip(out_ranges, ratios, in_shape)]
    in_region = (region[0], *(slice(t.lo, t.hi) for t in taps))
    src_dtype = cache.source.dtype
    block = cache.read(in_region, src_dtype if order == 0 else _COMPUTE_DTYPE)
    plan = _ChunkPlan(inner=(), where=(), region_shape=block.shape, region_lo=tuple(t.lo for t in taps),
                      out_ranges=out_ranges, ratios=ratios, in_shape=in_shape, order=order,
                      axes=axis_order(ratios), lead=1)
    # integer inputs cannot hold NaN/inf: no extra pass over their region
    if order and src_dtype.kind in "fc" and not np.isfinite(block).all():
        return _non_finite_kept(block, plan)
    return _interpolate(block, plan, order)


def resampled_source(source: BlockSource, shape: tuple[int, ...], ratios: tuple[float, ...], order: int,
                     to_dask: Callable[[], Any]) -> BlockSource:
    """The resampled volume of ``shape`` ``(C, Z, Y, X)`` as a :class:`BlockSource` over the
    input ``source`` (``ratios``: output spacing / input spacing per spatial axis)."""
    dtype = source.dtype if order == 0 else _COMPUTE_DTYPE
    read = functools.partial(_read, BlockCache(source), tuple(float(r) for r in ratios), int(order))
    return BlockSource(shape, dtype, read, to_dask, per_chunk=True)
