"""``make_ct_phantom``: a synthetic chest CT rendered slab by slab, deterministic per seed."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from .phantom_anatomy import BLOOD, Anatomy, Texture
from .phantom_geometry import EDGE_MM, F32, Grid, check_direction, default_origin, unit
from .phantom_findings import (NoduleMix, log_uniform, nodule_spheres, place_juxtapleural,
                               place_vessel_attached, sample_diameters, vessel_axes)
from .phantom_structures import (Segment, Sphere, Splatter, grow_vessels, lobes, place,
                                 sample_segments, stamp_sphere)
from .phantom_types import HU_MAX, HU_MIN, Nodule, Phantom

__all__ = ["make_ct_phantom"]


def make_ct_phantom(shape: tuple[int, int, int] = (96, 128, 128),
                    spacing: tuple[float, float, float] = (2.5, 0.8, 0.8), *,
                    seed: int = 0, n_nodules: int = 2,
                    nodule_diameters_mm: tuple[float, float] = (4.0, 30.0),
                    n_distractors: int = 2, direction: ArrayLike | None = None,
                    origin_xyz: Sequence[float] | None = None,
                    noise_hu: float = 20.0, nodule_mix: NoduleMix | None = None) -> Phantom:
    """Render a synthetic chest CT.

    Args:
        shape: array shape ``(z, y, x)``.
        spacing: voxel spacing in mm, ``(z, y, x)``.
        seed: everything (anatomy jitter, vessels, placement, noise) derives from it.
        n_nodules: number of annotated nodules.
        nodule_diameters_mm: ``(min, max)``; each diameter is drawn in it, log-uniformly or
            from LUNA16's distribution (see ``nodule_mix``). A nodule that cannot fit inside
            the lungs of this field of view is redrawn smaller (never below ``min``);
            ``RuntimeError`` if even ``min`` does not fit.
        n_distractors: nodule-like non-nodules (alternately a calcified granuloma of
            300-800 HU and a vessel crossing), inside the lungs and away from the nodules.
        direction: 3x3 orthonormal ITK direction matrix (columns = world directions of the
            x, y, z index axes); identity by default.
        origin_xyz: world LPS of voxel (0, 0, 0); by default the volume centre is placed at
            world (10, -20, -150) mm.
        noise_hu: standard deviation of the additive Gaussian noise (0 disables it).
        nodule_mix: sizes, textures (solid, ground-glass, part-solid), attachments
            (isolated, juxtapleural, vessel-attached) and partial-volume rendering of the
            nodules; ``NoduleMix()`` is LUNA16-like. ``None`` (default) is
            ``NoduleMix.classic()``: isolated solid nodules, log-uniform sizes, the images
            earlier versions rendered for the same seed.

    Returns:
        A :class:`Phantom` whose ``hu`` is int16 in ``[-1024, 3071]`` and whose ``lung`` is
        the anatomical lung region.
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
    D = check_direction(direction)
    origin = (default_origin(shape, spacing, D) if origin_xyz is None
              else np.asarray(origin_xyz, dtype=np.float64).reshape(3))
    grid = Grid(shape, spacing, origin, D)
    rng = np.random.default_rng(seed)
    anat = Anatomy(grid, rng)
    tex = Texture(shape, spacing, rng)

    # vessels (relative coordinates -> world)
    segments = grow_vessels(anat, rng)
    C = anat.center

    # nodules
    mix = NoduleMix.classic() if nodule_mix is None else nodule_mix
    classic = mix.is_classic
    axes = vessel_axes(segments) if mix.vessel_attached > 0 else None
    if mix.sizes == "luna16" and not classic:
        wanted = sample_diameters(rng, n_nodules, dmin, dmax).tolist()
    nod_rel: list[tuple[NDArray[np.float64], float]] = []
    spheres: list[Sphere] = []
    nodules: list[Nodule] = []
    for n_i in range(n_nodules):
        if classic or mix.sizes != "luna16":
            diam = log_uniform(rng, dmin, dmax)
        else:
            diam = wanted[n_i]
        texture, attachment = ("solid", "isolated") if classic else mix.draw(rng, diam)
        while True:
            r = diam / 2
            others = [(c, r + rc + 5.0) for c, rc in nod_rel]
            p = None
            if attachment == "juxtapleural":
                p = place_juxtapleural(anat, grid, rng, r, others)
            elif attachment == "vessel" and axes is not None:
                p = place_vessel_attached(anat, grid, rng, r, others, axes)
            if p is None:  # isolated, or no room for the attachment asked for
                attachment = "isolated"
                p = place(anat, grid, rng, 1.1 * r + 3.5, others)
            if p is not None:
                break
            if diam <= dmin:
                raise RuntimeError(
                    f"cannot fit a {dmin:.1f} mm nodule into the lungs of this phantom "
                    f"(shape {shape}, spacing {spacing}); use a larger field of view")
            diam = max(dmin, diam * 0.85)
        nod_rel.append((p, r))
        spheres += nodule_spheres(rng, p + C, r, texture, mix.antialias)
        xyz = tuple(float(v) for v in p + C)
        nodules.append(Nodule(xyz, float(diam), texture=texture,  # type: ignore[arg-type]
                              attachment=attachment))

    # distractors
    distractors: list[Nodule] = []
    dist_spheres: list[Sphere] = []
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
            p = place(anat, grid, rng, r + 2.0, others, candidates=seg_pts)
        if p is None:
            p = place(anat, grid, rng, r + 2.0, others)
        if p is None:
            continue  # no room: fewer distractors rather than failing
        if calc:
            sp = Sphere(p + C, r, float(rng.uniform(300.0, 800.0)), 0.5, np.zeros((0, 4)))
        else:
            sp = Sphere(p + C, r, BLOOD, EDGE_MM, lobes(rng, 0.1))
            # a crossing: two short vessels through the blob
            for _k in range(2):
                d = unit(rng.normal(size=3))
                half = rng.uniform(8.0, 14.0)
                rv = rng.uniform(0.8, 1.2)
                segments.append(Segment(p - half * d, p + half * d, rv, rv))
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

    splat = Splatter(grid, *sample_segments(segments), antialias=mix.antialias)
    all_sph = spheres + dist_spheres
    aa_pad = float(grid.spacing_xyz.max()) if mix.antialias else 0.0
    sph_k = np.array([krange(s.c[None, :], s.r * 1.5 + s.edge + aa_pad)
                      for s in all_sph]).reshape(-1, 2)

    # render slab by slab
    nz, ny, nx = shape
    hu = np.empty(shape, dtype=np.int16)
    lung_mask = np.zeros(shape, dtype=bool)
    slab = max(1, (1 << 20) // max(1, ny * nx))
    noise_seeds = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x70A5E]).spawn(nz)
    # Gaussian noise by inverse-CDF lookup of 16-bit uniforms: ~5x faster than
    # standard_normal and indistinguishable from it at 1/65536 resolution (tails at 4.3 sd)
    noise_table = (special.ndtri((np.arange(65536) + 0.5) / 65536) * noise_hu).astype(F32)
    js, is_ = np.arange(ny), np.arange(nx)
    for k0 in range(0, nz, slab):
        k1 = min(nz, k0 + slab)
        X, Y, Z = grid.rel_coords(C, np.arange(k0, k1), js, is_)
        val, lungs = anat.render(X, Y, Z, k0, k1, tex)
        for bx, frac in lungs:  # the anatomical lung region, ground truth for segmentation
            lung_mask[k0 + bx[0].start:k0 + bx[0].stop, bx[1], bx[2]] |= np.broadcast_to(
                frac >= 0.5, tuple(sl.stop - sl.start for sl in bx))
        cov = splat.coverage(k0, k1)
        if cov is not None:  # vessels: blood-density tubes, visible inside the lungs only
            for bx, lung in lungs:
                c = cov[bx] * lung
                v = val[bx]
                v += c * (F32(BLOOD) - v)
        for i in np.nonzero((sph_k[:, 1] >= k0) & (sph_k[:, 0] <= k1 - 1))[0]:
            stamp_sphere(val, grid, k0, k1, all_sph[i])
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
                   distractors=tuple(distractors), lung=lung_mask)
