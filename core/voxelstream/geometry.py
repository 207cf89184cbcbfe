"""Index <-> world geometry for images with 2 or 3 spatial axes.

The one convention used everywhere: an *index* lists the spatial axes in array order
(``(z, y, x)`` or ``(y, x)``) and names the centre of a pixel/voxel (ITK convention: index 0
sits at the origin). A *world* point lists the same axes reversed, ``(x, y, z)`` or
``(x, y)``, as ITK, DICOM and LUNA16's tables do (3-D: millimetres in the patient's LPS
frame). An ``(n+1) x (n+1)`` ``affine`` maps homogeneous ``(index, 1)`` to ``(world, 1)``;
its first ``n`` columns are the world steps of one voxel along the index axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "affine_from_itk",
    "affine_to_itk",
    "index_to_world",
    "world_to_index",
    "spacing_of",
    "spatial_ndim_of",
    "resampled_affine",
]


def spatial_ndim_of(affine: np.ndarray) -> int:
    """The number of spatial axes an affine describes (its size minus one)."""
    return int(np.asarray(affine).shape[0]) - 1


def affine_from_itk(
    origin_world: Sequence[float],
    spacing: Sequence[float],
    direction: np.ndarray | Sequence[float] | None = None,
) -> np.ndarray:
    """Build the affine from ITK-style geometry.

    ``spacing`` is in array order (``(z, y, x)`` / ``(y, x)``); ``origin_world`` is the world
    point of index 0 in world order (``(x, y, z)`` / ``(x, y)``), as ITK's ``GetOrigin``;
    ``direction`` is ITK's ``n x n`` direction matrix (row-major if flat): its columns are
    the world directions of the x (column), y (row) and z (slice) index axes, as
    ``sitk.Image.GetDirection()`` returns it.
    """
    sp = [float(s) for s in spacing]
    n = len(sp)
    if n not in (2, 3):
        raise ValueError(f"spacing must have 2 or 3 values (one per spatial axis), got {list(spacing)}")
    org = np.asarray(origin_world, dtype=float).ravel()
    if org.shape != (n,):
        raise ValueError(f"origin must have {n} values (one per spatial axis), got {list(origin_world)}")
    d = np.eye(n) if direction is None else np.asarray(direction, dtype=float).reshape(n, n)
    a = np.eye(n + 1)
    # index axis j (array order) is ITK axis n-1-j (ITK's columns are x, y, z)
    for j in range(n):
        a[:n, j] = d[:, n - 1 - j] * sp[j]
    a[:n, n] = org
    return a


def spacing_of(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel spacing in array order: the lengths of the affine's first ``n`` columns."""
    a = np.asarray(affine, dtype=float)
    n = spatial_ndim_of(a)
    lengths = np.linalg.norm(a[:n, :n], axis=0)
    # rounded: the norm of a rotated column carries float noise (0.7999999999999998)
    return tuple(round(float(v), 9) for v in lengths)


def affine_to_itk(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Inverse of :func:`affine_from_itk`: ``(origin_world, spacing_itk_order, direction_flat)``
    ready for ``sitk.Image.SetOrigin/SetSpacing/SetDirection``."""
    a = np.asarray(affine, dtype=float)
    n = spatial_ndim_of(a)
    sp = spacing_of(a)
    d = np.stack([a[:n, n - 1 - k] / sp[n - 1 - k] for k in range(n)], axis=1)
    return tuple(float(v) for v in a[:n, n]), tuple(sp[::-1]), tuple(float(v) for v in d.ravel())


def _points(points: np.ndarray | Sequence, n: int, what: str) -> tuple[np.ndarray, bool]:
    p = np.asarray(points, dtype=float)
    single = p.ndim == 1
    p = np.atleast_2d(p)
    if p.ndim != 2 or p.shape[-1] != n:
        raise ValueError(f"{what} must have shape ({n},) or (N, {n}), got {np.shape(points)}")
    return p, single


def index_to_world(affine: np.ndarray, points: np.ndarray | Sequence) -> np.ndarray:
    """Map index points ``(N, n)`` in array order to world points ``(N, n)`` in world order."""
    a = np.asarray(affine, dtype=float)
    n = spatial_ndim_of(a)
    p, single = _points(points, n, "index points")
    out = p @ a[:n, :n].T + a[:n, n]
    return out[0] if single else out


def world_to_index(affine: np.ndarray, points: np.ndarray | Sequence) -> np.ndarray:
    """Map world points ``(N, n)`` (world order) to fractional indices ``(N, n)`` (array order)."""
    a = np.asarray(affine, dtype=float)
    n = spatial_ndim_of(a)
    p, single = _points(points, n, "world points")
    out = np.linalg.solve(a[:n, :n], (p - a[:n, n]).T).T
    return out[0] if single else out


def resampled_affine(
    affine: np.ndarray, new_spacing: Sequence[float], offset: Sequence[float] | None = None
) -> np.ndarray:
    """The affine of a grid with the same direction, origin moved to the (fractional) input
    index ``offset`` (array order) and voxel steps of ``new_spacing`` (array order)."""
    a = np.asarray(affine, dtype=float)
    n = spatial_ndim_of(a)
    old = np.asarray(spacing_of(a))
    out = a.copy()
    out[:n, :n] = a[:n, :n] * (np.asarray(new_spacing, dtype=float) / old)
    out[:n, n] = index_to_world(a, np.zeros(n) if offset is None else np.asarray(offset, dtype=float))
    return out
