"""Registration of the ``nodules`` task (entry point ``nodules``): ``voxelstream nodules COMMAND``.

Every ``voxelstream`` start imports this module: the command modules it imports keep JAX,
dask and zarr out of their top level (see tests/test_startup.py).
"""

from __future__ import annotations

from typing import Any

import voxelstream

from .cubes_train_cmd import CUBES, TRAIN
from .demo_cmd import DEMO
from .detect_evaluate_cmd import DETECT, EVALUATE
from .infer_score_cmd import INFER, SCORE
from .mine_cmd import MINE
from .options import MODEL_NAME

# in the order of the job: cubes -> train -> infer/score -> detect -> evaluate -> mine -> demo
COMMANDS = (CUBES, TRAIN, INFER, SCORE, DETECT, EVALUATE, MINE, DEMO)


@voxelstream.hookimpl
def voxelstream_tasks() -> list[voxelstream.TaskSpec]:
    return [
        voxelstream.TaskSpec(
            name="nodules",
            modality="CT",
            description="lung-nodule detection as in LUNA16: cubes, a 3-D CNN, dense inference, FROC, hard-negative mining",
            commands=COMMANDS,
        )
    ]


def build(config: dict[str, Any], seed: int = 0) -> Any:
    """Build the network (imports JAX/Flax only now: listing plugins must stay cheap)."""
    from .model import build as build_net

    return build_net(config, seed)


@voxelstream.hookimpl
def voxelstream_models() -> list[voxelstream.ModelSpec]:
    return [
        voxelstream.ModelSpec(
            name=MODEL_NAME,
            build=build,
            description="VGG-like 3-D CNN for nodule cubes, fully convolutional (valid convs, conv head)",
        )
    ]
