"""Augmentation of preprocessed photographs ``(S, S, 3)`` uint8 (channels last, as the
network takes them): rotation about the centre, mirror, scale, brightness and contrast.

The background of a preprocessed photograph is 128 (the local-average subtraction's zero),
so rotated-in corners are filled with 128. The same geometric views serve test-time
augmentation (:func:`tta_views`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["View", "apply_view", "random_views", "augment_batch", "tta_views"]


@dataclass(frozen=True)
class View:
    """One augmentation: rotation (degrees), left-right mirror, zoom, contrast and brightness."""

    angle: float = 0.0
    mirror: bool = False
    zoom: float = 1.0
    contrast: float = 1.0
    brightness: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self == View()


def apply_view(img: np.ndarray, view: View, fill: float = 128.0) -> np.ndarray:
    """``img`` seen through ``view`` (bilinear resampling; same shape and dtype uint8)."""
    if view.is_identity:
        return img
    s = img.shape[0]
    out = np.asarray(img, dtype=np.float32)
    if view.angle or view.mirror or view.zoom != 1.0:
        a = np.deg2rad(view.angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / view.zoom
        if view.mirror:
            rot = rot @ np.diag([1.0, -1.0])
        matrix = np.eye(3)
        # output (y, x) -> input (y, x) about the centre; channels kept. Rounded so that
        # quarter turns land exactly on pixels (cos 90 deg is 6e-17, which would put the
        # edge row a hair outside the image and fill it)
        matrix[:2, :2] = np.round(rot, 12)
        centre = np.array([(s - 1) / 2, (s - 1) / 2, 0.0])
        offset = centre - matrix @ centre
        out = ndimage.affine_transform(out, matrix, offset=offset, order=1, mode="constant", cval=fill)
    if view.contrast != 1.0 or view.brightness:
        out = (out - fill) * view.contrast + fill + view.brightness
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def random_views(rng: np.random.Generator, n: int, zoom: float = 0.1, contrast: float = 0.15,
                 brightness: float = 10.0) -> list[View]:
    """``n`` random views: any rotation, mirror half the time, zoom in ``1 +- zoom``,
    contrast in ``1 +- contrast``, brightness in ``+- brightness`` grey levels."""
    return [View(float(rng.uniform(0, 360)), bool(rng.uniform() < 0.5), float(rng.uniform(1 - zoom, 1 + zoom)),
                 float(rng.uniform(1 - contrast, 1 + contrast)), float(rng.uniform(-brightness, brightness)))
            for _ in range(n)]


def augment_batch(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A randomly augmented copy of ``batch`` ``(B, S, S, 3)`` uint8."""
    return np.stack([apply_view(img, v) for img, v in zip(batch, random_views(rng, len(batch)))])


def tta_views(n: int) -> list[View]:
    """``n`` fixed views for test-time augmentation: the photograph itself, then rotations
    spread over the circle, every other one mirrored."""
    if n < 1:
        raise ValueError(f"--tta must be at least 1, got {n}")
    return [View(360.0 * k / n, bool(k % 2)) for k in range(n)]
