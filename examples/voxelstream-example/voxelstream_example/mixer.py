"""Model ``example-mixer``: a per-pixel channel mix (a 1x1 convolution), in Flax NNX.

Tiny on purpose: what matters here is the life cycle every voxelstream model has::

    model = build({"channels_in": 3, "channels_out": 1}, seed=0)    # what MIXER_MODEL.build does
    voxelstream.save_model("mixer/", "example-mixer", config, model)  # model.json + weights.npz
    model = voxelstream.load_model("mixer/")                          # rebuilt by its registered name

and applying one chunk by chunk (:func:`apply_block`): a channel-first block in, the mixed
channels out, the same for every chunking because each output pixel depends on its own pixel only.

JAX and Flax are imported with this module, which the plugin names lazily (a
:class:`voxelstream.LazySpec`), so listing plugins never pays for them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

import voxelstream as vs

__all__ = ["MODEL_NAME", "ChannelMixer", "build", "apply_block", "MIXER_MODEL"]

MODEL_NAME = "example-mixer"


class ChannelMixer(nnx.Module):
    """``y[k] = sum_c w[c, k] x[c] + b[k]`` at every pixel, for a channel-first image."""

    def __init__(self, channels_in: int, channels_out: int, *, rngs: nnx.Rngs) -> None:
        self.linear = nnx.Linear(channels_in, channels_out, rngs=rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        # Linear acts on the last axis: move channels there and back
        return jnp.moveaxis(self.linear(jnp.moveaxis(x, 0, -1)), -1, 0)


def build(config: Mapping[str, Any], seed: int = 0) -> ChannelMixer:
    """The model for ``config`` (``channels_in``, ``channels_out`` (default 1)), weights from ``seed``."""
    try:
        cin, cout = int(config["channels_in"]), int(config.get("channels_out", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise vs.VoxelstreamError(f"model {MODEL_NAME!r}: config needs whole numbers channels_in and "
                                  f"channels_out, got {dict(config)} ({exc})") from None
    if cin < 1 or cout < 1:
        raise vs.VoxelstreamError(f"model {MODEL_NAME!r}: channels_in and channels_out must be >= 1, got {cin}, {cout}")
    return ChannelMixer(cin, cout, rngs=nnx.Rngs(seed))


@nnx.jit
def _forward(model: ChannelMixer, x: jnp.ndarray) -> jnp.ndarray:
    return model(x)


@functools.lru_cache(maxsize=4)
def _loaded(model_dir: str) -> ChannelMixer:
    # once per process (and per dask worker), not once per chunk
    return vs.load_model(model_dir)


def apply_block(block: np.ndarray, model_dir: str) -> np.ndarray:
    """The model saved in ``model_dir`` applied to one channel-first block, as float32."""
    return np.asarray(_forward(_loaded(model_dir), jnp.asarray(block, dtype=jnp.float32)), dtype=np.float32)


MIXER_MODEL = vs.ModelSpec(
    name=MODEL_NAME,
    build=build,
    description="per-pixel channel mix (1x1 convolution), Flax NNX; config: channels_in, channels_out",
)
