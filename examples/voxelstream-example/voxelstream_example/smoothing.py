"""Stage ``gaussian``: Gaussian smoothing, written as a plugin author writes a chunk-wise stage.

All it takes is a function on a numpy block and the halo (context per spatial axis) that
function needs; :func:`voxelstream.blockwise_stage` turns them into a lazy dask stage::

    import voxelstream as vs
    smooth = vs.get_stage("gaussian")(volume, sigma=1.5)            # every spatial axis
    smooth = vs.get_stage("gaussian")(volume, sigma=[0.0, 2.0, 2.0])  # in-plane only (z, y, x)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import voxelstream as vs

__all__ = ["TRUNCATE", "gaussian", "halo", "kernel_radius", "GAUSSIAN_STAGE"]

#: The kernel is cut at this many sigmas (scipy's ``truncate``).
TRUNCATE = 4.0

Sigma = float | Sequence[float]


def _per_axis(sigma: Sigma, n: int) -> tuple[float, ...]:
    values = (float(sigma),) * n if np.isscalar(sigma) else tuple(float(s) for s in sigma)  # type: ignore[arg-type]
    if len(values) != n:
        raise ValueError(f"sigma has {len(values)} values but the image has {n} spatial axes; "
                         "give one number, or one per spatial axis in array order")
    if min(values) < 0 or not all(np.isfinite(values)):
        raise ValueError(f"sigma must be finite and >= 0, got {list(values)}")
    return values


def kernel_radius(sigma: float) -> int:
    """scipy's Gaussian kernel radius, ``int(truncate * sigma + 0.5)``: the pixels of context
    one output pixel needs on each side."""
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    return int(TRUNCATE * sigma + 0.5)


def gaussian(block: np.ndarray, sigma: Sigma = 1.0) -> np.ndarray:
    """Gaussian smoothing with ``sigma`` in pixels (one number, or one per spatial axis in
    array order), each channel on its own, edges extended; returns float32."""
    from scipy import ndimage  # here, not at import: every CLI start imports every plugin

    per_axis = _per_axis(sigma, block.ndim - 1)
    return ndimage.gaussian_filter(block.astype(np.float32), (0.0, *per_axis), mode="nearest", truncate=TRUNCATE)


def halo(sigma: Sigma = 1.0) -> int | tuple[int, ...]:
    """The halo for ``sigma``: an int when sigma is one number (every spatial axis), else one
    depth per spatial axis; an axis with sigma 0 needs none, so its chunks are read once."""
    if np.isscalar(sigma):
        return kernel_radius(float(sigma))  # type: ignore[arg-type]
    return tuple(kernel_radius(float(s)) for s in sigma)  # type: ignore[union-attr]


GAUSSIAN_STAGE = vs.blockwise_stage(
    "gaussian", gaussian, halo=halo,
    description="Gaussian smoothing (sigma in pixels, one or one per spatial axis), float32",
)
