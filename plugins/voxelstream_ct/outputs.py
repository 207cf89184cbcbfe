"""Names of the stored outputs the ct plugin writes, for the tasks that read them.

Here, in a module that imports nothing, so that command modules (and other plugins, e.g.
the nodule task restricting candidates to the lungs) can name an output without importing
numpy, dask or the stages: ``store.array(volume_id, LUNG_MASK_OUTPUT)``.
"""

from __future__ import annotations

__all__ = ["ISO_OUTPUT", "LUNG_MASK_OUTPUT"]

#: ``voxelstream ct preprocess``: the volume resampled to isotropic voxels and windowed.
ISO_OUTPUT = "iso"

#: ``voxelstream ct preprocess --lung-mask``: the ``lung_mask`` stage run on ``iso`` (same
#: grid and chunks), uint8 1 inside the lungs (vessels and nodules within them included).
LUNG_MASK_OUTPUT = "lung"
