"""Synthetic chest-CT phantoms for tests, the demo and benchmarks (LUNA16-style task).

Everything here is deterministic for a given seed and needs only numpy, scipy and pydicom
(SimpleITK is imported lazily, and only to write MetaImage files).

Geometry follows the project contract (ITK/DICOM LPS, millimetres):

* arrays have axes ``(z, y, x)``; ``spacing`` is given in that order;
* ``direction`` is a 3x3 matrix whose *columns* are the world directions of the x (column),
  y (row) and z (slice) index axes, exactly as in ITK/SimpleITK;
* ``world = origin + direction @ (spacing_xyz * ijk)`` where ``ijk`` is the index in
  ``(x, y, z)`` order and an index is the centre of a voxel.

The anatomy is defined in world millimetres around the world position of the volume's
centre voxel and is rendered by evaluating every voxel's world position, so sizes and
positions are right for any spacing and for oblique direction cosines. The body is an
elliptical cylinder along world z (fat layer, ribs, spine, heart, trachea), with two lungs
(about -850 HU, denser posteriorly, with texture) filled with branching vessel trees;
nodules are lobulated soft-tissue spheres entirely inside the lungs; distractors are
calcified granulomas (very bright) and vessel crossings (soft-tissue blobs where two vessels
cross) which are *not* annotated as nodules.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage, special

__all__ = [
    "HU_MAX",
    "HU_MIN",
    "Nodule",
    "PHI_DUMMIES",
    "Phantom",
    "generate_dataset",
    "make_ct_phantom",
    "write_dicom_series",
]

HU_MIN = -1024
HU_MAX = 3071

_AIR = -1000.0
_FAT = -100.0
_SOFT = 40.0
_BLOOD = 40.0
_BONE = 700.0
_MARROW = 250.0
_LUNG = -850.0
_EDGE_MM = 1.0  # width of the partial-volume ramp at tissue boundaries
_F32 = np.float32


# --------------------------------------------------------------------------------------
# public value types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Nodule:
    """A spherical finding in world LPS millimetres.

    ``kind`` is ``"nodule"`` for annotated nodules; distractors use ``"calcification"``
    (bright calcified granuloma) or ``"vessel"`` (vessel crossing / blob).
    """

    center_xyz: tuple[float, float, float]
    diameter_mm: float
    kind: str = "nodule"


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic CT volume with its geometry and ground truth.

    ``hu`` is int16 with axes ``(z, y, x)``; ``spacing`` is ``(z, y, x)`` in mm;
    ``origin_xyz`` is the world (LPS) position of voxel index (0, 0, 0); ``direction`` is
    the ITK direction matrix (columns = world directions of the x, y, z index axes).
    """

    hu: NDArray[np.int16]
    spacing: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    direction: NDArray[np.float64]
    nodules: tuple[Nodule, ...]
    distractors: tuple[Nodule, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``."""
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    @property
    def spacing_xyz(self) -> NDArray[np.float64]:
        """Spacing in index ``(x, y, z)`` order (the ITK/SimpleITK order)."""
        return np.asarray(self.spacing[::-1], dtype=np.float64)

    @property
    def affine(self) -> NDArray[np.float64]:
        """4x4 matrix mapping an index ``(z, y, x, 1)`` to a world point ``(x, y, z, 1)``."""
        a = np.eye(4)
        m = np.asarray(self.direction) * self.spacing_xyz[None, :]  # columns: i, j, k
        a[:3, :3] = m[:, ::-1]  # columns reordered to z, y, x
        a[:3, 3] = self.origin_xyz
        return a

    def index_to_world(self, zyx: ArrayLike) -> NDArray[np.float64]:
        """Map ``(N, 3)`` (or ``(3,)``) indices in ``(z, y, x)`` order to LPS ``(x, y, z)`` mm."""
        p = np.asarray(zyx, dtype=np.float64)
        ijk = p[..., ::-1] * self.spacing_xyz
        return np.asarray(self.origin_xyz) + ijk @ np.asarray(self.direction).T

    def world_to_index(self, xyz: ArrayLike) -> NDArray[np.float64]:
        """Inverse of :meth:`index_to_world`: LPS ``(x, y, z)`` mm to float ``(z, y, x)``."""
        p = np.asarray(xyz, dtype=np.float64) - np.asarray(self.origin_xyz)
        ijk = (p @ np.asarray(self.direction)) / self.spacing_xyz
        return ijk[..., ::-1]


# --------------------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------------------


class _Grid:
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
            acc: Any = _F32(self.origin[c] - ref[c])
            ek, ej, ei = self.step[c, 2], self.step[c, 1], self.step[c, 0]
            if ek != 0.0:
                acc = acc + (ks * ek).astype(_F32)[:, None, None]
            if ej != 0.0:
                acc = acc + (js * ej).astype(_F32)[None, :, None]
            if ei != 0.0:
                acc = acc + (is_ * ei).astype(_F32)[None, None, :]
            out.append(np.asarray(acc, dtype=_F32).reshape(
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


def _check_direction(direction: ArrayLike | None) -> NDArray[np.float64]:
    if direction is None:
        return np.eye(3)
    d = np.array(direction, dtype=np.float64).reshape(3, 3)
    if not np.allclose(d.T @ d, np.eye(3), atol=1e-6):
        raise ValueError("direction must be an orthonormal 3x3 matrix (columns = axes)")
    return d


def _ramp(d: NDArray[np.float32], width: float = _EDGE_MM) -> NDArray[np.float32]:
    """Partial-volume fraction for a signed distance ``d`` (mm, >0 outside)."""
    f = np.multiply(d, _F32(-1.0 / width))
    f += _F32(0.5)
    np.clip(f, 0.0, 1.0, out=f)
    return f


def _fibonacci_dirs(n: int) -> NDArray[np.float64]:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    pts = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    return np.concatenate([pts, np.eye(3), -np.eye(3)])


_DIRS = _fibonacci_dirs(64)


def _unit(v: NDArray[np.float64]) -> NDArray[np.float64]:
    return v / max(float(np.linalg.norm(v)), 1e-12)


# --------------------------------------------------------------------------------------
# anatomy
# --------------------------------------------------------------------------------------


def _sub(a: NDArray[Any], zs: slice, ys: slice, xs: slice) -> NDArray[Any]:
    """Slice a broadcastable (z, y, x) array, leaving its length-1 axes alone."""
    return a[tuple(s if n > 1 else slice(None) for n, s in zip(a.shape, (zs, ys, xs)))]


def _ramp_lin(x: NDArray[np.float32], a: float, b: float) -> NDArray[np.float32]:
    """``clip(a + b * x, 0, 1)`` as a new float32 array (few passes, no float64)."""
    out = np.multiply(x, _F32(b), dtype=_F32)
    out += _F32(a)
    np.minimum(out, _F32(1.0), out=out)
    np.maximum(out, _F32(0.0), out=out)
    return out


def _ramp_sq(f: NDArray[np.float32], radius: float, width: float = _EDGE_MM
             ) -> NDArray[np.float32]:
    """Partial-volume fraction for a squared normalised radius ``f`` (inside: ``f < 1``).

    Uses ``d ~ (f - 1) * radius / 2`` for the signed distance, accurate near the boundary
    where the ramp is not saturated.
    """
    k = 0.5 * radius / width
    return _ramp_lin(f, 0.5 + k, -k)


class _Anatomy:
    """Chest anatomy in world mm relative to ``center`` (world position of the volume centre).

    World axes: +x patient left, +y posterior, +z superior (LPS). All parameters are plain
    Python floats so that float32 arithmetic stays float32.
    """

    def __init__(self, grid: _Grid, rng: np.random.Generator) -> None:
        self.grid = grid
        nz, ny, nx = grid.shape
        sx, sy, sz = (float(v) for v in grid.spacing_xyz)
        self.center = grid.to_world((np.asarray([nx, ny, nz], dtype=np.float64) - 1) / 2)
        # field of view along the world axes: each world axis takes the extent of the index
        # axis best aligned with it (so sagittal/coronal acquisitions get a sensible body)
        ext = np.array([nx * sx, ny * sy, nz * sz])
        perm = max(itertools.permutations(range(3)),
                   key=lambda q: sum(abs(grid.direction[a, q[a]]) for a in range(3)))
        wx, wy, wz = (float(ext[perm[a]]) for a in range(3))
        jit = [float(v) for v in rng.uniform(0.97, 1.03, size=4)]
        self.A = 0.46 * wx * jit[0]  # body semi-axes (left-right, anterior-posterior)
        self.B = 0.345 * wy * jit[1]
        self.Rm = 0.5 * (self.A + self.B)
        self.fat_r = 1.0 - max(0.06, 1.5 / self.Rm)  # inner edge of subcutaneous fat
        self.rib_r, self.rib_half = 0.875, 0.022
        self.rib_period = 28.0 * jit[2]
        self.rib_height = 10.0
        self.rib_slope = 0.3
        self.rib_phase = float(rng.uniform(0, self.rib_period))
        self.spine_y, self.spine_r = 0.67 * self.B, 0.14 * self.B
        self.disc_period, self.disc_height = 30.0, 6.0
        self.disc_phase = float(rng.uniform(0, self.disc_period))
        # lungs: mirror-symmetric superellipsoids at x = +/- lung_xc
        self.lung_xc, self.lung_lx = 0.44 * self.A, 0.30 * self.A * jit[3]
        self.lung_yc, self.lung_ly = 0.0, 0.62 * self.B
        # a thin slab is a cut through mid-chest: lungs then extend beyond it in z
        self.lung_zc, self.lung_lz = 0.03 * wz, max(0.45 * wz, 1.2 * self.lung_ly)
        self.lung_R = min(self.lung_lx, self.lung_ly)
        # heart (ellipsoid carving the lower medial lungs) and trachea (air tube)
        self.heart_c = (0.1 * self.A, -0.3 * self.B, self.lung_zc - 0.3 * self.lung_lz)
        self.heart_s = (0.3 * self.A, 0.45 * self.B, 0.4 * self.lung_lz)
        self.trachea_y, self.trachea_r = -0.12 * self.B, max(0.07 * self.A, 2.0)
        self.trachea_z0 = self.lung_zc + 0.25 * self.lung_lz  # trachea above this z

    # -- analytic membership used for placement (points relative to centre) -------------
    def lung_f(self, x: Any, y: Any, z: Any) -> Any:
        u = (np.abs(x) - self.lung_xc) / self.lung_lx
        v = (y - self.lung_yc) / self.lung_ly
        w = (z - self.lung_zc) / self.lung_lz
        w2 = w * w
        return u * u + v * v + w2 * w2

    def heart_f(self, x: Any, y: Any, z: Any) -> Any:
        hx = (x - self.heart_c[0]) / self.heart_s[0]
        hy = (y - self.heart_c[1]) / self.heart_s[1]
        hz = (z - self.heart_c[2]) / self.heart_s[2]
        return hx * hx + hy * hy + hz * hz

    def in_lung(self, rel: NDArray[np.float64], slack: float = 1.0) -> NDArray[np.bool_]:
        x, y, z = rel[..., 0], rel[..., 1], rel[..., 2]
        return (self.lung_f(x, y, z) < slack) & (self.heart_f(x, y, z) > 1.0 / slack)

    def sample_lung_points(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        side = rng.choice([-1.0, 1.0], size=n)
        x = side * (self.lung_xc + self.lung_lx * rng.uniform(-1, 1, n))
        y = self.lung_yc + self.lung_ly * rng.uniform(-1, 1, n)
        z = self.lung_zc + self.lung_lz * rng.uniform(-1, 1, n)
        return np.stack([x, y, z], axis=1)

    # -- voxel rendering ------------------------------------------------------------------
    def box(self, lo: Sequence[float], hi: Sequence[float], k0: int, k1: int
            ) -> tuple[slice, slice, slice] | None:
        """Slab-relative index box covering the world box ``[lo, hi]`` (rel. to centre)."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                            for z in (lo[2], hi[2])], dtype=np.float64) + self.center
        ijk = self.grid.to_index_ijk(corners)
        pad = 1.0
        bx = self.grid.box(ijk.min(0) - pad, ijk.max(0) + pad, k0, k1)
        if bx is None:
            return None
        return slice(bx[0].start - k0, bx[0].stop - k0), bx[1], bx[2]

    def render(self, X: NDArray[np.float32], Y: NDArray[np.float32], Z: NDArray[np.float32],
               k0: int, k1: int, tex: _Texture
               ) -> tuple[NDArray[np.float32], list[tuple[tuple[slice, slice, slice],
                                                          NDArray[np.float32]]]]:
        """HU of slab ``[k0, k1)`` without vessels, nodules and noise.

        ``X, Y, Z`` are the world coordinates relative to the centre (broadcastable).
        Also returns the lung fraction as a list of ``(slab-relative box, fraction)``.
        """
        f32 = _F32
        shape = (k1 - k0, self.grid.shape[1], self.grid.shape[2])
        big = 1e6
        # body (soft tissue), subcutaneous fat, air
        r2 = (X * f32(1 / self.A)) ** 2 + (Y * f32(1 / self.B)) ** 2
        body = _ramp_sq(r2, self.Rm)
        inner = _ramp_sq(r2 * f32(1 / self.fat_r ** 2), self.Rm * self.fat_r)
        base = (f32(_FAT - _AIR) + inner * f32(_SOFT - _FAT)) * body + f32(_AIR)
        val = np.empty(shape, dtype=f32)
        val[...] = base
        # ribs: ring in (x, y) times periodic oblique bands in z
        r = np.sqrt(r2)
        ring = np.abs(r - f32(self.rib_r)) * f32(self.Rm) - f32(self.rib_half * self.Rm)
        if ring.shape[0] == 1 and Y.shape[0] == 1:  # ring is constant along the slab: gather
            ring2 = np.broadcast_to(ring, (1,) + shape[1:]).reshape(-1)
            act = np.nonzero(ring2 < 0.5 * _EDGE_MM)[0]
            if len(act):
                yy = np.broadcast_to(Y, (1,) + shape[1:]).reshape(-1)[act][None, :]
                zz = np.broadcast_to(Z, (shape[0], 1, 1)).reshape(-1, 1)
                ring_a = ring2[act][None, :]
            else:
                yy = zz = ring_a = None
        else:
            act, yy, zz, ring_a = None, Y, Z, ring
        if ring_a is not None:
            zr = zz - f32(self.rib_slope) * yy + f32(self.rib_phase)
            zr = np.abs(np.mod(zr, f32(self.rib_period)) - f32(self.rib_period / 2))
            zr -= f32(self.rib_height / 2)
            rib = _ramp_lin(np.maximum(ring_a, zr), 0.5, -1.0 / _EDGE_MM)
            if act is None:
                val += rib * (f32(_BONE) - val)
            else:
                flat = val.reshape(shape[0], -1)
                sub = flat[:, act]
                sub += rib * (f32(_BONE) - sub)
                flat[:, act] = sub
        # spine: vertebral bodies (cortical shell, cancellous core) separated by discs
        sr = self.spine_r + _EDGE_MM
        bx = self.box((-sr, self.spine_y - sr, -big), (sr, self.spine_y + sr, big), k0, k1)
        if bx is not None:
            Xs, Ys, Zs = (_sub(a, *bx) for a in (X, Y, Z))
            ys_ = Ys - f32(self.spine_y)
            ds = np.sqrt(Xs * Xs + ys_ * ys_)
            sp = _ramp_lin(ds, 0.5 + self.spine_r / _EDGE_MM, -1.0 / _EDGE_MM)
            zd = np.abs(np.mod(Zs + f32(self.disc_phase), f32(self.disc_period))
                        - f32(self.disc_period / 2))
            sp = sp * _ramp_lin(zd, 0.5 - 0.5 * self.disc_height / _EDGE_MM, 1.0 / _EDGE_MM)
            shell = _ramp_lin(ds, 0.5 + (self.spine_r - 2.0) / _EDGE_MM, -1.0 / _EDGE_MM)
            spine_val = f32(_BONE) + f32(_MARROW - _BONE) * shell
            v = val[bx]
            v += sp * (spine_val - v)
        # trachea: air tube in the upper mediastinum
        tr_r = self.trachea_r + _EDGE_MM
        bx = self.box((-tr_r, self.trachea_y - tr_r, self.trachea_z0 - _EDGE_MM),
                      (tr_r, self.trachea_y + tr_r, big), k0, k1)
        if bx is not None:
            Xs, Ys, Zs = (_sub(a, *bx) for a in (X, Y, Z))
            ty = Ys - f32(self.trachea_y)
            dt = np.sqrt(Xs * Xs + ty * ty) - f32(self.trachea_r)
            tr = _ramp_lin(np.maximum(dt, f32(self.trachea_z0) - Zs), 0.5, -1.0 / _EDGE_MM)
            v = val[bx]
            v += tr * (f32(_AIR) - v)
        # lungs (one box each) minus the heart
        lungs = []
        pad = 2 * _EDGE_MM
        hc, hs = self.heart_c, self.heart_s
        for side in (-1.0, 1.0):
            xs = sorted((side * (self.lung_xc - self.lung_lx - pad),
                         side * (self.lung_xc + self.lung_lx + pad)))
            lo = (xs[0], self.lung_yc - self.lung_ly - pad, self.lung_zc - self.lung_lz - pad)
            hi = (xs[1], self.lung_yc + self.lung_ly + pad, self.lung_zc + self.lung_lz + pad)
            bx = self.box(lo, hi, k0, k1)
            if bx is None:
                continue
            Xs, Ys, Zs = (_sub(a, *bx) for a in (X, Y, Z))
            u = (Xs * f32(side) - f32(self.lung_xc)) * f32(1 / self.lung_lx)
            vv = (Ys - f32(self.lung_yc)) * f32(1 / self.lung_ly)
            w = (Zs - f32(self.lung_zc)) * f32(1 / self.lung_lz)
            w *= w
            lf = (u * u + vv * vv) + w * w
            lung = _ramp_sq(lf, self.lung_R)
            hbx = self.box(tuple(c - s - pad for c, s in zip(hc, hs)),
                           tuple(c + s + pad for c, s in zip(hc, hs)), k0, k1)
            if hbx is not None:  # heart box, relative to the lung box
                rel = tuple(slice(max(h.start, b.start) - b.start, min(h.stop, b.stop) - b.start)
                            for h, b in zip(hbx, bx))
                if all(s.stop > s.start for s in rel):
                    Xh, Yh, Zh = (_sub(a, *rel) for a in (Xs, Ys, Zs))
                    hf = self.heart_f(Xh, Yh, Zh)
                    lung[rel] *= _ramp_sq(hf.astype(f32, copy=False), min(hs), -_EDGE_MM)
            t = tex.box(k0 + bx[0].start, k0 + bx[0].stop, bx[1], bx[2])
            t *= f32(18.0)
            t += f32(_LUNG) + f32(30.0) * vv
            v = val[bx]
            t -= v
            t *= lung
            v += t
            lungs.append((bx, lung))
        return val, lungs


# --------------------------------------------------------------------------------------
# low-frequency texture (coarse random field, linearly interpolated)
# --------------------------------------------------------------------------------------


class _Texture:
    """Smooth unit-variance random field (correlation length ~``cell_mm``)."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 rng: np.random.Generator, cell_mm: float = 4.0) -> None:
        self.f = [max(1.0, cell_mm / s) for s in spacing]  # voxels per coarse cell (z, y, x)
        nc = [int(math.ceil((n - 1) / f)) + 2 for n, f in zip(shape, self.f)]
        c = ndimage.gaussian_filter(rng.standard_normal(nc), 0.8, mode="wrap")
        c /= max(float(c.std()), 1e-6)
        self.coarse = c.astype(_F32)
        self.iy = self._interp(shape[1], self.f[1], nc[1])
        self.ix = self._interp(shape[2], self.f[2], nc[2])
        self._planes: dict[int, NDArray[np.float32]] = {}

    @staticmethod
    def _interp(n: int, f: float, nc: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        t = np.arange(n) / f
        c0 = np.minimum(np.floor(t).astype(np.intp), nc - 2)
        return c0, (t - c0).astype(_F32)

    def _plane(self, c: int) -> NDArray[np.float32]:
        p = self._planes.get(c)
        if p is None:
            for old in [k for k in self._planes if k < c - 2]:
                del self._planes[old]
            (y0, wy), (x0, wx) = self.iy, self.ix
            q = self.coarse[c]
            q = q[y0] + (q[y0 + 1] - q[y0]) * wy[:, None]
            p = q[:, x0]
            p += (q[:, x0 + 1] - p) * wx[None, :]
            self._planes[c] = p
        return p

    def box(self, k0: int, k1: int, ys: slice, xs: slice) -> NDArray[np.float32]:
        """Field values on slices ``k0..k1-1`` restricted to ``(ys, xs)`` (a new array)."""
        t = np.arange(k0, k1) / self.f[0]
        c0 = np.floor(t).astype(int)
        w = (t - c0).astype(_F32)
        out = np.empty((k1 - k0, ys.stop - ys.start, xs.stop - xs.start), dtype=_F32)
        for n, (c, wk) in enumerate(zip(c0, w)):
            a, b = self._plane(int(c))[ys, xs], self._plane(int(c) + 1)[ys, xs]
            np.multiply(b - a, wk, out=out[n])
            out[n] += a
        return out

# --------------------------------------------------------------------------------------
# vessels, nodules, distractors
# --------------------------------------------------------------------------------------


@dataclass
class _Segment:
    a: NDArray[np.float64]  # world xyz
    b: NDArray[np.float64]
    ra: float
    rb: float


@dataclass
class _Sphere:
    c: NDArray[np.float64]  # world xyz
    r: float
    hu: float
    edge: float
    lobes: NDArray[np.float64]  # (m, 4): unit vector + amplitude


def _grow_vessels(anat: _Anatomy, rng: np.random.Generator) -> list[_Segment]:
    """Branching vessel trees from each hilum; segments in coordinates relative to the centre.

    Each branch is a slightly wandering polyline that tapers, then continues (thinner) and
    sends off a thinner side branch, until the radius drops below 0.5 mm (1 mm diameter)
    or the branch runs out of lung.
    """
    segs: list[_Segment] = []
    t_room = np.linspace(0.0, 2.0 * anat.lung_lz, 96)[1:]
    V = tuple[float, float, float]

    def unit(v: V) -> V:
        n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) or 1.0
        return (v[0] / n, v[1] / n, v[2] / n)

    def cross(a: V, b: V) -> V:
        return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])

    def inside(p: V, slack: float) -> bool:
        return bool(anat.lung_f(*p) < slack and anat.heart_f(*p) > 1.0 / slack)

    def room(p: V, d: V) -> float:
        pts = np.asarray(p)[None, :] + t_room[:, None] * np.asarray(d)[None, :]
        bad = np.nonzero(~anat.in_lung(pts, slack=0.92))[0]
        if not len(bad):
            return float(t_room[-1])
        return float(t_room[bad[0] - 1]) if bad[0] > 0 else 0.0

    def branch(p: V, d: V, r: float, gen: int) -> None:
        if r < 0.5 or gen > 24:
            return
        length = min(0.4 * room(p, d) * rng.uniform(0.6, 1.1), 30.0 * r)
        if length < 2.0:
            return
        n_steps = 3
        step = length / n_steps
        r_end = r * 0.96
        for s, e in enumerate(rng.normal(0.0, 0.15, (n_steps, 3)).tolist()):
            d = unit((d[0] + e[0], d[1] + e[1], d[2] + e[2]))
            q = (p[0] + step * d[0], p[1] + step * d[1], p[2] + step * d[2])
            if not inside(q, 0.97):
                return
            segs.append(_Segment(np.array(p), np.array(q), r + (r_end - r) * s / n_steps,
                                 r + (r_end - r) * (s + 1) / n_steps))
            p = q
        perp = unit(cross(d, tuple(rng.normal(size=3).tolist())))  # type: ignore[arg-type]
        perp2 = cross(d, perp)
        a_main, a_side = rng.uniform(0.1, 0.3), rng.uniform(0.5, 0.9)

        def turn(a: float, v: V) -> V:
            c, s_ = math.cos(a), math.sin(a)
            return unit((c * d[0] + s_ * v[0], c * d[1] + s_ * v[1], c * d[2] + s_ * v[2]))

        branch(p, turn(-a_main, perp), r_end * rng.uniform(0.9, 0.96), gen + 1)
        branch(p, turn(a_side, perp), r_end * rng.uniform(0.7, 0.82), gen + 1)
        if rng.random() < 0.7:  # a second side branch, roughly on the other side
            branch(p, turn(a_side, perp2), r_end * rng.uniform(0.6, 0.75), gen + 1)

    # vessel calibre follows the size of the (possibly scaled-down) chest: full size for an
    # adult field of view, thinner (so fewer generations) for small test volumes
    scale = min(1.0, max(0.65, math.sqrt(anat.lung_R / 45.0)))
    for side in (-1.0, 1.0):
        hilum = (side * (anat.lung_xc - 0.6 * anat.lung_lx), anat.lung_yc + 0.05 * anat.lung_ly,
                 anat.lung_zc + 0.1 * anat.lung_lz)
        for d0 in ([0.3, 0.0, 1.0], [0.5, 0.4, 1.0], [0.4, -0.4, 1.0], [0.6, 0.1, -1.0],
                   [0.4, 0.5, -1.0], [0.4, -0.5, -1.0], [1.0, -0.6, 0.2], [1.0, 0.6, -0.2],
                   [1.0, -0.2, -0.6], [1.0, 0.2, 0.6]):
            e = rng.normal(0.0, 0.15, 3)
            d = unit((side * d0[0] + e[0], d0[1] + e[1], d0[2] + e[2]))
            o = rng.normal(0.0, 1.0, 3)
            start = (hilum[0] + o[0], hilum[1] + o[1], hilum[2] + o[2])
            if inside(start, 1.0):
                branch(start, d, scale * float(rng.uniform(1.5, 2.0)), 0)
    return segs


def _sample_segments(segs: Sequence[_Segment]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Dense points (and radii) along segments: a tube is the union of balls along its axis."""
    if not segs:
        return np.zeros((0, 3)), np.zeros(0)
    a = np.array([s.a for s in segs])
    b = np.array([s.b for s in segs])
    ra = np.array([s.ra for s in segs])
    rb = np.array([s.rb for s in segs])
    length = np.linalg.norm(b - a, axis=1)
    n = np.maximum(1, np.ceil(length / np.maximum(0.3, 0.8 * np.minimum(ra, rb)))).astype(int)
    seg_id = np.repeat(np.arange(len(segs)), n + 1)
    first = np.repeat(np.cumsum(n + 1) - (n + 1), n + 1)
    t = (np.arange(len(seg_id)) - first) / n[seg_id]
    pts = a[seg_id] + t[:, None] * (b - a)[seg_id]
    rad = ra[seg_id] + t * (rb - ra)[seg_id]
    return pts, rad


def _lobes(rng: np.random.Generator, amp: float) -> NDArray[np.float64]:
    v = rng.normal(size=(3, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.concatenate([v, rng.uniform(-amp, amp, (3, 1))], axis=1)


def _place(anat: _Anatomy, grid: _Grid, rng: np.random.Generator, clear_mm: float,
           others: Sequence[tuple[NDArray[np.float64], float]], tries: int = 40,
           batch: int = 256, candidates: NDArray[np.float64] | None = None
           ) -> NDArray[np.float64] | None:
    """Find a centre (rel. to anatomy centre) whose ball of radius ``clear_mm`` lies inside
    the lungs and the volume and keeps each ``(centre, min_dist)`` in ``others`` away."""
    for _ in range(tries):
        if candidates is not None:
            if len(candidates) == 0:
                return None
            pts = candidates[rng.choice(len(candidates), size=min(batch, len(candidates)),
                                        replace=False)]
        else:
            pts = anat.sample_lung_points(rng, batch)
        shell = pts[:, None, :] + clear_mm * _DIRS[None, :, :]
        ok = anat.in_lung(pts) & np.all(anat.in_lung(shell), axis=1)
        ok &= np.all(grid.inside(shell + anat.center, margin_vox=0.5), axis=1)
        for c, dmin in others:
            ok &= np.linalg.norm(pts - c, axis=1) >= dmin
        idx = np.nonzero(ok)[0]
        if len(idx):
            return pts[idx[0]]
        if candidates is not None:
            return None
    return None


# --------------------------------------------------------------------------------------
# stamping (per slab)
# --------------------------------------------------------------------------------------


class _Splatter:
    """Vectorised rendering of many small balls (samples along vessel axes).

    All (voxel, coverage) pairs are computed once, bucketed by slice, and each z-slab then
    takes the maximum coverage per voxel. Distances are computed in index space scaled by
    the spacing, which equals the world distance for any orthonormal direction.
    """

    def __init__(self, grid: _Grid, pts_xyz: NDArray[np.float64], radii: NDArray[np.float64],
                 chunk: int = 4096) -> None:
        nz, ny, nx = grid.shape
        self.ny, self.nx = ny, nx
        self.plane = ny * nx
        sp = grid.spacing_xyz.astype(_F32)
        ijk = grid.to_index_ijk(pts_xyz) if len(pts_xyz) else np.zeros((0, 3))
        reach = radii + 0.5 * _EDGE_MM  # coverage is zero beyond this distance
        half = np.ceil(reach[:, None] / grid.spacing_xyz[None, :]).astype(int)
        lins, covs = [], []
        keys, inverse = np.unique(half, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        for g, key in enumerate(keys.tolist()):
            sel = np.nonzero(inverse == g)[0]
            offs = [np.arange(-h, h + 1) for h in key]  # i, j, k
            for c0 in range(0, len(sel), chunk):
                idx = sel[c0:c0 + chunk]
                p = ijk[idx]
                base = np.rint(p).astype(np.int64)
                fr = (p - base).astype(_F32)
                d2 = [((offs[a][None, :] - fr[:, a:a + 1]) * sp[a]) ** 2 for a in range(3)]
                inb = [((base[:, a:a + 1] + offs[a][None, :]) >= 0)
                       & ((base[:, a:a + 1] + offs[a][None, :]) < (nx, ny, nz)[a])
                       for a in range(3)]
                dd = d2[2][:, :, None, None] + d2[1][:, None, :, None] + d2[0][:, None, None, :]
                mask = dd < (reach[idx] ** 2).astype(_F32)[:, None, None, None]
                mask &= inb[2][:, :, None, None] & inb[1][:, None, :, None] & inb[0][:, None, None, :]
                pi, a, b, c = np.nonzero(mask)
                lins.append(((base[pi, 2] + offs[2][a]) * ny + base[pi, 1] + offs[1][b]) * nx
                            + base[pi, 0] + offs[0][c])
                f = _F32(0.5) - (np.sqrt(dd[mask]) - radii[idx][pi].astype(_F32)) / _F32(_EDGE_MM)
                covs.append(np.minimum(f, _F32(1.0)))
        lin = np.concatenate(lins) if lins else np.zeros(0, np.int64)
        cov = np.concatenate(covs) if covs else np.zeros(0, _F32)
        k = lin // self.plane
        order = np.argsort(k.astype(np.uint16) if nz < 65536 else k, kind="stable")  # radix
        self.lin, self.cov, self.k = lin[order], cov[order], k[order]

    def coverage(self, k0: int, k1: int) -> NDArray[np.float32] | None:
        lo, hi = np.searchsorted(self.k, [k0, k1])
        if hi <= lo:
            return None
        out = np.zeros((k1 - k0) * self.plane, dtype=_F32)
        np.maximum.at(out, self.lin[lo:hi] - k0 * self.plane, self.cov[lo:hi])
        return out.reshape(k1 - k0, self.ny, self.nx)


def _stamp_sphere(val: NDArray[np.float32], grid: _Grid, k0: int, k1: int, sp: _Sphere) -> None:
    """Blend a (lobulated) ball into slab ``val`` (slices ``[k0, k1)``), never darkening."""
    amp = float(np.abs(sp.lobes[:, 3]).sum()) if len(sp.lobes) else 0.0
    rmax = sp.r * (1 + amp) + sp.edge
    ic = grid.to_index_ijk(sp.c)
    pad = rmax / grid.spacing_xyz
    bx = grid.box(ic - pad, ic + pad, k0, k1)
    if bx is None:
        return
    zs, ys, xs = bx
    X, Y, Z = grid.rel_coords(sp.c, np.arange(zs.start, zs.stop), np.arange(ys.start, ys.stop),
                              np.arange(xs.start, xs.stop))
    dist = np.sqrt(X * X + Y * Y + Z * Z)
    reff: Any = _F32(sp.r)
    if len(sp.lobes):
        inv = 1.0 / np.maximum(dist, _F32(1e-3))
        lob = 0.0
        for vx, vy, vz, a in sp.lobes:
            c = (X * _F32(vx) + Y * _F32(vy) + Z * _F32(vz)) * inv
            lob = lob + _F32(a) * (_F32(1.5) * c * c - _F32(0.5))
        reff = _F32(sp.r) * (_F32(1.0) + lob)
    f = _ramp(dist - reff, sp.edge)
    sub = val[zs.start - k0:zs.stop - k0, ys, xs]
    np.maximum(sub, sub + f * (_F32(sp.hu) - sub), out=sub)


# --------------------------------------------------------------------------------------
# make_ct_phantom
# --------------------------------------------------------------------------------------


def _default_origin(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                    direction: NDArray[np.float64],
                    center_xyz: tuple[float, float, float] = (10.0, -20.0, -150.0)
                    ) -> NDArray[np.float64]:
    half = (np.asarray(shape[::-1], dtype=np.float64) - 1) / 2 * np.asarray(spacing[::-1])
    return np.asarray(center_xyz, dtype=np.float64) - direction @ half


def make_ct_phantom(shape: tuple[int, int, int] = (96, 128, 128),
                    spacing: tuple[float, float, float] = (2.5, 0.8, 0.8), *,
                    seed: int = 0, n_nodules: int = 2,
                    nodule_diameters_mm: tuple[float, float] = (4.0, 30.0),
                    n_distractors: int = 2, direction: ArrayLike | None = None,
                    origin_xyz: Sequence[float] | None = None,
                    noise_hu: float = 20.0) -> Phantom:
    """Render a synthetic chest CT.

    Args:
        shape: array shape ``(z, y, x)``.
        spacing: voxel spacing in mm, ``(z, y, x)``.
        seed: everything (anatomy jitter, vessels, placement, noise) derives from it.
        n_nodules: number of annotated nodules.
        nodule_diameters_mm: ``(min, max)``; each diameter is drawn log-uniformly in it. A
            nodule that cannot fit inside the lungs of this field of view is redrawn smaller
            (never below ``min``); ``RuntimeError`` if even ``min`` does not fit.
        n_distractors: nodule-like non-nodules (alternately a calcified granuloma of
            300-800 HU and a vessel crossing), inside the lungs and away from the nodules.
        direction: 3x3 orthonormal ITK direction matrix (columns = world directions of the
            x, y, z index axes); identity by default.
        origin_xyz: world LPS of voxel (0, 0, 0); by default the volume centre is placed at
            world (10, -20, -150) mm.
        noise_hu: standard deviation of the additive Gaussian noise (0 disables it).

    Returns:
        A :class:`Phantom` whose ``hu`` is int16 in ``[-1024, 3071]``.
    """
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    spacing = tuple(float(s) for s in spacing)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive ints, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive floats, got {spacing}")
    dmin, dmax = sorted(float(d) for d in nodule_diameters_mm)
    if dmin <= 0:
        raise ValueError("nodule diameters must be positive")
    D = _check_direction(direction)
    origin = (_default_origin(shape, spacing, D) if origin_xyz is None
              else np.asarray(origin_xyz, dtype=np.float64).reshape(3))
    grid = _Grid(shape, spacing, origin, D)
    rng = np.random.default_rng(seed)
    anat = _Anatomy(grid, rng)
    tex = _Texture(shape, spacing, rng)

    # vessels (relative coordinates -> world)
    segments = _grow_vessels(anat, rng)
    C = anat.center

    # nodules
    nod_rel: list[tuple[NDArray[np.float64], float]] = []
    spheres: list[_Sphere] = []
    nodules: list[Nodule] = []
    for _ in range(n_nodules):
        diam = math.exp(rng.uniform(math.log(dmin), math.log(dmax)))
        while True:
            r = diam / 2
            others = [(c, r + rc + 5.0) for c, rc in nod_rel]
            p = _place(anat, grid, rng, 1.1 * r + 3.5, others)
            if p is not None:
                break
            if diam <= dmin:
                raise RuntimeError(
                    f"cannot fit a {dmin:.1f} mm nodule into the lungs of this phantom "
                    f"(shape {shape}, spacing {spacing}); use a larger field of view")
            diam = max(dmin, diam * 0.85)
        nod_rel.append((p, r))
        spheres.append(_Sphere(p + C, r, float(rng.uniform(30.0, 60.0)), _EDGE_MM,
                               _lobes(rng, 0.06 if r > 2.5 else 0.0)))
        xyz = tuple(float(v) for v in p + C)
        nodules.append(Nodule(xyz, float(diam)))  # type: ignore[arg-type]

    # distractors
    distractors: list[Nodule] = []
    dist_spheres: list[_Sphere] = []
    seg_pts = np.array([(s.a + s.b) / 2 for s in segments if s.ra >= 0.7]).reshape(-1, 3)
    for n in range(n_distractors):
        calc = n % 2 == 0
        # big enough that the voxel nearest to the centre is inside, even for thick slices
        d_lo = max(2.0, float(np.linalg.norm(spacing)) + 0.6)
        diam = rng.uniform(d_lo, max(5.0, d_lo + 1.0)) if calc else rng.uniform(3.5, 6.0)
        r = diam / 2
        others = [(c, r + rc + 10.0) for c, rc in nod_rel]
        others += [(C_rel, r + rc + 4.0) for C_rel, rc in
                   [(s.c - C, s.r) for s in dist_spheres]]
        p = None
        if not calc and len(seg_pts):
            p = _place(anat, grid, rng, r + 2.0, others, candidates=seg_pts)
        if p is None:
            p = _place(anat, grid, rng, r + 2.0, others)
        if p is None:
            continue  # no room: fewer distractors rather than failing
        if calc:
            sp = _Sphere(p + C, r, float(rng.uniform(300.0, 800.0)), 0.5, np.zeros((0, 4)))
        else:
            sp = _Sphere(p + C, r, _BLOOD, _EDGE_MM, _lobes(rng, 0.1))
            # a crossing: two short vessels through the blob
            for _k in range(2):
                d = _unit(rng.normal(size=3))
                half = rng.uniform(8.0, 14.0)
                rv = rng.uniform(0.8, 1.2)
                segments.append(_Segment(p - half * d, p + half * d, rv, rv))
        dist_spheres.append(sp)
        xyz = tuple(float(v) for v in p + C)
        distractors.append(Nodule(xyz, float(diam),  # type: ignore[arg-type]
                                  "calcification" if calc else "vessel"))

    for s in segments:  # to world
        s.a = s.a + C
        s.b = s.b + C

    # per-object k ranges for slab selection
    def krange(pts: NDArray[np.float64], rad: float) -> tuple[float, float]:
        k = grid.to_index_ijk(pts)[..., 2]
        pad = rad / grid.spacing_xyz[2]
        return float(np.min(k) - pad - 1), float(np.max(k) + pad + 1)

    splat = _Splatter(grid, *_sample_segments(segments))
    all_sph = spheres + dist_spheres
    sph_k = np.array([krange(s.c[None, :], s.r * 1.5 + s.edge) for s in all_sph]).reshape(-1, 2)

    # render slab by slab
    nz, ny, nx = shape
    hu = np.empty(shape, dtype=np.int16)
    slab = max(1, (1 << 20) // max(1, ny * nx))
    noise_seeds = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x70A5E]).spawn(nz)
    # Gaussian noise by inverse-CDF lookup of 16-bit uniforms: ~5x faster than
    # standard_normal and indistinguishable from it at 1/65536 resolution (tails at 4.3 sd)
    noise_table = (special.ndtri((np.arange(65536) + 0.5) / 65536) * noise_hu).astype(_F32)
    js, is_ = np.arange(ny), np.arange(nx)
    for k0 in range(0, nz, slab):
        k1 = min(nz, k0 + slab)
        X, Y, Z = grid.rel_coords(C, np.arange(k0, k1), js, is_)
        val, lungs = anat.render(X, Y, Z, k0, k1, tex)
        cov = splat.coverage(k0, k1)
        if cov is not None:  # vessels: blood-density tubes, visible inside the lungs only
            for bx, lung in lungs:
                c = cov[bx] * lung
                v = val[bx]
                v += c * (_F32(_BLOOD) - v)
        for i in np.nonzero((sph_k[:, 1] >= k0) & (sph_k[:, 0] <= k1 - 1))[0]:
            _stamp_sphere(val, grid, k0, k1, all_sph[i])
        if noise_hu > 0:
            for kk in range(k0, k1):
                g = np.random.default_rng(noise_seeds[kk])
                val[kk - k0] += noise_table[g.integers(0, 65536, (ny, nx), dtype=np.uint16)]
        np.rint(val, out=val)
        np.clip(val, HU_MIN, HU_MAX, out=val)
        hu[k0:k1] = val
    direction_ro = D.copy()
    direction_ro.setflags(write=False)
    return Phantom(hu=hu, spacing=spacing,  # type: ignore[arg-type]
                   origin_xyz=tuple(float(v) for v in origin),  # type: ignore[arg-type]
                   direction=direction_ro, nodules=tuple(nodules),
                   distractors=tuple(distractors))


# --------------------------------------------------------------------------------------
# DICOM writing
# --------------------------------------------------------------------------------------

_TRANSFER_SYNTAXES = {
    "explicit-little": "1.2.840.10008.1.2.1",
    "implicit-little": "1.2.840.10008.1.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
}

#: Dummy identifying values written into every phantom file (tests check they never leak).
PHI_DUMMIES: dict[str, str] = {
    "PatientBirthDate": "19700101",
    "PatientAddress": "1 Phantom Street, Testville, PH4 1NT",
    "InstitutionName": "Voxelstream Phantom General Hospital",
    "InstitutionAddress": "2 Phantom Street, Testville",
    "OperatorsName": "OPERATOR^PHANTOM",
    "AccessionNumber": "ACCPHANTOM01",
    "ReferringPhysicianName": "REFERRER^PHANTOM",
    "OtherPatientIDs": "PHANTOM-OTHER-ID",
    "PatientTelephoneNumbers": "+00 000 000 0000",
}


def _fingerprint(ph: Phantom) -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(ph.hu[::7, ::7, ::7]).tobytes())
    h.update(repr((ph.shape, ph.spacing, ph.origin_xyz, ph.direction.tolist())).encode())
    return h.hexdigest()


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["voxelstream-phantom|" + "|".join(map(str, parts))]))


