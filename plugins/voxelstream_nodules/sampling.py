"""Where cubes go: negatives away from findings and inside the body; augmentation draws.

Every draw comes from a numpy ``Generator`` seeded with ``(seed, crc32(series_uid))``, so a
volume's cubes do not depend on which other volumes are in the store or on their order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["volume_rng", "clear_of_findings", "inside_body", "Augmentation", "draw_augmentations", "augment"]

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


def augment(cube: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Apply ``aug``'s flips and turns to a cube already cut at the shifted centre."""
    axes = tuple(i for i, f in enumerate(aug.flips) if f)
    out = np.flip(cube, axis=axes) if axes else cube
    return np.ascontiguousarray(np.rot90(out, k=aug.quarter_turns, axes=(1, 2)))
