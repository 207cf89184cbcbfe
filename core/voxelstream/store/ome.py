"""OME-Zarr 0.5 ``multiscales`` metadata for a single-scale, channel-first image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OME_VERSION = "0.5"
#: OME-Zarr's name for each Volume unit (``None``: the axis has no physical unit).
OME_UNITS: dict[str, str | None] = {"mm": "millimeter", "pixel": None}


def multiscales(
    name: str,
    axes: Sequence[str],
    units: Sequence[str],
    spacing: Sequence[float],
    origin: Sequence[float],
) -> dict[str, Any]:
    """The ``ome`` attribute of an image group whose array (``c`` + ``axes``) lives at path ``0``.

    OME-Zarr transforms are axis-aligned, so ``translation`` is the world origin in array
    order; it is exact when the direction is the identity. The full affine (oblique or
    flipped directions) is kept in the group's ``voxelstream`` attributes.
    """
    spatial = []
    for a, u in zip(axes, units):
        entry: dict[str, Any] = {"name": a, "type": "space"}
        if OME_UNITS.get(u):
            entry["unit"] = OME_UNITS[u]
        spatial.append(entry)
    return {
        "version": OME_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": [{"name": "c", "type": "channel"}, *spatial],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [1.0, *(float(s) for s in spacing)]},
                            {"type": "translation", "translation": [0.0, *(float(t) for t in origin)]},
                        ],
                    }
                ],
            }
        ],
    }


def origin_array_order(affine: np.ndarray) -> tuple[float, ...]:
    """The world origin of an affine, reversed into array order (OME's translation)."""
    a = np.asarray(affine)
    n = a.shape[0] - 1
    return tuple(float(v) for v in a[:n, n][::-1])
