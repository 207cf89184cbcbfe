"""What the phantom's nodules look like and where they sit, as in LUNA16.

* **Sizes** follow LUNA16's distribution (:data:`LUNA16_DIAMETER_QUANTILES`): most nodules
  are small (median 6.4 mm, three in four under 10 mm), a few reach 30 mm.
* **Textures**: solid (soft tissue), ground-glass (hazy, -600..-300 HU, fuzzy edge) and
  part-solid (ground glass around a solid core).
* **Attachments**: isolated (lung all around), juxtapleural (touching the pleura, partly
  merged with the chest wall) and vessel-attached (a vessel runs into the nodule) -- the
  cases a detector finds hardest, because the nodule is not an island of tissue.

:class:`NoduleMix` chooses the proportions; ``NoduleMix.classic()`` is the old, easy mix
(isolated solid nodules, log-uniform sizes, 1 mm edge ramp) that earlier tests rely on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from .phantom_anatomy import Anatomy
from .phantom_geometry import DIRS, EDGE_MM, Grid
from .phantom_structures import AA_EDGE_MM, Sphere, lobes

__all__ = ["LUNA16_DIAMETER_QUANTILES", "NoduleMix", "diameter_cdf", "sample_diameters",
           "place_juxtapleural", "place_vessel_attached", "vessel_axes", "nodule_spheres"]

#: Quantiles ``(probability, diameter mm)`` of the nodule diameters in LUNA16's
#: annotations.csv (1186 nodules of 888 scans), computed offline once and clipped to
#: [3, 30] mm: 76 % are under 10 mm, 42 % under 6 mm, median 6.43 mm. Diameters are drawn
#: by inverse CDF, linear in log-diameter between these points (the table is never read at
#: run time).
LUNA16_DIAMETER_QUANTILES: tuple[tuple[float, float], ...] = (
    (0.00, 3.00), (0.05, 4.09), (0.10, 4.40), (0.20, 4.90), (0.30, 5.31), (0.40, 5.90),
    (0.50, 6.43), (0.60, 7.30), (0.70, 8.72), (0.80, 11.07), (0.85, 12.86), (0.90, 15.48),
    (0.95, 18.95), (0.98, 22.26), (1.00, 30.00),
)
_P = np.array([p for p, _ in LUNA16_DIAMETER_QUANTILES])
_LOGD = np.log([d for _, d in LUNA16_DIAMETER_QUANTILES])

TEXTURES = ("solid", "ground-glass", "part-solid")  # the values of Nodule.texture
ATTACHMENTS = ("isolated", "juxtapleural", "vessel")  # ... and of Nodule.attachment
GGN_MIN_DIAMETER_MM = 5.0  # smaller hazy nodules are not annotated in practice (and vanish)


def diameter_cdf(d_mm: float | NDArray[np.float64]) -> NDArray[np.float64]:
    """Fraction of LUNA16-distributed nodules with diameter <= ``d_mm`` (0 below 3 mm)."""
    return np.interp(np.log(np.asarray(d_mm, dtype=np.float64)), _LOGD, _P)


def sample_diameters(rng: np.random.Generator, n: int, lo: float = 3.0, hi: float = 30.0
                     ) -> NDArray[np.float64]:
    """``n`` diameters (mm) from LUNA16's distribution restricted to ``[lo, hi]``."""
    u = rng.uniform(float(diameter_cdf(lo)), float(diameter_cdf(hi)), size=n)
    return np.clip(np.exp(np.interp(u, _P, _LOGD)), lo, hi)