def _ds(v: float) -> str:
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(v) + 0.0)


def write_dicom_series(phantom: Phantom, folder: Path, *, series_uid: str | None = None,
                       study_uid: str | None = None, patient_name: str = "PHANTOM^TEST",
                       patient_id: str = "PH0001", shuffle_names: bool = False, seed: int = 0,
                       rescale_intercept: float = -1024, rescale_slope: float = 1,
                       transfer_syntax: str = "explicit-little") -> str:
    """Write ``phantom`` as a CT Image Storage series, one file per slice, into ``folder``.

    Files are ``slice_0000.dcm``... in slice order, or, with ``shuffle_names``, random names
    that do not sort in slice order and shuffled InstanceNumbers (readers must order by
    ImagePositionPatient along the normal ``cross(row, col)``). ``ImagePositionPatient`` of
    slice ``k`` is ``phantom.index_to_world((k, 0, 0))``. Pixels are stored as
    ``round((hu - intercept) / slope)`` -- unsigned (PixelRepresentation 0) when the
    intercept is -1024 and all values fit, signed otherwise; the round trip is exact when
    ``slope == 1``. ``transfer_syntax`` is one of ``explicit-little`` (default),
    ``implicit-little``, ``deflated`` or ``rle`` (RLE Lossless; slow, for small series).
    Patient-identifying attributes get recognisable dummy values (see ``PHI_DUMMIES``).
    UIDs not given are derived deterministically from ``seed`` and the phantom's content.
    A left-handed ``direction`` is written faithfully; a reader then sees the z-flipped,
    right-handed equivalent volume. Returns the SeriesInstanceUID.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage

    by_uid = {v: k for k, v in _TRANSFER_SYNTAXES.items()}
    transfer_syntax = by_uid.get(str(transfer_syntax), transfer_syntax)
    if transfer_syntax not in _TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {sorted(_TRANSFER_SYNTAXES)}")
    if rescale_slope == 0:
        raise ValueError("rescale_slope must not be 0")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fp = _fingerprint(phantom)
    study_uid = str(study_uid) if study_uid else _uid("study", seed, patient_id, fp)
    series_uid = str(series_uid) if series_uid else _uid("series", seed, patient_id, fp)
    for_uid = _uid("for", study_uid, series_uid)

    def to_stored(hu: NDArray[Any]) -> NDArray[np.float64]:
        return np.rint((np.asarray(hu, dtype=np.float64) - rescale_intercept) / rescale_slope)

    ends = to_stored(np.array([phantom.hu.min(), phantom.hu.max()]))
    lo, hi = float(ends.min()), float(ends.max())
    if rescale_intercept == -1024 and lo >= 0 and hi <= 65535:
        pixrep, dtype = 0, np.dtype("<u2")
    elif lo >= -32768 and hi <= 32767:
        pixrep, dtype = 1, np.dtype("<i2")
    else:
        raise ValueError("rescaled values do not fit in 16 bits; adjust intercept/slope")

    nz, ny, nx = phantom.shape
    D = np.asarray(phantom.direction, dtype=np.float64)
    row, col = D[:, 0], D[:, 1]
    normal = np.cross(row, col)
    positions = phantom.index_to_world(np.stack([np.arange(nz), np.zeros(nz), np.zeros(nz)], 1))

    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xD1C0])
    if shuffle_names:
        while True:
            tokens = [f"{int(t):012x}" for t in rng.integers(0, 16 ** 12, size=nz)]
            names = [f"IM_{t}.dcm" for t in tokens]
            order = sorted(range(nz), key=lambda k: names[k])
            if len(set(names)) == nz and (nz < 2 or (order != list(range(nz))
                                                    and (nz < 3 or order != list(range(nz))[::-1]))):
                break
        while True:
            inst = rng.permutation(nz) + 1
            if nz < 3 or (np.any(np.diff(inst) < 0) and np.any(np.diff(inst) > 0)):
                break
    else:
        names = [f"slice_{k:04d}.dcm" for k in range(nz)]
        inst = np.arange(nz) + 1

    ts = UID(_TRANSFER_SYNTAXES[transfer_syntax])
    date, time = "20200101", "120000"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = _uid("sop", series_uid, 0)
    meta.TransferSyntaxUID = ts if transfer_syntax != "rle" else UID(_TRANSFER_SYNTAXES["explicit-little"])
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "VOXELSTREAM_PH"
    tpl = Dataset()
    tpl.file_meta = meta
    tpl.SpecificCharacterSet = "ISO_IR 100"
    tpl.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    tpl.SOPClassUID = CTImageStorage
    tpl.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    tpl.StudyDate = tpl.SeriesDate = tpl.ContentDate = tpl.AcquisitionDate = date
    tpl.StudyTime = tpl.SeriesTime = tpl.ContentTime = time
    tpl.Modality = "CT"
    tpl.Manufacturer = "voxelstream"
    tpl.ManufacturerModelName = "synthetic chest phantom"
    tpl.StudyDescription = "CHEST PHANTOM"
    tpl.SeriesDescription = "voxelstream synthetic chest CT"
    tpl.BodyPartExamined = "CHEST"
    tpl.PatientName = patient_name
    tpl.PatientID = patient_id
    tpl.PatientSex = "O"
    tpl.PatientAge = "050Y"
    for key, value in PHI_DUMMIES.items():
        setattr(tpl, key, value)
    tpl.StudyInstanceUID = study_uid
    tpl.SeriesInstanceUID = series_uid
    tpl.FrameOfReferenceUID = for_uid
    tpl.PositionReferenceIndicator = ""
    tpl.StudyID = "1"
    tpl.SeriesNumber = 1
    tpl.AcquisitionNumber = 1
    tpl.InstanceNumber = 1
    tpl.PatientPosition = "HFS"
    tpl.KVP = _ds(120)
    tpl.SliceThickness = _ds(phantom.spacing[0])
    tpl.ImagePositionPatient = [_ds(v) for v in positions[0]]
    tpl.ImageOrientationPatient = [_ds(v) for v in np.concatenate([row, col])]
    tpl.SliceLocation = _ds(0.0)
    tpl.SamplesPerPixel = 1
    tpl.PhotometricInterpretation = "MONOCHROME2"
    tpl.Rows = ny
    tpl.Columns = nx
    tpl.PixelSpacing = [_ds(phantom.spacing[1]), _ds(phantom.spacing[2])]
    tpl.BitsAllocated = 16
    tpl.BitsStored = 16
    tpl.HighBit = 15
    tpl.PixelRepresentation = pixrep
    tpl.RescaleIntercept = _ds(rescale_intercept)
    tpl.RescaleSlope = _ds(rescale_slope)
    tpl.RescaleType = "HU"
    tpl.WindowCenter = _ds(-600)
    tpl.WindowWidth = _ds(1500)
    for k in range(nz):
        ds = copy.deepcopy(tpl) if transfer_syntax == "rle" else tpl
        sop_uid = _uid("sop", series_uid, k)
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = int(inst[k])
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.SliceLocation = _ds(float(positions[k] @ normal))
        frame = to_stored(phantom.hu[k]).astype(dtype)
        if transfer_syntax == "rle":
            ds.compress(ts, frame, generate_instance_uid=False)
        else:
            ds.PixelData = frame.tobytes()
            ds["PixelData"].VR = "OW"
        ds.save_as(folder / names[k], enforce_file_format=True)
    return series_uid


# --------------------------------------------------------------------------------------
# dataset generation
# --------------------------------------------------------------------------------------

_CSV_HEADER = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]


def _write_csv(path: Path, rows: list[list[str]], header: list[str] | None) -> None:
    # LUNA16's tables use CRLF line endings; so do we (csv's default)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(header)
        w.writerows(rows)


def _row(uid: str, n: Nodule, diameter: float) -> list[str]:
    x, y, z = n.center_xyz
    return [uid, f"{x:.8f}", f"{y:.8f}", f"{z:.8f}", f"{diameter:.8f}" if diameter > 0 else "-1"]


def generate_dataset(out_dir: Path, n_scans: int = 4, *, seed: int = 0,
                     shape: tuple[int, int, int] = (96, 128, 128),
                     write_format: str = "dicom") -> Path:
    """Write a small LUNA16-like dataset of phantoms and return ``annotations.csv``'s path.

    Scan ``s`` gets spacing z in [1.0, 2.5] mm, y = x in [0.6, 0.9] mm and 1-3 nodules.
    ``write_format="dicom"``: one series per scan in ``out_dir/<PatientID>/<SeriesUID>/``
    (PatientIDs ``PH0001``...); ``"mhd"``: ``out_dir/<SeriesUID>.mhd`` (+ ``.raw``) via
    SimpleITK with the phantom's spacing, origin and direction. Also written:
    ``annotations.csv`` (``seriesuid,coordX,coordY,coordZ,diameter_mm``, one row per
    nodule), ``annotations_excluded.csv`` (distractors; ``-1`` diameter for vessel
    crossings) and ``seriesuids.csv`` (one UID per line, no header), all with CRLF endings
    like the real LUNA16 tables.
    """
    if write_format not in ("dicom", "mhd"):
        raise ValueError("write_format must be 'dicom' or 'mhd'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xDA7A])
    ann: list[list[str]] = []
    exc: list[list[str]] = []
    uids: list[list[str]] = []
    for s in range(n_scans):
        sz = float(rng.uniform(1.0, 2.5))
        sxy = float(rng.uniform(0.6, 0.9))
        n_nod = int(rng.integers(1, 4))
        ph_seed = int(rng.integers(0, 2 ** 31 - 1))
        centre = (float(rng.uniform(-20, 20)), float(rng.uniform(-40, 0)),
                  float(rng.uniform(-250, -100)))
        spacing = (sz, sxy, sxy)
        origin = _default_origin(tuple(shape), spacing, np.eye(3), centre)  # type: ignore[arg-type]
        ph = make_ct_phantom(shape, spacing, seed=ph_seed, n_nodules=n_nod,
                             origin_xyz=tuple(origin))
        pid = f"PH{s + 1:04d}"
        uid = _uid("dataset-series", seed, s, pid, _fingerprint(ph))
        if write_format == "dicom":
            write_dicom_series(ph, out_dir / pid / uid, series_uid=uid,
                               study_uid=_uid("dataset-study", seed, s, pid),
                               patient_name=f"PHANTOM^CASE{s + 1:03d}", patient_id=pid,
                               seed=ph_seed)
        else:
            import SimpleITK as sitk

            img = sitk.GetImageFromArray(ph.hu)
            img.SetSpacing([float(v) for v in ph.spacing[::-1]])
            img.SetOrigin([float(v) for v in ph.origin_xyz])
            img.SetDirection([float(v) for v in np.asarray(ph.direction).ravel()])
            sitk.WriteImage(img, str(out_dir / f"{uid}.mhd"))
        uids.append([uid])
        ann += [_row(uid, n, n.diameter_mm) for n in ph.nodules]
        exc += [_row(uid, d, d.diameter_mm if d.kind == "calcification" else -1.0)
                for d in ph.distractors]
    _write_csv(out_dir / "annotations.csv", ann, _CSV_HEADER)
    _write_csv(out_dir / "annotations_excluded.csv", exc, _CSV_HEADER)
    _write_csv(out_dir / "seriesuids.csv", uids, None)
    return out_dir / "annotations.csv"
