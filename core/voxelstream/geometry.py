"""Index <-> world geometry.

The one convention used everywhere: an *index* is ``(z, y, x)`` in array-axis order and
names the centre of a voxel (ITK convention: index ``(0, 0, 0)`` sits at the origin). A
*world* point is ``(x, y, z)`` in millimetres in the patient's LPS frame, as in DICOM, ITK
and LUNA16's tables. A 4x4 ``affine`` maps homogeneous ``(z, y, x, 1)`` to ``(x, y, z, 1)``;
its first three columns are the world steps of one voxel along z, y and x.
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
    "resampled_affine",
]


def affine_from_itk(
    origin_xyz: Sequence[float],
    spacing_zyx: Sequence[float],
    direction: np.ndarray | Sequence[float] | None = None,
) -> np.ndarray:
    """Build the affine from ITK-style geometry.

    ``direction`` is ITK's 3x3 direction matrix (row-major if flat): its columns are the
    world directions of the x (column), y (row) and z (slice) index axes, as returned by
    ``sitk.Image.GetDirection()``.
    """
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    sz, sy, sx = (float(s) for s in spacing_zyx)
    a = np.eye(4)
    # index axis order is (z, y, x) while ITK's direction columns are (x, y, z)
    a[:3, 0] = d[:, 2] * sz
    a[:3, 1] = d[:, 1] * sy
    a[:3, 2] = d[:, 0] * sx
    a[:3, 3] = np.asarray(origin_xyz, dtype=float)
    return a


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel spacing in mm, ``(z, y, x)``: the lengths of the affine's first three columns."""
    n = np.linalg.norm(np.asarray(affine, dtype=float)[:3, :3], axis=0)
    # rounded: the norm of a rotated column carries float noise (0.7999999999999998)
    return tuple(round(float(v), 9) for v in n)  # type: ignore[return-value]


def affine_to_itk(affine: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Inverse of :func:`affine_from_itk`: ``(origin_xyz, spacing_xyz, direction_flat)``
    ready for ``sitk.Image.SetOrigin/SetSpacing/SetDirection``."""
    a = np.asarray(affine, dtype=float)
    sz, sy, sx = spacing_of(a)
    d = np.stack([a[:3, 2] / sx, a[:3, 1] / sy, a[:3, 0] / sz], axis=1)
    return tuple(a[:3, 3]), (sx, sy, sz), tuple(d.ravel())


def _points(points: np.ndarray | Sequence, what: str) -> tuple[np.ndarray, bool]:
    p = np.asarray(points, dtype=float)
    single = p.ndim == 1
    p = np.atleast_2d(p)
    if p.shape[-1] != 3 or p.ndim != 2:
        raise ValueError(f"{what} must have shape (3,) or (N, 3), got {np.shape(points)}")
    return p, single


def index_to_world(affine: np.ndarray, points_zyx: np.ndarray | Sequence) -> np.ndarray:
    """Map index points ``(N, 3)`` in ``(z, y, x)`` to world ``(N, 3)`` in ``(x, y, z)`` mm."""
    p, single = _points(points_zyx, "index points")
    a = np.asarray(affine, dtype=float)
    out = p @ a[:3, :3].T + a[:3, 3]
    return out[0] if single else out


def world_to_index(affine: np.ndarray, points_xyz: np.ndarray | Sequence) -> np.ndarray:
    """Map world points ``(N, 3)`` in ``(x, y, z)`` mm to fractional ``(z, y, x)`` indices."""
    p, single = _points(points_xyz, "world points")
    a = np.asarray(affine, dtype=float)
    out = np.linalg.solve(a[:3, :3], (p - a[:3, 3]).T).T
    return out[0] if single else out


def resampled_affine(
    affine: np.ndarray, new_spacing_zyx: Sequence[float], offset_zyx: Sequence[float] = (0, 0, 0)
) -> np.ndarray:
    """The affine of a grid with the same direction, origin moved to the (fractional) input
    index ``offset_zyx`` and voxel steps of ``new_spacing_zyx`` mm."""
    a = np.asarray(affine, dtype=float)
    old = np.asarray(spacing_of(a))
    out = a.copy()
    out[:3, :3] = a[:3, :3] * (np.asarray(new_spacing_zyx, dtype=float) / old)
    out[:3, 3] = index_to_world(a, np.asarray(offset_zyx, dtype=float))
    return out