@dataclass(frozen=True)
class NoduleMix:
    """Proportions of the kinds of nodule a phantom gets (each nodule is drawn on its own).

    Attributes:
        sizes: ``"luna16"`` (LUNA16's distribution) or ``"log-uniform"``, both limited to
            the ``nodule_diameters_mm`` range of :func:`make_ct_phantom`.
        juxtapleural: probability that a nodule touches the pleura.
        vessel_attached: probability that a vessel runs into it (not with juxtapleural).
        ground_glass: probability that a nodule of at least 5 mm is ground-glass.
        part_solid: probability that a nodule of at least 5 mm is part-solid.
        antialias: render nodules and vessels with partial-volume edges: each voxel takes
            the fraction of its footprint (its spacing seen along the surface normal) that
            the object covers, so thick slices blur small nodules as a scanner does.
    """

    sizes: str = "luna16"
    juxtapleural: float = 0.25
    vessel_attached: float = 0.2
    ground_glass: float = 0.12
    part_solid: float = 0.06
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.sizes not in ("luna16", "log-uniform"):
            raise ValueError(f"NoduleMix.sizes must be 'luna16' or 'log-uniform', got {self.sizes!r}")
        probs = (self.juxtapleural, self.vessel_attached, self.ground_glass, self.part_solid)
        if any(not 0.0 <= p <= 1.0 for p in probs):
            raise ValueError("NoduleMix probabilities must lie in [0, 1]")
        if self.juxtapleural + self.vessel_attached > 1.0 or self.ground_glass + self.part_solid > 1.0:
            raise ValueError("NoduleMix: juxtapleural + vessel_attached and ground_glass + "
                             "part_solid must each be at most 1")

    @classmethod
    def classic(cls) -> NoduleMix:
        """The old, easy mix: isolated solid nodules, log-uniform sizes, no anti-aliasing."""
        return cls(sizes="log-uniform", juxtapleural=0.0, vessel_attached=0.0,
                   ground_glass=0.0, part_solid=0.0, antialias=False)

    @property
    def is_classic(self) -> bool:
        return self == NoduleMix.classic()

    def draw(self, rng: np.random.Generator, diameter: float) -> tuple[str, str]:
        """``(texture, attachment)`` of one nodule of ``diameter`` mm."""
        a = rng.uniform()
        attachment = ("juxtapleural" if a < self.juxtapleural
                      else "vessel" if a < self.juxtapleural + self.vessel_attached else "isolated")
        t = rng.uniform()
        texture = "solid"
        if diameter >= GGN_MIN_DIAMETER_MM:
            texture = ("ground-glass" if t < self.ground_glass
                       else "part-solid" if t < self.ground_glass + self.part_solid else "solid")
        return texture, attachment


def _far_from(pts: NDArray[np.float64], others: Sequence[tuple[NDArray[np.float64], float]]
              ) -> NDArray[np.bool_]:
    ok = np.ones(len(pts), dtype=bool)
    for c, dmin in others:
        ok &= np.linalg.norm(pts - c, axis=1) >= dmin
    return ok


def _inside_volume(anat: Anatomy, grid: Grid, pts: NDArray[np.float64], r: float) -> NDArray[np.bool_]:
    shell = pts[:, None, :] + r * DIRS[None, :, :]
    return np.all(grid.inside(shell + anat.center, margin_vox=0.5), axis=1)


