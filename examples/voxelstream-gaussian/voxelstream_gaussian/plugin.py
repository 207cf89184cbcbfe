"""A Gaussian smoothing stage written as a plugin author would write it.

All it takes is a function on a numpy block and the halo that function needs; the engine
turns it into a lazy, chunk-wise dask stage::

    import voxelstream
    smooth = voxelstream.get_stage("gaussian")(volume, sigma_mm=1.5)
"""

from __future__ import annotations


import numpy as np

import voxelstream

TRUNCATE = 4.0



def gaussian(block: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing with ``sigma`` in voxels (edges extended), as float32."""
    from scipy import ndimage  # here, not at import: every CLI start loads every plugin

    return ndimage.gaussian_filter(block.astype(np.float32), sigma, mode="nearest", truncate=TRUNCATE)


def halo(sigma: float = 1.0) -> int:
    # scipy's kernel radius is int(truncate * sigma + 0.5): that many voxels of context
    return int(TRUNCATE * sigma + 0.5) if sigma > 0 else 0


@voxelstream.hookimpl
def voxelstream_stages():
    return [voxelstream.blockwise_stage("gaussian", gaussian, halo=halo)]
