"""OME-Zarr 0.5 ``multiscales`` metadata for a single-scale image."""

from __future__ import annotations

from typing import Any

import numpy as np

OME_VERSION = "0.5"


def multiscales(name: str, ndim: int, spacing_zyx: tuple[float, ...], origin_zyx: tuple[float, ...]) -> dict[str, Any]:
    """The ``ome`` attribute of an image group whose array lives at path ``0``.

    OME-Zarr transforms are axis-aligned, so ``translation`` is the world origin reordered to
    ``(z, y, x)``; it is exact when the direction is the identity. The full affine
    (oblique or flipped directions) is kept in the group's ``voxelstream`` attributes.
    """
    axes = [{"name": a, "type": "space", "unit": "millimeter"} for a in ("z", "y", "x")]
    scale = [float(s) for s in spacing_zyx]
    trans = [float(t) for t in origin_zyx]
    if ndim == 4:
        axes = [{"name": "c", "type": "channel"}, *axes]
        scale = [1.0, *scale]
        trans = [0.0, *trans]
    return {
        "version": OME_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": axes,
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": scale},
                            {"type": "translation", "translation": trans},
                        ],
                    }
                ],
            }
        ],
    }


def origin_zyx(affine: np.ndarray) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in np.asarray(affine)[:3, 3])
    return (z, y, x)
