"""The ``resample`` stage as a dask graph: one task per output chunk, depending only on the
input chunks its stencil touches (see :mod:`.stage` for what each task computes)."""

from __future__ import annotations

from collections.abc import Iterator, Set as AbstractSet
from itertools import product
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import List, Task, TaskRef
from dask.highlevelgraph import HighLevelGraph, Layer, MaterializedLayer
from dask.tokenize import tokenize

from .stage import _COMPUTE_DTYPE, _ChunkPlan, _resample_chunk, _taps, axis_order

__all__ = ["resample_graph"]


def _cuts(chunks: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(chunks)])


def _axis_spans(in_chunks: tuple[int, ...], out_chunks: tuple[int, ...], ratio: float, n_in: int, order: int) -> list:
    """Per output block along one axis: ``((j0, j1), lo, [(input block, inner, where)...])``
    where ``[lo, hi)`` is the input index range its stencil needs."""
    in_cuts, out_cuts = _cuts(in_chunks), _cuts(out_chunks)
    spans = []
    for b in range(len(out_chunks)):
        j0, j1 = int(out_cuts[b]), int(out_cuts[b + 1])
        taps = _taps(j0, j1, ratio, n_in, order)
        first = int(np.searchsorted(in_cuts, taps.lo, side="right")) - 1
        last = int(np.searchsorted(in_cuts, taps.hi - 1, side="right")) - 1
        pieces = []
        for i in range(first, last + 1):
            c0, c1 = int(in_cuts[i]), int(in_cuts[i + 1])
            lo, hi = max(c0, taps.lo), min(c1, taps.hi)
            pieces.append((i, slice(lo - c0, hi - c0), slice(lo - taps.lo, hi - taps.lo)))
        spans.append(((j0, j1), taps.lo, taps.hi - taps.lo, pieces))
    return spans


class _ResampleLayer(Layer):
    """The resample tasks of one output, one per output chunk, made on demand.

    Why not a dict of tasks: that was O(volume) Python objects built up front and kept for
    the whole run (~7 MB of plans for a 1.2 GB preprocess), and every cull of it (the store
    computes its write section by section) had to scan all of them. This layer builds a
    chunk's task (its input keys and plan) only when asked for that chunk's key, so a
    section's graph costs only its own tasks.
    """

    has_legacy_tasks = False  # every task is a Task; the base class would build all to check

    def __init__(self, data: da.Array, out_chunks: tuple[tuple[int, ...], ...], ratios: tuple[float, ...],
                 order: int, name: str):
        super().__init__()
        self.name, self.in_name, self.order, self.ratios = name, data.name, order, ratios
        self.lead = data.ndim - 3
        self.lead_shape = tuple(data.shape[:self.lead])
        self.in_shape = tuple(data.shape[self.lead:])
        self.numblocks = tuple(len(c) for c in out_chunks)
        self.per_axis = [_axis_spans(data.chunks[self.lead + a], out_chunks[a], ratios[a], self.in_shape[a], order)
                         for a in range(3)]
        self.axes = axis_order(ratios)

    def _block(self, key: Any) -> tuple[int, ...] | None:
        if not (isinstance(key, tuple) and len(key) == 1 + self.lead + 3 and key[0] == self.name):
            return None
        blk = key[1 + self.lead:]
        ok = all(k == 0 for k in key[1:1 + self.lead]) and all(
            isinstance(b, int) and 0 <= b < n for b, n in zip(blk, self.numblocks))
        return blk if ok else None

    def _task(self, key: Any, blk: tuple[int, ...]) -> Task:
        """One output chunk: the input blocks its stencil touches and the plan to use them."""
        spans = [self.per_axis[a][blk[a]] for a in range(3)]
        lead_key, lead_slices = (0,) * self.lead, (slice(None),) * self.lead
        refs, inner, where = [], [], []
        for pz, py, px in product(*(s[3] for s in spans)):
            refs.append(TaskRef((self.in_name, *lead_key, pz[0], py[0], px[0])))
            inner.append(lead_slices + (pz[1], py[1], px[1]))
            where.append(lead_slices + (pz[2], py[2], px[2]))
        plan = _ChunkPlan(
            inner=tuple(inner),
            where=tuple(where),
            region_shape=self.lead_shape + tuple(s[2] for s in spans),
            region_lo=tuple(s[1] for s in spans),
            out_ranges=tuple(s[0] for s in spans),
            ratios=self.ratios,
            in_shape=self.in_shape,
            order=self.order,
            axes=self.axes,
            lead=self.lead,
        )
        return Task(key, _resample_chunk, List(*refs), plan)

    def __getitem__(self, key: Any) -> Task:
        blk = self._block(key)
        if blk is None:
            raise KeyError(key)
        return self._task(key, blk)

    def __contains__(self, key: object) -> bool:
        return self._block(key) is not None

    def __iter__(self) -> Iterator[Any]:
        lead_key = (0,) * self.lead
        return ((self.name, *lead_key, *blk) for blk in product(*(range(n) for n in self.numblocks)))

    def __len__(self) -> int:
        return int(np.prod(self.numblocks))

    def is_materialized(self) -> bool:
        return False

    def get_output_keys(self) -> AbstractSet[Any]:
        return set(self)

    def cull(self, keys: set, all_hlg_keys: Any) -> tuple[Layer, dict]:
        out = {k: self[k] for k in keys if k in self}
        return MaterializedLayer(out, annotations=self.annotations), {k: set(t.dependencies) for k, t in out.items()}


def resample_graph(data: da.Array, shape: tuple[int, ...], edge: tuple[int, ...], ratios: tuple[float, ...],
                   order: int) -> da.Array:
    """``data`` ``(C, Z, Y, X)`` resampled to spatial ``shape`` in chunks of ``edge``."""
    if data.numblocks[0] != 1:  # the channel axis travels whole with every chunk
        data = data.rechunk({0: -1})
    out_chunks = da.core.normalize_chunks(edge, shape)
    out_dtype = data.dtype if order == 0 else _COMPUTE_DTYPE
    name = "resample-" + tokenize(data.name, ratios, order, out_chunks)
    hlg = HighLevelGraph.from_collections(name, _ResampleLayer(data, out_chunks, ratios, order, name),
                                          dependencies=[data])
    return da.Array(hlg, name, data.chunks[:1] + out_chunks, dtype=out_dtype)
