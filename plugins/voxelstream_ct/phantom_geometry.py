"""Index <-> world geometry and partial-volume ramps shared by the phantom's renderers.

Geometry follows the project contract (ITK/DICOM LPS, millimetres):

* arrays have axes ``(z, y, x)``; ``spacing`` is given in that order;
* ``direction`` is a 3x3 matrix whose *columns* are the world directions of the x (column),
  y (row) and z (slice) index axes, exactly as in ITK/SimpleITK;
* ``world = origin + direction @ (spacing_xyz * ijk)`` where ``ijk`` is the index in
  ``(x, y, z)`` order and an index is the centre of a voxel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

EDGE_MM = 1.0  # width of the partial-volume ramp at tissue boundaries
F32 = np.float32


class Grid:
    """Index <-> world mapping with cheap separable world coordinates for index boxes."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 origin: NDArray[np.float64], direction: NDArray[np.float64]) -> None:
        self.shape = shape
        self.spacing_xyz = np.asarray(spacing[::-1], dtype=np.float64)
        self.origin = origin
        self.direction = direction
        # world step (3-vector) per unit of i (x), j (y), k (z)
        self.step = direction * self.spacing_xyz[None, :]  # columns e_i, e_j, e_k

    def to_index_ijk(self, xyz: NDArray[np.float64]) -> NDArray[np.float64]:
        return ((np.asarray(xyz) - self.origin) @ self.direction) / self.spacing_xyz

    def to_world(self, ijk: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.origin + np.asarray(ijk) @ self.step.T

    def inside(self, xyz: NDArray[np.float64], margin_vox: float = 0.0) -> NDArray[np.bool_]:
        ijk = self.to_index_ijk(xyz)
        hi = np.asarray(self.shape[::-1], dtype=np.float64) - 1.0 - margin_vox
        return np.all((ijk >= margin_vox) & (ijk <= hi), axis=-1)

    def rel_coords(self, ref: NDArray[np.float64], ks: NDArray[Any], js: NDArray[Any],
                   is_: NDArray[Any]) -> list[NDArray[np.float32]]:
        """World coordinates minus ``ref`` for the index box ``ks x js x is_``.

        Returns three float32 arrays broadcastable to ``(len(ks), len(js), len(is_))``;
        terms whose direction cosine is zero are left out, so axis-aligned grids give
        low-dimensional arrays (this is where most of the speed comes from).
        """
        out = []
        for c in range(3):
            acc: Any = F32(self.origin[c] - ref[c])
            ek, ej, ei = self.step[c, 2], self.step[c, 1], self.step[c, 0]
            if ek != 0.0:
                acc = acc + (ks * ek).astype(F32)[:, None, None]
            if ej != 0.0:
                acc = acc + (js * ej).astype(F32)[None, :, None]
            if ei != 0.0:
                acc = acc + (is_ * ei).astype(F32)[None, None, :]
            out.append(np.asarray(acc, dtype=F32).reshape(
                (1, 1, 1) if np.ndim(acc) == 0 else np.shape(acc)))
        return out

    def box(self, lo_xyz_ijk: NDArray[np.float64], hi_xyz_ijk: NDArray[np.float64],
            k0: int, k1: int) -> tuple[slice, slice, slice] | None:
        """Integer (z, y, x) slices of the index box ``[lo, hi]`` clipped to slab [k0, k1)."""
        lo = np.maximum(np.floor(lo_xyz_ijk), 0).astype(int)
        hi = np.minimum(np.ceil(hi_xyz_ijk), np.asarray(self.shape[::-1]) - 1).astype(int)
        zlo, zhi = max(lo[2], k0), min(hi[2], k1 - 1)
        if zlo > zhi or lo[1] > hi[1] or lo[0] > hi[0]:
            return None
        return slice(zlo, zhi + 1), slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1)


def check_direction(direction: ArrayLike | None) -> NDArray[np.float64]:
    if direction is None:
        return np.eye(3)
    d = np.array(direction, dtype=np.float64).reshape(3, 3)
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-6):
        raise ValueError("direction must be an orthonormal 3x3 matrix (columns = axes)")
    return d


def ramp(d: NDArray[np.float32], width: float = EDGE_MM) -> NDArray[np.float32]:
    """Partial-volume fraction for a signed distance ``d`` (mm, >0 outside)."""
    f = np.multiply(d, F32(-1.0 / width))
    f += F32(0.5)
    np.clip(f, 0.0, 1.0, out=f)
    return f


def _fibonacci_dirs(n: int) -> NDArray[np.float64]:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    pts = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    return np.concatenate([pts, np.eye(3), -np.eye(3)])


DIRS = _fibonacci_dirs(64)


def unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def sub_box(a: NDArray[Any], zs: slice, ys: slice, xs: slice) -> NDArray[Any]:
    """Slice a broadcastable (z, y, x) array, leaving its length-1 axes alone."""
    return a[tuple(s if n > 1 else slice(None) for n, s in zip(a.shape, (zs, ys, xs)))]


def ramp_lin(x: NDArray[np.float32], a: float, b: float) -> NDArray[np.float32]:
    """``clip(a + b * x, 0, 1)`` as a new float32 array (few passes, no float64)."""
    out = np.multiply(x, F32(b), dtype=F32)
    out += F32(a)
    np.minimum(out, F32(1.0), out=out)
    np.maximum(out, F32(0.0), out=out)
    return out


def ramp_sq(f: NDArray[np.float32], radius: float, width: float = EDGE_MM
             ) -> NDArray[np.float32]:
    """Partial-volume fraction for a squared normalised radius ``f`` (inside: ``f < 1``).

    Uses ``d ~ (f - 1) * radius / 2`` for the signed distance, accurate near the boundary
    where the ramp is not saturated.
    """
    k = 0.5 * radius / width
    return ramp_lin(f, 0.5 + k, -k)


def default_origin(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                    direction: NDArray[np.float64],
                    center_xyz: tuple[float, float, float] = (10.0, -20.0, -150.0)
                    ) -> NDArray[np.float64]:
    half = (np.asarray(shape[::-1], dtype=np.float64) - 1) / 2 * np.asarray(spacing[::-1])
    return np.asarray(center_xyz, dtype=np.float64) - direction @ half
