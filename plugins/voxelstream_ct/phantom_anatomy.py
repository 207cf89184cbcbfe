"""Chest anatomy of the phantom in world mm: body, fat, ribs, spine, trachea, heart, lungs.

The anatomy is defined around the world position of the volume's centre voxel and rendered
by evaluating every voxel's world position, so sizes and positions are right for any
spacing and for oblique direction cosines. The body is an elliptical cylinder along world z
(fat layer, ribs, spine, heart, trachea), with two lungs (about -850 HU, denser posteriorly,
with a smooth random texture).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .phantom_geometry import EDGE_MM, F32, Grid, ramp_lin, ramp_sq, sub_box

# tissue HU
AIR = -1000.0
FAT = -100.0
SOFT = 40.0
BLOOD = 40.0
BONE = 700.0
MARROW = 250.0
LUNG = -850.0


class Anatomy:
    """Chest anatomy in world mm relative to ``center`` (world position of the volume centre).

    World axes: +x patient left, +y posterior, +z superior (LPS). All parameters are plain
    Python floats so that float32 arithmetic stays float32.
    """

    def __init__(self, grid: Grid, rng: np.random.Generator) -> None:
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
               k0: int, k1: int, tex: Texture
               ) -> tuple[NDArray[np.float32], list[tuple[tuple[slice, slice, slice],
                                                          NDArray[np.float32]]]]:
        """HU of slab ``[k0, k1)`` without vessels, nodules and noise.

        ``X, Y, Z`` are the world coordinates relative to the centre (broadcastable).
        Also returns the lung fraction as a list of ``(slab-relative box, fraction)``.
        """
        f32 = F32
        shape = (k1 - k0, self.grid.shape[1], self.grid.shape[2])
        big = 1e6
        # body (soft tissue), subcutaneous fat, air
        r2 = (X * f32(1 / self.A)) ** 2 + (Y * f32(1 / self.B)) ** 2
        body = ramp_sq(r2, self.Rm)
        inner = ramp_sq(r2 * f32(1 / self.fat_r ** 2), self.Rm * self.fat_r)
        base = (f32(FAT - AIR) + inner * f32(SOFT - FAT)) * body + f32(AIR)
        val = np.empty(shape, dtype=f32)
        val[...] = base
        # ribs: ring in (x, y) times periodic oblique bands in z
        r = np.sqrt(r2)
        ring = np.abs(r - f32(self.rib_r)) * f32(self.Rm) - f32(self.rib_half * self.Rm)
        if ring.shape[0] == 1 and Y.shape[0] == 1:  # ring is constant along the slab: gather
            ring2 = np.broadcast_to(ring, (1,) + shape[1:]).reshape(-1)
            act = np.nonzero(ring2 < 0.5 * EDGE_MM)[0]
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
            rib = ramp_lin(np.maximum(ring_a, zr), 0.5, -1.0 / EDGE_MM)
            if act is None:
                val += rib * (f32(BONE) - val)
            else:
                flat = val.reshape(shape[0], -1)
                sub = flat[:, act]
                sub += rib * (f32(BONE) - sub)
                flat[:, act] = sub
        # spine: vertebral bodies (cortical shell, cancellous core) separated by discs
        sr = self.spine_r + EDGE_MM
        bx = self.box((-sr, self.spine_y - sr, -big), (sr, self.spine_y + sr, big), k0, k1)
        if bx is not None:
            Xs, Ys, Zs = (sub_box(a, *bx) for a in (X, Y, Z))
            ys_ = Ys - f32(self.spine_y)
            ds = np.sqrt(Xs * Xs + ys_ * ys_)
            sp = ramp_lin(ds, 0.5 + self.spine_r / EDGE_MM, -1.0 / EDGE_MM)
            zd = np.abs(np.mod(Zs + f32(self.disc_phase), f32(self.disc_period))
                        - f32(self.disc_period / 2))
            sp = sp * ramp_lin(zd, 0.5 - 0.5 * self.disc_height / EDGE_MM, 1.0 / EDGE_MM)
            shell = ramp_lin(ds, 0.5 + (self.spine_r - 2.0) / EDGE_MM, -1.0 / EDGE_MM)
            spine_val = f32(BONE) + f32(MARROW - BONE) * shell
            v = val[bx]
            v += sp * (spine_val - v)
        # trachea: air tube in the upper mediastinum
        tr_r = self.trachea_r + EDGE_MM
        bx = self.box((-tr_r, self.trachea_y - tr_r, self.trachea_z0 - EDGE_MM),
                      (tr_r, self.trachea_y + tr_r, big), k0, k1)
        if bx is not None:
            Xs, Ys, Zs = (sub_box(a, *bx) for a in (X, Y, Z))
            ty = Ys - f32(self.trachea_y)
            dt = np.sqrt(Xs * Xs + ty * ty) - f32(self.trachea_r)
            tr = ramp_lin(np.maximum(dt, f32(self.trachea_z0) - Zs), 0.5, -1.0 / EDGE_MM)
            v = val[bx]
            v += tr * (f32(AIR) - v)
        # lungs (one box each) minus the heart
        lungs = []
        pad = 2 * EDGE_MM
        hc, hs = self.heart_c, self.heart_s
        for side in (-1.0, 1.0):
            xs = sorted((side * (self.lung_xc - self.lung_lx - pad),
                         side * (self.lung_xc + self.lung_lx + pad)))
            lo = (xs[0], self.lung_yc - self.lung_ly - pad, self.lung_zc - self.lung_lz - pad)
            hi = (xs[1], self.lung_yc + self.lung_ly + pad, self.lung_zc + self.lung_lz + pad)
            bx = self.box(lo, hi, k0, k1)
            if bx is None:
                continue
            Xs, Ys, Zs = (sub_box(a, *bx) for a in (X, Y, Z))
            u = (Xs * f32(side) - f32(self.lung_xc)) * f32(1 / self.lung_lx)
            vv = (Ys - f32(self.lung_yc)) * f32(1 / self.lung_ly)
            w = (Zs - f32(self.lung_zc)) * f32(1 / self.lung_lz)
            w *= w
            lf = (u * u + vv * vv) + w * w
            lung = ramp_sq(lf, self.lung_R)
            hbx = self.box(tuple(c - s - pad for c, s in zip(hc, hs)),
                           tuple(c + s + pad for c, s in zip(hc, hs)), k0, k1)
            if hbx is not None:  # heart box, relative to the lung box
                rel = tuple(slice(max(h.start, b.start) - b.start, min(h.stop, b.stop) - b.start)
                            for h, b in zip(hbx, bx))
                if all(s.stop > s.start for s in rel):
                    Xh, Yh, Zh = (sub_box(a, *rel) for a in (Xs, Ys, Zs))
                    hf = self.heart_f(Xh, Yh, Zh)
                    lung[rel] *= ramp_sq(hf.astype(f32, copy=False), min(hs), -EDGE_MM)
            t = tex.box(k0 + bx[0].start, k0 + bx[0].stop, bx[1], bx[2])
            t *= f32(18.0)
            t += f32(LUNG) + f32(30.0) * vv
            v = val[bx]
            t -= v
            t *= lung
            v += t
            lungs.append((bx, lung))
        return val, lungs


# --------------------------------------------------------------------------------------
# low-frequency texture (coarse random field, linearly interpolated)
# --------------------------------------------------------------------------------------


class Texture:
    """Smooth unit-variance random field (correlation length ~``cell_mm``)."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float],
                 rng: np.random.Generator, cell_mm: float = 4.0) -> None:
        self.f = [max(1.0, cell_mm / s) for s in spacing]  # voxels per coarse cell (z, y, x)
        nc = [int(math.ceil((n - 1) / f)) + 2 for n, f in zip(shape, self.f)]
        c = ndimage.gaussian_filter(rng.standard_normal(nc), 0.8, mode="wrap")
        c /= max(float(c.std()), 1e-6)
        self.coarse = c.astype(F32)
        self.iy = self._interp(shape[1], self.f[1], nc[1])
        self.ix = self._interp(shape[2], self.f[2], nc[2])
        self._planes: dict[int, NDArray[np.float32]] = {}

    @staticmethod
    def _interp(n: int, f: float, nc: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        t = np.arange(n) / f
        c0 = np.minimum(np.floor(t).astype(np.intp), nc - 2)
        return c0, (t - c0).astype(F32)

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
        w = (t - c0).astype(F32)
        out = np.empty((k1 - k0, ys.stop - ys.start, xs.stop - xs.start), dtype=F32)
        for n, (c, wk) in enumerate(zip(c0, w)):
            a, b = self._plane(int(c))[ys, xs], self._plane(int(c) + 1)[ys, xs]
            np.multiply(b - a, wk, out=out[n])
            out[n] += a
        return out
