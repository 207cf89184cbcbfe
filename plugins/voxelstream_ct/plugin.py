"""Registers CT support with voxelstream (entry point ``ct``): the ``hu_window`` and ``lung_mask`` stages and
the ``ct`` task with its ``preprocess`` and ``phantoms`` commands.

Every ``voxelstream`` start imports this module, so it imports only light modules: the
stage is declared by name and imported on first use; the command modules import their
heavy parts when they run.
"""

from __future__ import annotations

import voxelstream as vs

from .phantoms_cmd import PHANTOMS
from .preprocess_cmd import PREPROCESS


@vs.hookimpl
def voxelstream_stages() -> list[vs.LazySpec]:
    """``hu_window``: clip Hounsfield units to a window and scale to [0, 1]; ``lung_mask``:
    which voxels are lung (uint8)."""
    return [
        vs.LazySpec("hu_window", "voxelstream_ct.windowing:HU_WINDOW_STAGE",
                    description="clip Hounsfield units to a window (preset or lo/hi) and scale to [0, 1]"),
        vs.LazySpec("lung_mask", "voxelstream_ct.lungmask:LUNG_MASK_STAGE",
                    description="mask the lungs of a chest CT (threshold, enclosed air per slice, closing)"),
    ]


@vs.hookimpl
def voxelstream_tasks() -> list[vs.TaskSpec]:
    """The ``ct`` task: preprocessing CT for analysis and training."""
    return [
        vs.TaskSpec(
            name="ct",
            modality="CT",
            description="CT preprocessing: resample to isotropic voxels, window HU; synthetic phantoms",
            commands=(PREPROCESS, PHANTOMS),
        )
    ]
