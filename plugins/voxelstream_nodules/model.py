"""A VGG-like 3-D CNN for nodule cubes that is also a fully convolutional network.

Layout (channels last, input ``(B, D, H, W)`` or ``(B, D, H, W, 1)``)::

    per block b:  [conv 3x3x3 VALID -> batch norm -> ReLU] x convs_per_block -> max-pool 2x2x2 / 2
    head:         conv k x k x k VALID (k = what is left of the cube) -> batch norm -> ReLU
                  -> dropout -> conv 1x1x1 -> one logit

With only VALID convolutions, stride-2 pooling of even-sized inputs and a head that is a
convolution, the same weights evaluated on a larger volume give a logit map whose voxel
``(i, j, k)`` equals the classifier on the cube starting at ``stride * (i, j, k)``; for that
the network requires every pooling input of the training cube to be even (checked in
:func:`layer_sizes`). ``receptive_field`` is the cube edge (the head covers the whole rest)
and ``stride`` is ``2 ** len(channels)``. In eval mode (``model.eval()``) batch norm uses its
running statistics and dropout is off, so dense evaluation equals cube-by-cube evaluation.

For a 48-voxel cube and 2 blocks: 48 -conv-> 46 -conv-> 44 -pool-> 22 -conv-> 20 -conv-> 18
-pool-> 9 -head 9^3-> 1; receptive field 48, stride 4.

3x3x3 (and head) convolutions are :func:`.conv3d.conv3d_valid`: on the CPU, sums over the
kernel's depth of 2-D convolutions of depth-shifted slices (voxel pairs along W folded into
the channels where channels are few), with a hand-written backward pass (transposed
convolution for the input, products of shifted row blocks for the weights), and the head on
a training cube a matrix product: XLA runs those several times faster than its 3-D
convolution and its autodiff (see benchmarks/RESULTS.md); tests check that they agree with
``lax.conv_general_dilated``, which other backends (jax[cuda]) use directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from voxelstream.training import config_from_dict, config_to_dict

from .conv3d import conv3d_valid

__all__ = ["NetConfig", "NoduleNet", "DepthSlicedConv", "layer_sizes", "build", "apply", "MODEL_NAME"]

from .options import MODEL_NAME  # noqa: E402  (re-exported: the registered name)


@dataclass(frozen=True)
class NetConfig:
    """Architecture of :class:`NoduleNet` (saved as ``config`` in ``model.json``)."""

    cube: int = 48
    channels: tuple[int, ...] = (8, 16)
    convs_per_block: int = 2
    head_channels: int = 32
    dropout: float = 0.3

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetConfig:
        return config_from_dict(cls, d)

    def to_dict(self) -> dict[str, Any]:
        d = config_to_dict(self)
        d["receptive_field"], d["stride"] = self.cube, 2 ** len(self.channels)
        return d


def layer_sizes(cfg: NetConfig) -> list[int]:
    """Spatial edge after each pooling for a training cube; the last one is the head's
    kernel. Raises ``ValueError`` when a pooling input is odd or a size runs out."""
    size, sizes = cfg.cube, []
    for block in range(len(cfg.channels)):
        size -= 2 * cfg.convs_per_block
        if size <= 0 or size % 2:
            raise ValueError(
                f"cube edge {cfg.cube} does not fit {len(cfg.channels)} blocks of {cfg.convs_per_block} "
                f"3x3x3 convolutions: block {block + 1} would pool an edge of {size}; choose another "
                "cube size or number of blocks (every pooling input must be even)"
            )
        size //= 2
        sizes.append(size)
    return sizes


def _he_normal(init: np.random.Generator, shape: tuple[int, ...]) -> jax.Array:
    """He-normal weights (fan-in = all axes but the last). Drawn with numpy: jax.random
    compiles for every new shape, which costs seconds per layer on this CPU."""
    fan_in = int(np.prod(shape[:-1]))
    return jnp.asarray(init.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))


class DepthSlicedConv(nnx.Module):
    """A VALID ``k x k x k`` convolution (NDHWC) with bias, computed by :func:`.conv3d.conv3d_valid`."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, *, init: np.random.Generator):
        self.k = int(kernel)
        self.kernel = nnx.Param(_he_normal(init, (self.k,) * 3 + (in_channels, out_channels)))
        self.bias = nnx.Param(jnp.zeros((out_channels,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return conv3d_valid(x, self.kernel[...]) + self.bias[...]


def max_pool2(x: jax.Array) -> jax.Array:
    """2x2x2 max-pooling with stride 2 (a trailing odd voxel is dropped, as VALID pooling does)."""
    b, d, h, w, c = x.shape
    x = x[:, : d // 2 * 2, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(b, d // 2, 2, h // 2, 2, w // 2, 2, c).max(axis=(2, 4, 6))


class ConvBnRelu(nnx.Module):
    def __init__(self, cin: int, cout: int, kernel: int, *, init: np.random.Generator, rngs: nnx.Rngs):
        self.conv = DepthSlicedConv(cin, cout, kernel, init=init)
        self.bn = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.bn(self.conv(x)))


class NoduleNet(nnx.Module):
    """The classifier (see the module docstring). ``model(x)`` returns the logit map
    ``(B, D', H', W')``; on a training cube that is ``(B, 1, 1, 1)``."""

    def __init__(self, cfg: NetConfig, *, init: np.random.Generator, rngs: nnx.Rngs):
        self.config = cfg
        head_kernel = layer_sizes(cfg)[-1]
        layers, cin = [], 1
        for cout in cfg.channels:
            for _ in range(cfg.convs_per_block):
                layers.append(ConvBnRelu(cin, cout, 3, init=init, rngs=rngs))
                cin = cout
        self.layers = nnx.List(layers)
        self.head = ConvBnRelu(cin, cfg.head_channels, head_kernel, init=init, rngs=rngs)
        self.dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
        # the last 1x1x1 convolution: a matrix over channels
        self.out_kernel = nnx.Param(_he_normal(init, (cfg.head_channels, 1)) / np.float32(np.sqrt(2.0)))
        self.out_bias = nnx.Param(jnp.zeros((1,)))

    @property
    def receptive_field(self) -> int:
        """Edge (voxels) of the input window behind one output logit: the cube edge."""
        return self.config.cube

    @property
    def stride(self) -> int:
        """Voxels between neighbouring output logits in dense evaluation."""
        return 2 ** len(self.config.channels)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 4:
            x = x[..., None]
        i = 0
        for _ in self.config.channels:
            for _ in range(self.config.convs_per_block):
                x = self.layers[i](x)
                i += 1
            x = max_pool2(x)
        x = self.dropout(self.head(x))
        return (x @ self.out_kernel[...] + self.out_bias[...])[..., 0]


def build(config: dict[str, Any] | NetConfig, seed: int = 0) -> NoduleNet:
    """The model for ``config`` with weights initialised from ``seed`` (the ModelSpec builder)."""
    cfg = config if isinstance(config, NetConfig) else NetConfig.from_dict(dict(config))
    return NoduleNet(cfg, init=np.random.default_rng([seed, 0]), rngs=nnx.Rngs(params=seed, dropout=seed))


@nnx.jit
def apply(model: NoduleNet, x: jax.Array) -> jax.Array:
    """``model(x)`` compiled (one compilation per input shape and mode). In training mode it
    updates the batch-norm statistics, as the eager call does."""
    return model(x)
