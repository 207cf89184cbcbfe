"""The ``resample`` stage: a lazy, chunk-streamed change of voxel spacing.

The output grid keeps the input's origin and direction cosines, so every world feature
stays where it was, and the resampling is separable along the index axes. Each output
chunk depends only on the input chunks its stencil touches: that region is cut out of them
and interpolated one axis at a time (see :mod:`voxelstream_resample.kernels`). Nothing of
full-volume size is ever allocated.

Two forms of the same computation: when the input computes its regions directly (a
:class:`voxelstream.BlockSource`, e.g. a stored volume), so does the output
(:mod:`.source`: no dask graph; the store writes it on a thread pool); otherwise, and
whenever a later stage asks for ``volume.data``, a dask graph with one task per output chunk
(:mod:`.graph`). Both give bit-identical values for every chunking.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import voxelstream as vs
from voxelstream import geometry
from voxelstream.constants import DEFAULT_CHUNK
from voxelstream.limits import check_output_size

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
    lead = 1  # the channel axis travels whole with every chunk
    in_spacing = volume.spacing
    shape = output_shape(volume.spatial_shape, in_spacing, out_spacing)
    out_dtype = volume.dtype if order == 0 else _COMPUTE_DTYPE
    # refused before any graph is built: a 0.01 mm grid plans terabytes (limit: voxelstream.limits)
    check_output_size((*volume.shape[:lead], *shape), out_dtype,
                      cause=f"spacing {' '.join(f'{s:g}' for s in out_spacing)} mm",
                      hint="choose a coarser spacing, or raise the limit")
    edge = tuple(int(e) for e in _triple(chunks if chunks is not None else DEFAULT_CHUNK, "chunks"))
    # ratios from the spacings the grid is built from: output j sits at input index j * ratio
    ratios = tuple(b / a for a, b in zip(in_spacing, out_spacing))
    affine = geometry.resampled_affine(volume.affine, out_spacing)
    graph = functools.partial(_graph, volume, shape, edge, ratios, order)
    if volume.source is None:
        return volume.replace(data=graph(), affine=affine)
    from .source import resampled_source  # regions computed directly; the graph only if asked for

    return volume.replace(data=resampled_source(volume.source, (*volume.shape[:lead], *shape), ratios, order, graph),
                          affine=affine)


def _graph(volume: vs.Volume, shape: tuple[int, ...], edge: tuple[int, ...], ratios: tuple[float, ...],
           order: int) -> Any:
    """The dask form: one task per output chunk of ``edge`` (see :mod:`.graph`)."""
    from .graph import resample_graph

    return resample_graph(volume.data, shape, edge, ratios, order)


RESAMPLE_STAGE = vs.StageSpec(
    name="resample",
    fn=resample,
    description="resample to a new voxel spacing (same origin and direction), chunk-streamed",
    params={"spacing": [1.0, 1.0, 1.0], "order": 1, "chunks": None},
)
