"""Shift-and-stitch: the dense classifier on a finer grid than its output stride.

:class:`~.model.NoduleNet` evaluated on a volume gives one logit every ``stride = 2 ** blocks``
voxels: a nodule of 4-6 mm can sit half a grid step (4 mm at 2 mm voxels) from every window
centre, where the classifier, trained on centred cubes, barely answers, and the detection it
does give lands farther from the centre than the nodule's radius (LUNA16's hit rule).

Running the net on the input shifted by every offset ``0 .. stride-1`` and interleaving the
outputs gives the stride-1 map, at ``stride ** 3`` times the cost. The same map costs far
less when the shift happens at the pooling layers: a 2x2x2 pooling with stride 2 keeps one of
its 8 phases (which corner the pooling windows start at); taking all 8 phases and stacking
them on the batch axis gives, after the remaining layers, the outputs for the 8 input shifts
``0/1`` times the pooling's input stride, and the layers before that pooling ran only once.
:func:`dense_logits` does that for the last ``levels`` poolings, so the grid stride becomes
``stride / 2 ** levels`` and output ``p`` (per axis) is the classifier on the cube that
starts at input voxel ``p * stride / 2 ** levels`` -- exactly what sliding the classifier
cube by cube would give (the tests check it against that).

Every phase is cropped to the size of the shortest one, so the stitched map is a contiguous
run of grid points; :func:`stitched_input_edge` says how much input a tile needs for ``T``
of them.
"""

from __future__ import annotations

from itertools import product

import jax
import jax.numpy as jnp

from .model import NoduleNet, max_pool2

__all__ = ["dense_logits", "grid_stride", "stitched_output_edge", "stitched_input_edge"]


def grid_stride(model: NoduleNet, levels: int) -> int:
    """Voxels between neighbouring outputs of :func:`dense_logits` with ``levels``."""
    blocks = len(model.config.channels)
    if not 0 <= levels <= blocks:
        raise ValueError(f"shift-and-stitch levels must lie in 0..{blocks} (the network's poolings), got {levels}")
    return 2 ** (blocks - levels)


def _phases(x: jax.Array) -> jax.Array:
    """All 8 poolings of ``x`` (B, D, H, W, C), each cropped to the smallest one's size and
    stacked phase-major on the batch axis: ``(8 * B, d, h, w, C)``."""
    m = [(n - 1) // 2 for n in x.shape[1:4]]
    parts = [max_pool2(x[:, a: a + 2 * m[0], b: b + 2 * m[1], c: c + 2 * m[2]])
             for a, b, c in product((0, 1), repeat=3)]
    return jnp.concatenate(parts, axis=0)


def dense_logits(model: NoduleNet, x: jax.Array, levels: int) -> jax.Array:
    """The logit map of ``model`` on ``x`` (B, D, H, W) at grid stride
    :func:`grid_stride` ``(model, levels)``; ``levels=0`` is ``model(x)``. Eval mode
    (running batch-norm statistics, no dropout) is the caller's business, as for ``model(x)``."""
    if x.ndim == 4:
        x = x[..., None]
    cfg = model.config
    blocks = len(cfg.channels)
    grid_stride(model, levels)  # validates levels
    batch = x.shape[0]
    i = 0
    for block in range(blocks):
        for _ in range(cfg.convs_per_block):
            x = model.layers[i](x)
            i += 1
        x = _phases(x) if block >= blocks - levels else max_pool2(x)
    x = model.dropout(model.head(x))
    logits = (x @ model.out_kernel[...] + model.out_bias[...])[..., 0]  # (8**L * B, d, h, w)
    if levels == 0:
        return logits
    d, h, w = logits.shape[1:]
    # batch index = a_L * 8**(L-1) * B + ... + a_1 * B + b, each a_k = (az, ay, ax) in {0,1}^3,
    # a_1 the first stitched pooling; per axis the output index is i * 2**L + sum a_k 2**(k-1)
    y = logits.reshape((2, 2, 2) * levels + (batch, d, h, w))
    ax = lambda k, j: 3 * (levels - k) + j  # the axis of a_k along spatial axis j  # noqa: E731
    order = [3 * levels]
    for j, n in enumerate((d, h, w)):
        order += [3 * levels + 1 + j] + [ax(k, j) for k in range(levels, 0, -1)]
    y = jnp.transpose(y, order)
    f = 2 ** levels
    return y.reshape(batch, d * f, h * f, w * f)


def stitched_output_edge(model: NoduleNet, edge: int, levels: int) -> int:
    """Output points per axis of :func:`dense_logits` on an input of ``edge`` voxels."""
    cfg = model.config
    blocks = len(cfg.channels)
    n, phases = edge, 1
    for block in range(blocks):
        n -= 2 * cfg.convs_per_block
        if n < 2:
            return 0
        if block >= blocks - levels:
            n, phases = (n - 1) // 2, phases * 2
        else:
            n //= 2
    head = cfg.cube
    for _ in range(blocks):
        head = (head - 2 * cfg.convs_per_block) // 2
    n -= head - 1
    return max(n, 0) * phases


def stitched_input_edge(model: NoduleNet, points: int, levels: int) -> int:
    """The smallest input edge for which :func:`dense_logits` gives at least ``points``
    outputs per axis (cropping phases can cost a few voxels over ``(points - 1) * stride + R``)."""
    edge = (points - 1) * grid_stride(model, levels) + model.receptive_field
    while stitched_output_edge(model, edge, levels) < points:
        edge += 1
    return edge
