"""Vessel trees and ball-shaped findings of the phantom: growth, placement and rasterising.

Vessels branch from each hilum and are rendered as unions of balls along their axes;
nodules are lobulated soft-tissue spheres entirely inside the lungs; distractors are
calcified granulomas and vessel crossings (soft-tissue blobs where two vessels cross).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

from .phantom_anatomy import Anatomy
from .phantom_geometry import DIRS, EDGE_MM, F32, Grid, ramp

AA_EDGE_MM = 0.5  # a tissue's own edge width when the voxel footprint is rendered too


@dataclass
class Segment:
    a: NDArray[np.float64]  # world xyz
    b: NDArray[np.float64]
    ra: float
    rb: float


@dataclass
class Sphere:
    c: NDArray[np.float64]  # world xyz
    r: float
    hu: float
    edge: float
    lobes: NDArray[np.float64]  # (m, 4): unit vector + amplitude
    antialias: bool = False  # widen the edge ramp by the voxel's footprint (partial volume)


def grow_vessels(anat: Anatomy, rng: np.random.Generator) -> list[Segment]:
    """Branching vessel trees from each hilum; segments in coordinates relative to the centre.

    Each branch is a slightly wandering polyline that tapers, then continues (thinner) and
    sends off a thinner side branch, until the radius drops below 0.5 mm (1 mm diameter)
    or the branch runs out of lung.
    """
    segs: list[Segment] = []
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
            segs.append(Segment(np.array(p), np.array(q), r + (r_end - r) * s / n_steps,
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


def sample_segments(segs: Sequence[Segment]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
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


def lobes(rng: np.random.Generator, amp: float) -> NDArray[np.float64]:
    v = rng.normal(size=(3, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return np.concatenate([v, rng.uniform(-amp, amp, (3, 1))], axis=1)


def place(anat: Anatomy, grid: Grid, rng: np.random.Generator, clear_mm: float,
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
        shell = pts[:, None, :] + clear_mm * DIRS[None, :, :]
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


class Splatter:
    """Vectorised rendering of many small balls (samples along vessel axes).

    All (voxel, coverage) pairs are computed once, bucketed by slice, and each z-slab then
    takes the maximum coverage per voxel. Distances are computed in index space scaled by
    the spacing, which equals the world distance for any orthonormal direction.
    """

    def __init__(self, grid: Grid, pts_xyz: NDArray[np.float64], radii: NDArray[np.float64],
                 chunk: int = 4096, antialias: bool = False) -> None:
        nz, ny, nx = grid.shape
        self.ny, self.nx = ny, nx
        self.plane = ny * nx
        sp = grid.spacing_xyz.astype(F32)
        ijk = grid.to_index_ijk(pts_xyz) if len(pts_xyz) else np.zeros((0, 3))
        edge = EDGE_MM if not antialias else AA_EDGE_MM
        # coverage is zero beyond this distance (the widest ramp: along the coarsest axis)
        reach = radii + 0.5 * (math.hypot(edge, float(grid.spacing_xyz.max())) if antialias else edge)
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
                fr = (p - base).astype(F32)
                d2 = [((offs[a][None, :] - fr[:, a:a + 1]) * sp[a]) ** 2 for a in range(3)]
                inb = [((base[:, a:a + 1] + offs[a][None, :]) >= 0)
                       & ((base[:, a:a + 1] + offs[a][None, :]) < (nx, ny, nz)[a])
                       for a in range(3)]
                dd = d2[2][:, :, None, None] + d2[1][:, None, :, None] + d2[0][:, None, None, :]
                mask = dd < (reach[idx] ** 2).astype(F32)[:, None, None, None]
                mask &= inb[2][:, :, None, None] & inb[1][:, None, :, None] & inb[0][:, None, None, :]
                pi, a, b, c = np.nonzero(mask)
                lins.append(((base[pi, 2] + offs[2][a]) * ny + base[pi, 1] + offs[1][b]) * nx
                            + base[pi, 0] + offs[0][c])
                dist = np.sqrt(dd[mask])
                if antialias:  # ramp as wide as the voxel seen along the normal (see aa_width)
                    w2 = (d2[2][pi, a] * sp[2] ** 2 + d2[1][pi, b] * sp[1] ** 2
                          + d2[0][pi, c] * sp[0] ** 2) / np.maximum(dd[mask], F32(1e-6))
                    width = np.sqrt(w2 + F32(edge * edge))
                    rr = tube_radius_for_ramp(radii[idx][pi].astype(F32), width)
                else:
                    width = F32(EDGE_MM)
                    rr = radii[idx][pi].astype(F32)
                f = F32(0.5) - (dist - rr) / width
                covs.append(np.clip(f, F32(0.0), F32(1.0)))
        lin = np.concatenate(lins) if lins else np.zeros(0, np.int64)
        cov = np.concatenate(covs) if covs else np.zeros(0, F32)
        k = lin // self.plane
        order = np.argsort(k.astype(np.uint16) if nz < 65536 else k, kind="stable")  # radix
        self.lin, self.cov, self.k = lin[order], cov[order], k[order]

    def coverage(self, k0: int, k1: int) -> NDArray[np.float32] | None:
        lo, hi = np.searchsorted(self.k, [k0, k1])
        if hi <= lo:
            return None
        out = np.zeros((k1 - k0) * self.plane, dtype=F32)
        np.maximum.at(out, self.lin[lo:hi] - k0 * self.plane, self.cov[lo:hi])
        return out.reshape(k1 - k0, self.ny, self.nx)


def aa_width(grid: Grid, X: Any, Y: Any, Z: Any, dist2: Any, edge: float) -> NDArray[np.float32]:
    """Width (mm) of the partial-volume ramp at offsets ``(X, Y, Z)`` from a ball's centre.

    A voxel is a box of the grid's spacing; seen along the surface normal ``n`` its footprint
    has the second moment of a ramp of width ``sqrt(sum_i (n . e_i)^2 s_i^2)`` (``e_i`` the
    index axes' world directions, ``s_i`` their spacings). That width, combined with the
    tissue's own ``edge``, makes each voxel's value the covered fraction of the voxel, so a
    3 mm nodule in 2.5 mm slices is blurred along z as a scanner blurs it.
    """
    acc: Any = F32(edge * edge)
    D, s = grid.direction, grid.spacing_xyz
    for i in range(3):
        comp: Any = F32(0.0)
        for c, A in enumerate((X, Y, Z)):
            if D[c, i] != 0.0:
                comp = comp + A * F32(D[c, i])
        acc = acc + comp * comp * F32(s[i] * s[i]) / np.maximum(dist2, F32(1e-6))
    return np.sqrt(acc).astype(F32, copy=False)


def ball_radius_for_ramp(r: Any, w: Any) -> Any:
    """Radius ``R`` at which a ramp of width ``w`` keeps a ball of radius ``r``'s volume.

    A ramp centred on a curved surface adds more volume outside than it removes inside:
    per solid angle it holds ``R^3/3 + R w^2/12``. Two Newton steps on
    ``R^3 + R w^2 / 4 = r^3`` pull the ramp in, so a small nodule in thick slices gets
    dimmer, not bigger -- as a scanner's partial volume does.
    """
    q = w * w * F32(0.25)
    R = r
    for _ in range(2):
        R = R - (R * R * R + R * q - r * r * r) / (F32(3.0) * R * R + q)
    return R


def tube_radius_for_ramp(r: Any, w: Any) -> Any:
    """Like :func:`ball_radius_for_ramp` for a tube (per unit length the ramp holds
    ``pi (R^2 + w^2 / 12)``); never below half the radius, where the ramp stops working."""
    return np.sqrt(np.maximum(r * r - w * w * F32(1.0 / 12.0), F32(0.25) * r * r))


def stamp_sphere(val: NDArray[np.float32], grid: Grid, k0: int, k1: int, sp: Sphere) -> None:
    """Blend a (lobulated) ball into slab ``val`` (slices ``[k0, k1)``), never darkening."""
    amp = float(np.abs(sp.lobes[:, 3]).sum()) if len(sp.lobes) else 0.0
    edge = math.hypot(sp.edge, float(grid.spacing_xyz.max())) if sp.antialias else sp.edge
    rmax = sp.r * (1 + amp) + edge
    ic = grid.to_index_ijk(sp.c)
    pad = rmax / grid.spacing_xyz
    bx = grid.box(ic - pad, ic + pad, k0, k1)
    if bx is None:
        return
    zs, ys, xs = bx
    X, Y, Z = grid.rel_coords(sp.c, np.arange(zs.start, zs.stop), np.arange(ys.start, ys.stop),
                              np.arange(xs.start, xs.stop))
    dist2 = X * X + Y * Y + Z * Z
    dist = np.sqrt(dist2)
    reff: Any = F32(sp.r)
    if len(sp.lobes):
        inv = 1.0 / np.maximum(dist, F32(1e-3))
        lob = 0.0
        for vx, vy, vz, a in sp.lobes:
            c = (X * F32(vx) + Y * F32(vy) + Z * F32(vz)) * inv
            lob = lob + F32(a) * (F32(1.5) * c * c - F32(0.5))
        reff = F32(sp.r) * (F32(1.0) + lob)
    if sp.antialias:
        w = aa_width(grid, X, Y, Z, dist2, sp.edge)
        f = np.clip(F32(0.5) - (dist - ball_radius_for_ramp(reff, w)) / w, F32(0.0), F32(1.0))
    else:
        f = ramp(dist - reff, sp.edge)
    sub = val[zs.start - k0:zs.stop - k0, ys, xs]
    np.maximum(sub, sub + f * (F32(sp.hu) - sub), out=sub)
