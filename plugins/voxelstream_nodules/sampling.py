"""Where cubes go: negatives away from findings and inside the body; augmentation draws.

Every draw comes from a numpy ``Generator`` seeded with ``(seed, crc32(series_uid))``, so a
volume's cubes do not depend on which other volumes are in the store or on their order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["volume_rng", "clear_of_findings", "inside_body", "Augmentation", "draw_augmentations", "augment",
           "centred_flip", "quarter_turns",
           "near_misses", "NEAR_MISS_GAP_MM"]

# Body rule: a negative cube's centre must be inside the body, tested on the cube itself (so
# no extra chunk is read): its centre voxel and at least half of the voxels of the cube's
# central box (the middle half along each axis) must be above the air level, where air is anything at or below the
# window minimum + AIR_MARGIN of the window's range. With the usual [-1000, 400] HU -> [0, 1]
# window air is < -930 HU, so lung parenchyma (about -850 HU) counts as body, the air around
# the patient (and padding past the volume's border) does not.
AIR_MARGIN = 0.05
BODY_FRACTION = 0.5


def volume_rng(seed: int, series_uid: str, purpose: str) -> np.random.Generator:
    """The generator for one volume and one purpose ("negatives", "augment")."""
    return np.random.default_rng([int(seed), zlib.crc32(series_uid.encode()), zlib.crc32(purpose.encode())])


def clear_of_findings(
    centres_zyx: np.ndarray,
    findings_zyx: np.ndarray,
    diameters_mm: np.ndarray,
    spacing_zyx: Sequence[float],
    cube_mm: float,
) -> np.ndarray:
    """True for each centre whose cube overlaps no finding: for every finding, along at least
    one axis ``|centre - finding| > cube_mm / 2 + diameter / 2`` (mm, along the volume axes)."""
    c = np.asarray(centres_zyx, dtype=float).reshape(-1, 1, 3)
    f = np.asarray(findings_zyx, dtype=float).reshape(1, -1, 3)
    if f.shape[1] == 0:
        return np.ones(c.shape[0], dtype=bool)
    dist_mm = np.abs(c - f) * np.asarray(spacing_zyx, dtype=float)
    limit = cube_mm / 2 + np.asarray(diameters_mm, dtype=float).reshape(1, -1, 1) / 2
    return (dist_mm > limit).any(axis=2).all(axis=1)


def inside_body(cube: np.ndarray, window_min: float, window_max: float) -> bool:
    """The body rule above, for one cube."""
    centre = tuple(slice(n // 4, n - n // 4) for n in cube.shape)
    air_level = window_min + AIR_MARGIN * (window_max - window_min)
    middle = tuple(n // 2 for n in cube.shape)  # the centre voxel (see extract.cube_starts)
    return bool(cube[middle] > air_level) and float(np.mean(cube[centre] > air_level)) >= BODY_FRACTION


@dataclass(frozen=True)
class Augmentation:
    """A shift (voxels, z y x) of the cube centre, flips per axis, then ``rot90`` quarter
    turns in the axial (y, x) plane."""

    shift: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    quarter_turns: int


def draw_augmentations(
    rng: np.random.Generator, n: int, spacing_zyx: Sequence[float], edge: Sequence[int], max_shift_mm: float = 3.0
) -> list[Augmentation]:
    """``n`` random augmentations; shifts are at most ``max_shift_mm`` along each axis, and
    odd quarter turns only when the axial plane is square."""
    limit = [int(np.floor(max_shift_mm / float(s) + 1e-9)) for s in spacing_zyx]
    turns = 4 if edge[1] == edge[2] else 2
    out = []
    for _ in range(n):
        shift = tuple(int(rng.integers(-m, m + 1)) for m in limit)
        flips = tuple(bool(b) for b in rng.integers(0, 2, size=3))
        k = int(rng.integers(0, turns)) * (4 // turns)
        out.append(Augmentation(shift, flips, k))  # type: ignore[arg-type]
    return out


def centred_flip(cube: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """``cube`` mirrored along ``axes`` about its centre voxel ``n // 2`` (see
    :func:`.extract.cube_starts`): index ``j`` goes to ``(n - j) % n``.

    Why not ``np.flip``: along an even edge it mirrors about ``n/2 - 1/2`` and moves the
    centre voxel to ``n//2 - 1``. A classifier trained on such flips learns that a nodule
    half a voxel off the centre voxel is centred, and every detection then lands half a
    voxel off the nodule in each axis -- at 2 mm voxels 1.7 mm, more than the radius of a
    3 mm nodule. The voxel that wraps round is the cube's outermost layer."""
    out = cube
    for a in axes:
        out = np.flip(out, axis=a)
        if cube.shape[a] % 2 == 0:
            out = np.roll(out, 1, axis=a)
    return out


