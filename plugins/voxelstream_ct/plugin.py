"""Registers CT support with voxelstream (entry point ``ct``): the ``hu_window`` stage and
the ``ct`` task with its ``preprocess`` and ``phantoms`` commands."""

from __future__ import annotations

import voxelstream as vs

from .phantoms_cmd import PHANTOMS
from .preprocess_cmd import PREPROCESS
from .windowing import HU_WINDOW_STAGE


@vs.hookimpl
def voxelstream_stages() -> list[vs.StageSpec]:
    """``hu_window``: clip Hounsfield units to a window and scale to [0, 1]."""
    return [HU_WINDOW_STAGE]


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
