"""Detections: local maxima of a probability map, in world coordinates, and their CSV.

A detection is a voxel whose probability is at least ``threshold`` and is the largest
within ``min_distance_mm`` (world mm) of it; no two detections are closer than that.

The map is never loaded whole: each chunk is max-filtered with a halo as deep as the
suppression footprint (``dask.array.map_overlap``), so a voxel sees every neighbour it is
compared with even across chunk borders, and only the (few) surviving voxels leave the
chunk. A final non-maximum suppression in world mm over those candidates settles the peaks
of flat plateaus and ties, in a fixed order, so the result does not depend on the chunking.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from scipy import ndimage

from voxelstream import Volume
from voxelstream.errors import VoxelstreamError

from .annotations import read_numeric_rows

__all__ = [
    "Detection",
    "detect_volume",
    "refine_peaks",
    "suppression_footprint",
    "world_nms",
    "write_detections",
    "read_detections",
    "DETECTION_COLUMNS",
]

DETECTION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")


@dataclass(frozen=True)
class Detection:
    """One CAD mark: series uid, world LPS centre ``(x, y, z)`` mm and probability."""

    series_uid: str
    world_xyz: tuple[float, float, float]
    probability: float


# -- finding maxima -----------------------------------------------------------------------


def suppression_footprint(spacing_zyx: Sequence[float], min_distance_mm: float) -> np.ndarray:
    """Boolean (z, y, x) footprint of the voxel offsets within ``min_distance_mm`` world mm.

    The affine is a rotation times ``diag(spacing)``, so a world ball is an axis-aligned
    ellipsoid in index space (semi-axes ``min_distance / spacing``) whatever the direction.
    """
    sp = np.asarray(spacing_zyx, dtype=float)
    half = [int(math.floor(min_distance_mm / s)) for s in sp]
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    dist2 = sum((g * s) ** 2 for g, s in zip(grids, sp))
    return dist2 <= float(min_distance_mm) ** 2


def _inscribed_box(footprint: np.ndarray) -> tuple[int, ...]:
    """Odd sizes of a centred box that lies inside ``footprint`` (an ellipsoid): the box of
    half-widths ``half / sqrt(3)``, shrunk while rounding puts a corner outside."""
    half = np.asarray(footprint.shape) // 2
    h = np.floor(half / math.sqrt(3.0)).astype(int)
    while True:
        box = tuple(slice(c - k, c + k + 1) for c, k in zip(half, h))
        if footprint[box].all() or not h.any():
            return tuple(int(2 * k + 1) for k in h)
        h[np.argmax(h)] -= 1


def _peak_map(block: np.ndarray, footprint: np.ndarray, threshold: float) -> np.ndarray:
    """``block`` where a voxel is a thresholded local maximum, NaN elsewhere.

    A maximum over the ellipsoid is also one over any box inside it, so a separable (fast)
    box max filter first narrows the voxels down to a few candidates, and only those are
    compared with their whole ellipsoid: the full footprint filter on every voxel would cost
    ~footprint-size operations per voxel (thousands at 10 mm and 0.7 mm spacing).
    """
    values = np.asarray(block, dtype=np.float32)
    out = np.full(values.shape, np.nan, dtype=np.float32)
    # 'nearest' only matters at the map's true border (halos cover chunk borders); a copied
    # edge value lies farther than the voxel it copies, so it cannot create or hide a peak.
    box_max = ndimage.maximum_filter(values, size=_inscribed_box(footprint), mode="nearest")
    half = np.asarray(footprint.shape) // 2
    shape = np.asarray(values.shape)
    for c in np.argwhere((values >= box_max) & (values >= threshold)):
        lo, hi = c - half, c + half + 1
        win = tuple(slice(a, b) for a, b in zip(np.maximum(lo, 0), np.minimum(hi, shape)))
        fp = tuple(slice(a, b) for a, b in zip(np.maximum(-lo, 0), footprint.shape - np.maximum(hi - shape, 0)))
        v = values[tuple(c)]
        if v >= values[win][footprint[fp]].max():
            out[tuple(c)] = v
    return out


def _block_candidates(peaks: np.ndarray, offset: tuple[int, int, int]) -> np.ndarray:
    """(N, 4) rows ``z, y, x, p`` (global indices) of the non-NaN voxels of one block."""
    idx = np.argwhere(~np.isnan(peaks))
    out = np.empty((len(idx), 4), dtype=float)
    out[:, :3] = idx + np.asarray(offset)
    out[:, 3] = peaks[tuple(idx.T)]
    return out


def _candidates(data: da.Array, footprint: np.ndarray, threshold: float) -> np.ndarray:
    depth = tuple(s // 2 for s in footprint.shape)
    peaks = data.map_overlap(
        _peak_map, depth=depth, boundary="none", dtype=np.float32,
        footprint=footprint, threshold=float(threshold),
    )
    starts = [np.concatenate([[0], np.cumsum(c)[:-1]]) for c in peaks.chunks]
    tasks = []
    for key, block in np.ndenumerate(peaks.to_delayed()):
        offset = tuple(int(starts[a][i]) for a, i in enumerate(key))
        tasks.append(dask.delayed(_block_candidates)(block, offset))
    found = dask.compute(*tasks)
    return np.concatenate(found) if found else np.empty((0, 4))


def world_nms(points_xyz: np.ndarray, probs: np.ndarray, min_distance_mm: float,
              order: np.ndarray | None = None) -> np.ndarray:
    """Indices of the points kept by greedy non-maximum suppression: visit by probability
    (descending; ties in ``order``, default input order) and keep a point unless a kept one
    lies within ``min_distance_mm``. Meant for the few candidates left by the max filter."""
    n = len(probs)
    if order is None:
        order = np.arange(n)
    visit = np.lexsort((order, -np.asarray(probs)))
    kept: list[int] = []
    limit2 = float(min_distance_mm) ** 2
    for i in visit:
        if kept:
            d2 = np.sum((points_xyz[kept] - points_xyz[i]) ** 2, axis=1)
            if np.any(d2 <= limit2):
                continue
        kept.append(int(i))
    return np.asarray(kept, dtype=int)


def refine_peaks(data: da.Array, peaks_zyx: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """Sub-voxel positions of ``peaks_zyx`` (N, 3 integer indices): the probability-weighted
    centroid of the 3x3x3 neighbours holding at least ``fraction`` of the peak's value.

    Why: a dense map's grid is coarse (stride x spacing: 4-8 mm) and a classifier trained
    with shifted positives answers with a plateau around a small nodule, so the plateau's
    centre is a better estimate of the nodule than any one grid point (LUNA16 counts a hit
    only within the nodule's radius). Only 27 values per peak are read.
    """
    peaks = np.asarray(peaks_zyx, dtype=np.int64).reshape(-1, 3)
    if not len(peaks):
        return np.empty((0, 3))
    offsets = np.stack(np.meshgrid(*([np.arange(-1, 2)] * 3), indexing="ij"), -1).reshape(-1, 3)
    pts = peaks[:, None, :] + offsets[None]  # (N, 27, 3)
    shape = np.asarray(data.shape)
    valid = np.all((pts >= 0) & (pts < shape), axis=2)
    flat = np.clip(pts, 0, shape - 1).reshape(-1, 3)
    vals = np.asarray(data.vindex[tuple(flat.T)].compute(), dtype=float).reshape(len(peaks), 27)
    vals[~valid] = 0.0
    centre = vals[:, 13:14]  # offset (0, 0, 0)
    w = np.where(vals >= fraction * centre, vals, 0.0)
    return (w[..., None] * pts).sum(axis=1) / w.sum(axis=1, keepdims=True)


def detect_volume(vol: Volume, threshold: float = 0.5, min_distance_mm: float = 10.0,
                  refine: bool = True) -> list[tuple[float, float, float, float]]:
    """Local maxima of the probability map ``vol`` as ``(x, y, z, probability)`` rows, world
    LPS mm, sorted by probability (descending).

    Args:
        vol: a 3-D map (or 4-D with one channel), any direction and spacing.
        threshold: keep maxima whose probability is at least this.
        min_distance_mm: a maximum must be the largest value within this world distance,
            and no two detections are this close. ``0`` keeps every thresholded maximum.
        refine: place each detection at the centroid of its peak (:func:`refine_peaks`)
            instead of at the maximum's voxel centre; the probability is the maximum's.
    """
    data = vol.data
    if data.ndim == 4:
        if data.shape[0] != 1:
            raise VoxelstreamError(
                f"detect: probability map {vol.meta.get('id', '')!r} has {data.shape[0]} channels; "
                "expected one (the nodule probability)"
            )
        data = data[0]
    if min_distance_mm < 0:
        raise VoxelstreamError(f"detect: --min-distance-mm must be >= 0, got {min_distance_mm}")
    footprint = suppression_footprint(vol.spacing, min_distance_mm)
    cand = _candidates(data, footprint, threshold)
    if len(cand) == 0:
        return []
    world = vol.index_to_world(cand[:, :3])
    # index order (z, y, x) breaks probability ties, whatever order the chunks came back in
    raster = np.lexsort((cand[:, 2], cand[:, 1], cand[:, 0]))
    rank = np.empty(len(cand), dtype=int)
    rank[raster] = np.arange(len(cand))
    keep = world_nms(world, cand[:, 3], min_distance_mm, order=rank)
    if refine and len(keep):
        world[keep] = vol.index_to_world(refine_peaks(data, cand[keep, :3]))
    return [(float(world[i, 0]), float(world[i, 1]), float(world[i, 2]), float(cand[i, 3])) for i in keep]


# -- the LUNA16 submission table --------------------------------------------------------------


def write_detections(path: str | Path, detections: Iterable[Detection]) -> int:
    """Write ``seriesuid,coordX,coordY,coordZ,probability`` rows sorted by series, then
    probability descending; returns the number of rows."""
    rows = sorted(detections, key=lambda d: (d.series_uid, -d.probability))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(DETECTION_COLUMNS)
        for d in rows:
            x, y, z = d.world_xyz
            w.writerow([d.series_uid, f"{x:.4f}", f"{y:.4f}", f"{z:.4f}", f"{d.probability:.6g}"])
    return len(rows)


def read_detections(path: str | Path) -> list[Detection]:
    """Read a LUNA16 submission CSV (header required; CRLF or LF line endings); finite
    coordinates and probabilities in ``[0, 1]``, else a ``ReadError`` naming the line."""
    rows = read_numeric_rows(path, DETECTION_COLUMNS, "detection", _probability_in_unit_range)
    return [Detection(uid, (x, y, z), p) for uid, (x, y, z, p) in rows]


def _probability_in_unit_range(numbers: list[float]) -> str | None:
    return None if 0.0 <= numbers[3] <= 1.0 else f"probability {numbers[3]:g} is outside [0, 1]"
