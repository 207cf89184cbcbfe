"""Registration of the diabetic-retinopathy task (entry point ``dr``): the ``photo`` reader,
the fundus preprocessing stages, the ``dr-vgg2d`` model and the ``dr`` task's commands.
Importing this module stays cheap (no JAX, scipy or dask)."""

from __future__ import annotations

from typing import Any

import voxelstream

from .commands import COMMANDS
from .demo import DEMO
from .options import MODALITY, MODEL_NAME


@voxelstream.hookimpl
def voxelstream_readers() -> list[voxelstream.ReaderSpec]:
    from .reader import READER

    return [READER]


@voxelstream.hookimpl
def voxelstream_stages() -> list[voxelstream.StageSpec]:
    from .stages import STAGES

    return list(STAGES)


def build(config: dict[str, Any], seed: int = 0) -> Any:
    """Build the grader (imports JAX/Flax only now: listing plugins must stay cheap)."""
    from .model import build as build_net

    return build_net(config, seed)


@voxelstream.hookimpl
def voxelstream_models() -> list[voxelstream.ModelSpec]:
    return [
        voxelstream.ModelSpec(
            name=MODEL_NAME,
            build=build,
            description="VGG-like 2-D CNN grading fundus photographs 0-4 (regression or softmax head)",
        )
    ]


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
