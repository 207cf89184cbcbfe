"""Registration of the nodule-detection task (entry point ``nodules``)."""

from __future__ import annotations

import voxelstream

from .commands import COMMANDS


@voxelstream.hookimpl
def voxelstream_tasks() -> list[voxelstream.TaskSpec]:
    return [
        voxelstream.TaskSpec(
            name="nodule-detection",
            modality="CT",
            description="lung-nodule detection as in LUNA16: cubes, a 3-D CNN, training",
            commands=COMMANDS,
        )
    ]


@voxelstream.hookimpl
def voxelstream_models() -> list[voxelstream.ModelSpec]:
    from .model import MODEL_NAME, build

    return [
        voxelstream.ModelSpec(
            name=MODEL_NAME,
            build=build,
            description="VGG-like 3-D CNN for nodule cubes, fully convolutional (valid convs, conv head)",
        )
    ]