def quarter_turns(cube: np.ndarray, k: int) -> np.ndarray:
    """``k`` quarter turns in the axial (y, x) plane (axes 1, 2 of a cube or 2, 3 of a batch
    are the last two), about the centre voxel as :func:`centred_flip`."""
    out = cube
    for _ in range(k % 4):
        out = centred_flip(np.swapaxes(out, -2, -1), [out.ndim - 2])
    return out


def augment(cube: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Apply ``aug``'s flips and turns (about the centre voxel) to a cube already cut at the
    shifted centre."""
    axes = tuple(i for i, f in enumerate(aug.flips) if f)
    return np.ascontiguousarray(quarter_turns(centred_flip(cube, axes), aug.quarter_turns))


#: Near misses lie this far (mm) outside a nodule's surface: far enough that a detection
#: there would not hit it (LUNA16 counts a hit within the radius), close enough that the
#: nodule is in the cube, off centre.
NEAR_MISS_GAP_MM = (4.0, 12.0)


def near_misses(
    rng: np.random.Generator,
    centres_zyx: np.ndarray,
    diameters_mm: np.ndarray,
    per_nodule: int,
    spacing_zyx: Sequence[float],
    findings_zyx: np.ndarray,
    finding_diameters_mm: np.ndarray,
    gap_mm: tuple[float, float] = NEAR_MISS_GAP_MM,
) -> np.ndarray:
    """Integer voxel centres ``(n, 3)`` of negative cubes next to nodules: ``per_nodule``
    draws per nodule at ``radius + U(gap_mm)`` mm in a random direction, kept only when
    they are at least ``radius + gap_mm[0]`` from *every* finding (so no cube centre
    lies on or next to another nodule). Why: negatives drawn away from all findings never
    show a nodule, so a classifier trained on them answers "a nodule somewhere in the cube"
    over a plateau as wide as the cube; these teach it that the nodule must be centred, which
    is what puts the detection within the radius."""
    c = np.asarray(centres_zyx, dtype=float).reshape(-1, 3)
    if not len(c) or per_nodule <= 0:
        return np.zeros((0, 3), dtype=np.int64)
    sp = np.asarray(spacing_zyx, dtype=float)
    r = np.asarray(diameters_mm, dtype=float).reshape(-1) / 2
    n = len(c) * per_nodule
    d = rng.normal(size=(n, 3))
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    dist = np.repeat(r, per_nodule) + rng.uniform(gap_mm[0], gap_mm[1], size=n)
    pts = np.rint(np.repeat(c, per_nodule, axis=0) + d * dist[:, None] / sp).astype(np.int64)
    f = np.asarray(findings_zyx, dtype=float).reshape(-1, 3)
    if len(f):
        mm = np.linalg.norm((pts[:, None, :] - f[None]) * sp, axis=2)
        reach = np.asarray(finding_diameters_mm, dtype=float).reshape(1, -1) / 2 + gap_mm[0]
        pts = pts[np.all(mm >= reach, axis=1)]
    return pts
