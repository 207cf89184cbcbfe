"""Registration (entry point ``example``): what this plugin adds to voxelstream.

voxelstream imports this module at every start and calls these hooks to list names, so it
imports only light modules. The reader and the task are built right here (their modules
import numpy, dask and JAX inside their functions); the stage and the model are named with a
:class:`voxelstream.LazySpec` and imported when first used.
"""

from __future__ import annotations

import voxelstream as vs

from .commands import MIX, MODALITY, SMOOTH
from .npy_reader import claims, discover


@vs.hookimpl
def voxelstream_readers() -> list[vs.ReaderSpec]:
    return [
        vs.ReaderSpec(
            name="npy",
            claims=claims,
            discover=discover,
            description="NumPy .npy pixels + .json sidecar geometry (2-D or 3-D, channels allowed)",
        )
    ]


@vs.hookimpl
def voxelstream_stages() -> list[vs.LazySpec]:
    return [vs.LazySpec("gaussian", "voxelstream_example.smoothing:GAUSSIAN_STAGE",
                        description="Gaussian smoothing (sigma in pixels, one or one per spatial axis), float32")]


@vs.hookimpl
def voxelstream_models() -> list[vs.LazySpec]:
    return [vs.LazySpec("example-mixer", "voxelstream_example.mixer:MIXER_MODEL",
                        description="per-pixel channel mix (1x1 convolution), Flax NNX")]


@vs.hookimpl
def voxelstream_tasks() -> list[vs.TaskSpec]:
    return [
        vs.TaskSpec(
            name="example",
            modality=MODALITY,
            description="example task for microscopy tiles: smooth, mix channels with a model",
            commands=(SMOOTH, MIX),
        )
    ]
