"""The ``resample`` stage: a lazy, chunk-streamed change of voxel spacing.

The output grid keeps the input's origin and direction cosines, so every world feature
stays where it was, and the resampling is separable along the index axes. The dask graph
has one task per output chunk; it depends only on the input chunks its stencil touches,
cuts that region out of them, and interpolates it one axis at a time (see
:mod:`voxelstream_resample.kernels`). Nothing of full-volume size is ever allocated.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence, Set as AbstractSet
from dataclasses import dataclass
from itertools import product
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import List, Task, TaskRef
from dask.highlevelgraph import HighLevelGraph, Layer, MaterializedLayer
from dask.tokenize import tokenize

import voxelstream as vs
from voxelstream import geometry
from voxelstream.limits import check_output_size
from voxelstream.store import DEFAULT_CHUNK

from .kernels import ORDERS, AxisTaps, apply_taps, axis_taps, linear_pass

__all__ = ["resample", "output_shape", "axis_order", "RESAMPLE_STAGE"]

_COMPUTE_DTYPE = np.dtype(np.float32)


def _triple(value: float | Sequence[float], what: str) -> tuple[float, float, float]:
    v = (value,) * 3 if np.isscalar(value) else tuple(value)  # type: ignore[arg-type]
    if len(v) != 3 or not all(float(s) > 0 for s in v):
        raise vs.VoxelstreamError(f"resample: {what} must be a positive number or three (z, y, x), got {value!r}")
    return tuple(float(s) for s in v)  # type: ignore[return-value]


def output_shape(in_shape: Sequence[int], in_spacing: Sequence[float], out_spacing: Sequence[float]) -> tuple[int, ...]:
    """``round(in_size * in_spacing / out_spacing)`` per axis (halves round up, at least 1)."""
    return tuple(
        max(1, math.floor(n * a / b + 0.5)) for n, a, b in zip(in_shape, in_spacing, out_spacing)
    )


def axis_order(ratios: Sequence[float]) -> tuple[int, ...]:
    """Axes in the order they are resampled: the most shrinking first (least work later).

    ``ratios`` are ``out_spacing / in_spacing``; the order depends on them only, never on
    the chunking, so each voxel goes through the same arithmetic in every chunking.
    """
    return tuple(sorted(range(len(ratios)), key=lambda a: (-ratios[a], a)))


@dataclass(frozen=True)
class _ChunkPlan:
    """What one output-chunk task needs besides its input blocks.

    One opaque object per task: dask does not walk it looking for keys, which keeps graph
    construction cheap for volumes of thousands of chunks. Made per task, on demand, by
    :class:`_ResampleLayer`.
    """

    inner: tuple[tuple[slice, ...], ...]  # per input block: the part the stencil needs
    where: tuple[tuple[slice, ...], ...]  # per input block: where that part goes in the region
    region_shape: tuple[int, ...]
    region_lo: tuple[int, ...]  # global input index of the region's first voxel, per axis
    out_ranges: tuple[tuple[int, int], ...]  # global output index range, per axis
    ratios: tuple[float, ...]
    in_shape: tuple[int, ...]
    order: int
    axes: tuple[int, ...]
    lead: int


@functools.lru_cache(maxsize=4096)
def _taps(j0: int, j1: int, ratio: float, n_in: int, order: int) -> AxisTaps:
    # the same few output ranges recur along each axis (one per block row): compute them once
    taps = axis_taps(j0, j1, ratio, n_in, order)
    for arr in (taps.index, taps.weight):
        if arr is not None:
            arr.flags.writeable = False  # shared by every task and thread
    return taps


@functools.lru_cache(maxsize=4096)
def _linear_args(j0: int, j1: int, ratio: float, n_in: int, lo: int, ndim: int, axis: int) -> tuple[np.ndarray, ...]:
    """:func:`linear_pass`'s arguments for output samples ``j0 .. j1 - 1`` of a region whose
    first voxel is input index ``lo``: the two taps' indices into the region and the float32
    weight shaped for ``axis`` of an ``ndim``-D block, made once per output range instead
    of in every task."""
    taps = _taps(j0, j1, ratio, n_in, 1)
    shape = [1] * ndim
    shape[axis] = -1
    args = (taps.index[:, 0] - lo, taps.index[:, 1] - lo, taps.weight[:, 1].astype(_COMPUTE_DTYPE).reshape(shape))
    for arr in args:
        arr.flags.writeable = False
    return args


def _resample_chunk(blocks: list[np.ndarray], plan: _ChunkPlan) -> np.ndarray:
    """One output chunk: assemble the input region from its blocks, then interpolate."""
    # interpolating orders work in float32: converting while assembling costs no extra pass
    dtype = blocks[0].dtype if plan.order == 0 else _COMPUTE_DTYPE
    region = np.empty(plan.region_shape, dtype=dtype)
    for block, inner, where in zip(blocks, plan.inner, plan.where):
        region[where] = block[inner]
    # integer inputs cannot hold NaN/inf: no extra pass over their region
    if plan.order and blocks[0].dtype.kind in "fc" and not np.isfinite(region).all():
        return _non_finite_kept(region, plan)
    return _interpolate(region, plan, plan.order)


def _interpolate(region: np.ndarray, plan: _ChunkPlan, order: int) -> np.ndarray:
    for a in plan.axes:
        axis = plan.lead + a
        if order == 1:  # the default, with its per-range arguments cached
            region = linear_pass(region, axis, *_linear_args(*plan.out_ranges[a], plan.ratios[a], plan.in_shape[a],
                                                             plan.region_lo[a], region.ndim, axis))
        else:
            taps = _taps(*plan.out_ranges[a], plan.ratios[a], plan.in_shape[a], order)
            region = apply_taps(region, axis, taps, plan.region_lo[a], _COMPUTE_DTYPE)
    return region


def _non_finite_kept(region: np.ndarray, plan: _ChunkPlan) -> np.ndarray:
    """The NaN/Inf policy: a non-finite input voxel reaches exactly the output voxels whose
    linear-interpolation footprint gives it a non-zero weight (NaN, or +/-inf; both signs
    or a NaN: NaN), and nowhere else: the values are interpolated with it taken as 0 (so a
    cubic prefilter or a zero-weight tap cannot carry it along a whole line)."""
    nan, pos, neg = np.isnan(region), np.isposinf(region), np.isneginf(region)
    out = _interpolate(np.where(nan | pos | neg, 0, region).astype(region.dtype), plan, plan.order)
    touched = [_interpolate(m.astype(_COMPUTE_DTYPE), plan, 1) > 0 for m in (nan, pos, neg)]
    out[touched[1]] = np.inf
    out[touched[2]] = -np.inf
    out[touched[0] | (touched[1] & touched[2])] = np.nan
    return out


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


def resample(
    volume: vs.Volume,
    spacing: float | Sequence[float] = (1.0, 1.0, 1.0),
    order: int = 1,
    chunks: int | Sequence[int] | None = None,
) -> vs.Volume:
    """Resample ``volume`` lazily to ``spacing`` mm ``(z, y, x)``.

    Args:
        volume: a 3-D volume ``(C, Z, Y, X)`` (the channel axis is kept whole).
        spacing: output voxel size in mm, one number or ``(z, y, x)``.
        order: 0 nearest (for label masks: keeps the input dtype and values), 1 linear
            (SimpleITK ``sitkLinear`` inside the input, edge values extended past it),
            3 cubic B-spline (SimpleITK ``sitkBSpline``, mirror boundaries). Orders 1 and 3
            compute and return float32.
        chunks: output chunk edge(s) in voxels (default 64, the store's chunk, so writes
            need no rechunk).

    Returns:
        A lazy volume on the grid with the same origin and direction, voxel size
        ``spacing`` and shape ``round(in_size * in_spacing / spacing)`` per axis.
        The result is identical for every input chunking.
    """
    if order not in ORDERS:
        raise vs.VoxelstreamError(f"resample: order must be one of {ORDERS} (0 nearest, 1 linear, 3 cubic), got {order!r}")
    if volume.spatial_ndim != 3:
        raise vs.VoxelstreamError(
            f"resample works on images with 3 spatial axes; this one has axes {volume.axes} "
            "(scale 2-D images with a 2-D stage of their task)"
        )
    out_spacing = _triple(spacing, "spacing")
    data = volume.data
    lead = data.ndim - 3
    if lead:  # the channel axis travels whole with every chunk
        data = data.rechunk({0: -1})
    in_spacing = volume.spacing
    shape = output_shape(volume.spatial_shape, in_spacing, out_spacing)
    # refused before any graph is built: a 0.01 mm grid plans terabytes (limit: voxelstream.limits)
    check_output_size((*data.shape[:lead], *shape), data.dtype if order == 0 else _COMPUTE_DTYPE,
                      cause=f"spacing {' '.join(f'{s:g}' for s in out_spacing)} mm",
                      hint="choose a coarser spacing, or raise the limit")
    edge = _triple(chunks if chunks is not None else DEFAULT_CHUNK, "chunks")
    out_chunks = da.core.normalize_chunks(tuple(int(e) for e in edge), shape)
    # ratios from the spacings the grid is built from: output j sits at input index j * ratio
    ratios = tuple(b / a for a, b in zip(in_spacing, out_spacing))
    out_dtype = data.dtype if order == 0 else _COMPUTE_DTYPE
    name = "resample-" + tokenize(data.name, ratios, order, out_chunks)
    hlg = HighLevelGraph.from_collections(name, _ResampleLayer(data, out_chunks, ratios, order, name),
                                          dependencies=[data])
    out = da.Array(hlg, name, data.chunks[:lead] + out_chunks, dtype=out_dtype)
    return volume.replace(data=out, affine=geometry.resampled_affine(volume.affine, out_spacing))


RESAMPLE_STAGE = vs.StageSpec(
    name="resample",
    fn=resample,
    description="resample to a new voxel spacing (same origin and direction), chunk-streamed",
    params={"spacing": [1.0, 1.0, 1.0], "order": 1, "chunks": None},
)
