"""Synthetic colour fundus photographs whose lesions grow with the diabetic-retinopathy grade.

A phantom is drawn with numpy (and Pillow for the vessel strokes) as an ``(H, W, 3)`` uint8
RGB array: a vignetted orange-red disc on black, cut at top and bottom when its radius is
larger than half the height (as many EyePACS photographs are), an optic disc and a macula
(mirrored between left and right eyes), a branching vessel tree, and lesions whose number and
kind follow the grade (see :data:`LESIONS`). Size, brightness, colour cast, centring and crop
vary per photograph, so a model has to find lesions rather than read the exposure.

Lesion sizes are fractions of the fundus radius ``r``: at a preprocessing radius of 64 px a
microaneurysm is about 1.5 px across, a haemorrhage 3-7 px.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["LESIONS", "PhantomInfo", "draw_fundus", "write_phantoms", "GRADE_FREQUENCIES"]

# Mean count of each lesion kind per grade 0..4 (Poisson), after the international clinical
# DR scale: 1 = microaneurysms only; 2 = more than that (haemorrhages, exudates); 3 = many
# haemorrhages in every quadrant, cotton-wool spots; 4 = new vessels.
LESIONS: dict[str, tuple[float, float, float, float, float]] = {
    "microaneurysm": (0, 4, 10, 16, 12),
    "haemorrhage": (0, 0, 4, 14, 10),
    "exudate": (0, 0, 5, 8, 7),
    "cotton_wool": (0, 0, 0.5, 3, 2),
    "new_vessels": (0, 0, 0, 0, 2.5),
}

# How often each grade is drawn: imbalanced towards grade 0, like the Kaggle data (milder).
GRADE_FREQUENCIES = (0.40, 0.15, 0.20, 0.12, 0.13)


@dataclass(frozen=True)
class PhantomInfo:
    """What was drawn: the fundus centre ``(y, x)`` and radius in pixels and lesion counts."""

    grade: int
    centre: tuple[float, float]
    radius: float
    counts: dict[str, int]


def _blob(img: np.ndarray, y: float, x: float, radius: float, colour: Sequence[float], alpha: float,
          soft: float = 0.35) -> None:
    """Blend a round blob (soft edge ``soft * radius``) of ``colour`` into ``img`` in place."""
    h, w = img.shape[:2]
    reach = radius * (1 + 2 * soft) + 1
    y0, y1 = max(0, int(y - reach)), min(h, int(y + reach) + 2)
    x0, x1 = max(0, int(x - reach)), min(w, int(x + reach) + 2)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(yy - y, xx - x)
    a = alpha * np.clip((radius + soft * radius + 0.5 - d) / (2 * soft * radius + 1.0), 0.0, 1.0)
    patch = img[y0:y1, x0:x1]
    patch += a[..., None] * (np.asarray(colour, np.float32) - patch)


def _walk(rng: np.random.Generator, start: tuple[float, float], angle: float, length: float, step: float,
          wiggle: float) -> list[tuple[float, float]]:
    """A random-walk polyline ``[(x, y), ...]`` (Pillow's order) from ``start`` (y, x)."""
    y, x = start
    pts = [(x, y)]
    for _ in range(max(2, int(length / step))):
        angle += rng.normal(0, wiggle)
        y, x = y + step * np.sin(angle), x + step * np.cos(angle)
        pts.append((x, y))
    return pts


def _stroke(shape: tuple[int, int], paths: list[tuple[list[tuple[float, float]], float]]) -> np.ndarray:
    """Coverage in [0, 1] of polylines drawn with their widths (2x supersampled)."""
    ss = 2
    canvas = Image.new("L", (shape[1] * ss, shape[0] * ss), 0)
    draw = ImageDraw.Draw(canvas)
    for pts, width in paths:
        draw.line([(px * ss, py * ss) for px, py in pts], fill=255, width=max(1, int(round(width * ss))), joint="curve")
    small = canvas.resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


def _vessel_paths(rng: np.random.Generator, disc: tuple[float, float], r: float, side: int) -> list:
    """The vessel tree from the optic disc: four arcades (two temporal curving round the
    macula, two nasal), each branching twice, widths tapering."""
    paths = []
    for base_angle, length in ((-0.6, 1.3), (0.6, 1.3), (-2.3, 0.8), (2.3, 0.8)):
        angle = (np.pi - base_angle if side > 0 else base_angle) + rng.normal(0, 0.1)
        stack = [(disc, angle, length * r, 0.022 * r)]
        while stack:
            start, ang, ln, width = stack.pop()
            pts = _walk(rng, start, ang, ln, 0.03 * r, 0.12)
            paths.append((pts, width))
            if width > 0.008 * r:
                for frac in rng.uniform(0.25, 0.7, size=2):
                    k = int(frac * (len(pts) - 1))
                    bx, by = pts[k]
                    stack.append(((by, bx), ang + rng.choice((-1, 1)) * rng.uniform(0.4, 0.9),
                                  ln * rng.uniform(0.45, 0.65), width * 0.65))
    return paths


def _place(rng: np.random.Generator, centre: tuple[float, float], r: float, disc: tuple[float, float],
           spread: float = 0.85) -> tuple[float, float]:
    """A random point inside ``spread * r`` of the centre, away from the optic disc."""
    while True:
        rho, phi = spread * r * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        y, x = centre[0] + rho * np.sin(phi), centre[1] + rho * np.cos(phi)
        if np.hypot(y - disc[0], x - disc[1]) > 0.16 * r:
            return y, x


def draw_fundus(grade: int, rng: np.random.Generator, width: int = 512, eye: str = "left") -> tuple[np.ndarray, PhantomInfo]:
    """One photograph of ``grade`` (0-4) about ``width`` pixels wide (4:3), and what was drawn."""
    if not 0 <= grade <= 4:
        raise ValueError(f"grade must be 0..4, got {grade}")
    w = int(width * rng.uniform(0.9, 1.1)) // 2 * 2
    h = int(w * 0.75) // 2 * 2
    r = h / 2 * rng.uniform(0.92, 1.15)  # > h/2: cut at top and bottom
    cy, cx = h / 2 + rng.normal(0, 0.02 * h), w / 2 + rng.normal(0, 0.02 * w)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    rho = np.hypot(yy - cy, xx - cx) / r
    side = 1 if eye == "left" else -1

    # background retina: orange-red, vignetted, with a slow illumination gradient and a cast
    bright = rng.uniform(0.65, 1.25)
    base = np.array([205, 95, 45], np.float32) * bright * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    tilt = 1 + 0.15 * ((xx - cx) * np.cos(g := rng.uniform(0, 6.3)) + (yy - cy) * np.sin(g)) / r
    shade = np.clip(1 - 0.55 * rho**3, 0, 1) * tilt
    img = base[None, None, :] * shade[..., None]

    disc = (cy + rng.normal(0, 0.04 * r), cx + side * 0.38 * r)
    macula = (cy + rng.normal(0, 0.03 * r), cx - side * 0.3 * r)
    _blob(img, *macula, 0.16 * r, base * 0.55, 0.6, soft=1.0)
    _blob(img, *disc, 0.11 * r, (250, 215, 140), 0.9, soft=0.25)

    cover = _stroke((h, w), _vessel_paths(rng, disc, r, side))
    img += 0.6 * cover[..., None] * (np.array([95, 20, 15], np.float32) * bright - img)

    counts = {k: int(rng.poisson(v[grade])) for k, v in LESIONS.items()}
    if grade > 0:  # every diseased eye shows at least its grade's hallmark lesion
        hallmark = ("microaneurysm", "microaneurysm", "haemorrhage", "haemorrhage", "new_vessels")[grade]
        counts[hallmark] = max(counts[hallmark], 1 + (grade == 3) * 5)
    dark_red = np.array([110, 18, 12], np.float32) * bright
    for _ in range(counts["microaneurysm"]):
        _blob(img, *_place(rng, (cy, cx), r, disc), r * rng.uniform(0.010, 0.016), dark_red, 0.95, soft=0.2)
    for _ in range(counts["haemorrhage"]):
        y, x = _place(rng, (cy, cx), r, disc)
        _blob(img, y, x, r * rng.uniform(0.02, 0.05), dark_red * rng.uniform(0.8, 1.1), 0.9, soft=0.5)
    for _ in range(counts["exudate"]):  # hard exudates come in small clusters
        y, x = _place(rng, (cy, cx), r, disc, spread=0.6)
        for _ in range(rng.integers(2, 6)):
            _blob(img, y + rng.normal(0, 0.03 * r), x + rng.normal(0, 0.03 * r), r * rng.uniform(0.007, 0.014),
                  (250, 230, 120), 0.9, soft=0.2)
    for _ in range(counts["cotton_wool"]):
        y, x = _place(rng, (cy, cx), r, disc, spread=0.7)
        _blob(img, y, x, r * rng.uniform(0.035, 0.06), (235, 215, 190), 0.7, soft=1.0)
    nv_paths = []
    for _ in range(counts["new_vessels"]):  # tangles of fine tortuous vessels, often at the disc
        y, x = disc if rng.uniform() < 0.5 else _place(rng, (cy, cx), r, disc, spread=0.7)
        for _ in range(rng.integers(4, 8)):
            start = (y + rng.normal(0, 0.04 * r), x + rng.normal(0, 0.04 * r))
            nv_paths.append((_walk(rng, start, rng.uniform(0, 6.3), 0.25 * r, 0.012 * r, 0.7), 0.009 * r))
    if nv_paths:
        cover = _stroke((h, w), nv_paths)
        img += 0.85 * cover[..., None] * (np.array([150, 15, 20], np.float32) * bright - img)

    img += rng.normal(0, 2.5, img.shape).astype(np.float32)  # sensor noise
    img *= (rho <= 1.0)[..., None]  # black outside the fundus
    out = np.clip(img, 0, 255).astype(np.uint8)
    return out, PhantomInfo(grade, (float(cy), float(cx)), float(r), counts)


def _grades(rng: np.random.Generator, n: int) -> list[int]:
    """Grades for ``n`` photos: pairs of eyes of one patient, the second eye within one
    grade of the first (as in real data, where the eyes of a patient mostly agree)."""
    grades: list[int] = []
    while len(grades) < n:
        g = int(rng.choice(5, p=GRADE_FREQUENCIES))
        grades += [g, int(np.clip(g + rng.choice((-1, 0, 0, 0, 1)), 0, 4))]
    return grades[:n]


def write_phantoms(out: str | Path, n: int, *, seed: int = 0, width: int = 512, quality: int = 92,
                   first_patient: int = 1) -> Path:
    """Write ``n`` phantom JPEGs ``<patient>_left.jpeg`` / ``<patient>_right.jpeg`` and
    ``trainLabels.csv`` (``image,level``) into ``out``; returns the CSV's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 7])
    rows = []
    for i, grade in enumerate(_grades(rng, n)):
        image_id = f"{first_patient + i // 2}_{'left' if i % 2 == 0 else 'right'}"
        arr, _ = draw_fundus(grade, np.random.default_rng([seed, i]), width=width, eye=image_id.split("_")[1])
        Image.fromarray(arr).save(out / f"{image_id}.jpeg", quality=quality)
        rows.append((image_id, grade))
    path = out / "trainLabels.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "level"])
        writer.writerows(rows)
    return path
