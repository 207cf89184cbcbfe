"""Registration of the diabetic-retinopathy task (entry point ``dr``): the ``photo`` reader,
the fundus preprocessing stages, the ``dr-vgg2d`` model and the ``dr`` task's commands.
Importing this module stays cheap (no JAX, scipy or dask)."""

from __future__ import annotations

import voxelstream

from .pipeline_cmd import COMMANDS
from .demo_cmd import DEMO
from .options import MODALITY, MODEL_NAME


# Declared by name (LazySpec): their modules import numpy and dask, and 'voxelstream plugins'
# calls every hook; they are imported when a photo is read or a stage is first used.
@voxelstream.hookimpl
def voxelstream_readers() -> list[voxelstream.LazySpec]:
    return [voxelstream.LazySpec("photo", "voxelstream_dr.reader:READER",
                                 description="colour photographs (.jpeg/.jpg/.png) as (3, H, W) uint8, modality OP")]


@voxelstream.hookimpl
def voxelstream_stages() -> list[voxelstream.LazySpec]:
    return [
        voxelstream.LazySpec("fundus_crop", "voxelstream_dr.stages:CROP_STAGE",
                             description="scale a fundus photograph to a fixed fundus radius and crop around it"),
        voxelstream.LazySpec("local_average", "voxelstream_dr.stages:LOCAL_AVERAGE_STAGE",
                             description="subtract the local average colour (Gaussian), uint8"),
        voxelstream.LazySpec("fundus_border", "voxelstream_dr.stages:BORDER_STAGE",
                             description="set everything outside a centred circle to a value"),
    ]


@voxelstream.hookimpl
def voxelstream_models() -> list[voxelstream.LazySpec]:
    return [voxelstream.LazySpec(MODEL_NAME, "voxelstream_dr.model:MODEL_SPEC",
                                 description="VGG-like 2-D CNN grading fundus photographs 0-4 (regression or softmax)")]


@voxelstream.hookimpl
def voxelstream_tasks() -> list[voxelstream.TaskSpec]:
    return [
        voxelstream.TaskSpec(
            name="dr",
            modality=MODALITY,
            description="diabetic-retinopathy grading of colour fundus photographs: preprocess, a 2-D CNN, "
            "test-time augmentation, quadratic weighted kappa",
            commands=(*COMMANDS, DEMO),
        )
    ]
