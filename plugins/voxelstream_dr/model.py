"""A VGG-like 2-D CNN that grades preprocessed fundus photographs (Flax NNX).

Layout (channels last, input ``(B, S, S, 3)`` uint8 or float, S = 2R)::

    scale:       (x - 128) / 32       (local-average images are centred on 128)
    per block:   [conv 3x3 SAME -> batch norm -> ReLU] x convs_per_block -> max-pool 2x2
    pooling:     global average (how much disease) ++ global max (the worst lesion)
    head:        dense -> ReLU -> dropout -> dense: 1 value (target "regression", the grade as
                 a number) or 5 logits (target "softmax")

Global pooling makes it work at any input size; more blocks suit larger radii. Weights are
drawn with numpy (He normal) from the seed: jax.random compiles once per shape, seconds per
layer on a CPU, and numpy gives the same numbers everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from voxelstream.specs import ModelSpec
from voxelstream.training import config_from_dict, config_to_dict

from .options import MODEL_NAME, TARGETS

__all__ = ["NetConfig", "GradeNet", "build", "MODEL_NAME", "MODEL_SPEC"]


@dataclass(frozen=True)
class NetConfig:
    """Architecture of :class:`GradeNet` (saved as ``config`` in ``model.json``)."""

    channels: tuple[int, ...] = (12, 24, 32, 48, 64)
    convs_per_block: int = 1
    hidden: int = 64
    dropout: float = 0.3
    target: str = "regression"
    size: int = 128  # the input edge it was trained on (2R), for predict to check

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")

    @property
    def outputs(self) -> int:
        return 1 if self.target == "regression" else 5

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetConfig:
        return config_from_dict(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


def _he_normal(init: np.random.Generator, shape: tuple[int, ...], gain: float = 2.0) -> jax.Array:
    fan_in = int(np.prod(shape[:-1]))
    return jnp.asarray(init.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(gain / fan_in)))


class ConvBnRelu(nnx.Module):
    """3x3 SAME convolution, batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, *, init: np.random.Generator, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_he_normal(init, (3, 3, cin, cout)))
        self.bn = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(x, self.kernel[...], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.relu(self.bn(y))


def _max_pool2(x: jax.Array) -> jax.Array:
    """2x2 max-pooling, stride 2; an image already down to one pixel is left as it is (small
    inputs run through every block)."""
    b, h, w, c = x.shape
    if h < 2 or w < 2:
        return x
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class GradeNet(nnx.Module):
    """The grader (see the module docstring): ``model(x)`` returns ``(B,)`` values or
    ``(B, 5)`` logits."""

    def __init__(self, cfg: NetConfig, *, init: np.random.Generator, rngs: nnx.Rngs):
        self.config = cfg
        layers, cin = [], 3
        for cout in cfg.channels:
            for _ in range(cfg.convs_per_block):
                layers.append(ConvBnRelu(cin, cout, init=init, rngs=rngs))
                cin = cout
        self.layers = nnx.List(layers)
        self.hidden_w = nnx.Param(_he_normal(init, (2 * cin, cfg.hidden)))
        self.hidden_b = nnx.Param(jnp.zeros((cfg.hidden,)))
        self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
        self.out_w = nnx.Param(_he_normal(init, (cfg.hidden, cfg.outputs), gain=1.0))
        # regression starts at the middle grade, so early epochs are not spent moving the bias
        self.out_b = nnx.Param(jnp.full((cfg.outputs,), 1.0 if cfg.outputs == 1 else 0.0))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = (x.astype(jnp.float32) - 128.0) / 32.0
        i = 0
        for _ in self.config.channels:
            for _ in range(self.config.convs_per_block):
                x = self.layers[i](x)
                i += 1
            x = _max_pool2(x)
        feats = jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
        h = self.dropout(jax.nn.relu(feats @ self.hidden_w[...] + self.hidden_b[...]))
        out = h @ self.out_w[...] + self.out_b[...]
        return out[:, 0] if self.config.outputs == 1 else out


def build(config: dict[str, Any] | NetConfig, seed: int = 0) -> GradeNet:
    """The model for ``config`` with weights initialised from ``seed`` (the ModelSpec builder)."""
    cfg = config if isinstance(config, NetConfig) else NetConfig.from_dict(dict(config))
    return GradeNet(cfg, init=np.random.default_rng([seed, 3]), rngs=nnx.Rngs(params=seed, dropout=seed))


MODEL_SPEC = ModelSpec(name=MODEL_NAME, build=build,
                       description="VGG-like 2-D CNN grading fundus photographs 0-4 (regression or softmax head)")