def place_juxtapleural(anat: Anatomy, grid: Grid, rng: np.random.Generator, r: float,
                       others: Sequence[tuple[NDArray[np.float64], float]], tries: int = 30,
                       batch: int = 256) -> NDArray[np.float64] | None:
    """A centre (relative to the anatomy centre) for a nodule of radius ``r`` whose ball
    crosses the lung surface: the centre lies inside the lung at ``0.5 r .. 0.95 r`` from
    the pleura along the inward normal, so 5-50 % of the radius sits in the chest wall.

    Surface points are found by bisection along random rays from a lung's centre (the
    lung's shape function grows monotonically along such a ray); points next to the heart
    or whose ball leaves the volume are rejected.
    """
    reach = 2.5 * max(anat.lung_lx, anat.lung_ly, anat.lung_lz)
    for _ in range(tries):
        d = rng.normal(size=(batch, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        side = rng.choice([-1.0, 1.0], size=batch)
        c0 = np.stack([side * anat.lung_xc, np.full(batch, anat.lung_yc),
                       np.full(batch, anat.lung_zc)], axis=1)
        lo, hi = np.zeros(batch), np.full(batch, reach)
        for _it in range(40):
            mid = 0.5 * (lo + hi)
            p = c0 + mid[:, None] * d
            inside = anat.lung_f(p[:, 0], p[:, 1], p[:, 2]) < 1.0
            lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
        surf = c0 + lo[:, None] * d
        x, y, z = surf[:, 0], surf[:, 1], surf[:, 2]
        u = (np.abs(x) - anat.lung_xc) / anat.lung_lx
        w = (z - anat.lung_zc) / anat.lung_lz
        grad = np.stack([2 * u * np.sign(x) / anat.lung_lx, 2 * (y - anat.lung_yc) / anat.lung_ly ** 2,
                         4 * w ** 3 / anat.lung_lz], axis=1)
        inward = -grad / np.maximum(np.linalg.norm(grad, axis=1, keepdims=True), 1e-12)
        depth = r * rng.uniform(0.5, 0.95, size=batch)
        pts = surf + depth[:, None] * inward
        ok = anat.in_lung(pts) & (anat.heart_f(x, y, z) > 1.3) & (anat.heart_f(*pts.T) > 1.3)
        ok &= anat.in_lung(pts + (r + 1.0) * inward)  # lung on the far side: a nodule, not a wall
        ok &= _inside_volume(anat, grid, pts, r + 1.0) & _far_from(pts, others)
        idx = np.nonzero(ok)[0]
        if len(idx):
            return pts[idx[0]]
    return None


def place_vessel_attached(anat: Anatomy, grid: Grid, rng: np.random.Generator, r: float,
                          others: Sequence[tuple[NDArray[np.float64], float]],
                          axes: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
                          tries: int = 30, batch: int = 256) -> NDArray[np.float64] | None:
    """A centre for a nodule of radius ``r`` that a vessel runs into: the vessel's axis passes
    at ``0.3 .. 0.8 (r + r_vessel)`` from the centre, so the vessel enters the nodule.

    ``axes`` are ``(points, radii, directions)`` along the vessel axes (relative
    coordinates); the nodule's ball plus 2 mm must lie in the lung (not juxtapleural).
    """
    pts_v, rad_v, dir_v = axes
    if len(pts_v) == 0:
        return None
    for _ in range(tries):
        i = rng.integers(0, len(pts_v), size=batch)
        perp = np.cross(dir_v[i], rng.normal(size=(batch, 3)))
        perp /= np.maximum(np.linalg.norm(perp, axis=1, keepdims=True), 1e-12)
        off = (r + rad_v[i]) * rng.uniform(0.3, 0.8, size=batch)
        pts = pts_v[i] + off[:, None] * perp
        ok = anat.in_lung(pts) & np.all(anat.in_lung(pts[:, None, :] + (r + 2.0) * DIRS[None]), axis=1)
        ok &= _inside_volume(anat, grid, pts, r + 1.0) & _far_from(pts, others)
        idx = np.nonzero(ok)[0]
        if len(idx):
            return pts[idx[0]]
    return None


def vessel_axes(segs: Sequence[object], min_radius: float = 1.0
                ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Points (segment midpoints), radii and unit directions of vessel segments at least
    ``min_radius`` mm thick: where a nodule can attach to a visible vessel."""
    rows = [(0.5 * (s.a + s.b), 0.5 * (s.ra + s.rb), s.b - s.a) for s in segs  # type: ignore[attr-defined]
            if min(s.ra, s.rb) >= min_radius and np.linalg.norm(s.b - s.a) > 0]  # type: ignore[attr-defined]
    if not rows:
        return np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3))
    p = np.array([r[0] for r in rows])
    d = np.array([r[2] for r in rows])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return p, np.array([r[1] for r in rows]), d


GGN_EDGE_MM = 2.0  # ground glass fades into the lung over about 2 mm


def nodule_spheres(rng: np.random.Generator, c: NDArray[np.float64], r: float, texture: str,
                   antialias: bool) -> list[Sphere]:
    """The balls that draw one nodule of radius ``r`` at world ``c``.

    Solid: soft tissue (30-60 HU), slightly lobulated above 5 mm. Ground-glass: -560..-340
    HU (so the nodule's mean, noise included, stays within -600..-300), more lobulated, with
    a fuzzy edge; vessels crossing it stay visible (balls never darken). Part-solid: ground
    glass plus a solid core of 30-50 % of the radius. Without ``antialias`` (the classic
    mix) a solid nodule is drawn exactly as before the mix existed (same random draws).
    """
    if texture == "solid":
        edge = EDGE_MM if not antialias else AA_EDGE_MM
        return [Sphere(c, r, float(rng.uniform(30.0, 60.0)), edge,
                       lobes(rng, 0.06 if r > 2.5 else 0.0), antialias)]
    if texture not in TEXTURES:
        raise ValueError(f"unknown nodule texture {texture!r}; one of {TEXTURES}")
    out = [Sphere(c, r, float(rng.uniform(-560.0, -340.0)), GGN_EDGE_MM, lobes(rng, 0.1), antialias)]
    if texture == "part-solid":
        out.append(Sphere(c, r * float(rng.uniform(0.3, 0.5)), float(rng.uniform(30.0, 60.0)),
                          AA_EDGE_MM if antialias else EDGE_MM, lobes(rng, 0.05), antialias))
    return out


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A diameter drawn log-uniformly in ``[lo, hi]`` (the classic mix; one draw, as before)."""
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))
