"""The nodule network's 3-D convolution against XLA's own: values and both gradients, on every
path conv3d_valid takes on the CPU (W-folded, depth-sliced, kernel covering the input)."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from voxelstream_nodules import conv3d  # noqa: E402


def _case(seed: int, shape: tuple[int, ...], kernel: tuple[int, int, int], cout: int):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(*kernel, shape[-1], cout)).astype(np.float32))
    out = tuple(n - k + 1 for n, k in zip(shape[1:4], kernel))
    g = jnp.asarray(rng.normal(size=(shape[0], *out, cout)).astype(np.float32))  # an arbitrary cotangent
    return x, w, g


def _close(got: jax.Array, want: jax.Array) -> None:
    # float32 sums in another order: compare relative to the magnitude of the result
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5 * scale)


def _vjp(conv, x, w, g):
    """d<g, conv(x, w)>/dx and /dw (a new function each call: traced anew)."""
    return jax.jit(jax.grad(lambda x, w: jnp.vdot(g, conv(x, w)), argnums=(0, 1)))(x, w)


@pytest.mark.parametrize(("shape", "k", "cout"), [
    ((2, 9, 10, 11, 1), 3, 4),    # 1 -> 4: W-folded (odd W: a zero column completes the last pair)
    ((2, 8, 7, 9, 3), 3, 5),      # 3 -> 5: W-folded, odd W
    ((1, 11, 9, 10, 2), 3, 3),    # one sample, W-folded, even W, unequal edges
    ((2, 7, 8, 9, 9), 3, 4),      # 9 input channels: not folded, a sum of depth-sliced 2-D convolutions
    ((2, 6, 7, 8, 1), 3, 12),     # 1 -> 12: not folded, depth shifts as channels, patch-matrix weight gradient
    ((2, 8, 9, 10, 12), 3, 10),   # 12 -> 10: not folded, shifted-block weight gradient
    ((3, 4, 4, 4, 5), 4, 6),      # a kernel covering the whole input (the training head): a matrix product
    ((1, 9, 8, 12, 10), 5, 9),    # a 5-wide kernel, 10 -> 9 channels: folded (the dense-inference head)
    ((1, 9, 8, 7, 2), 5, 3),      # a 5-wide kernel on too narrow a W to fold: depth-sliced
])
def test_values_and_gradients_equal_lax_conv(shape, k, cout):
    x, w, g = _case(0, shape, (k, k, k), cout)
    _close(jax.jit(conv3d.conv3d_valid)(x, w), jax.jit(conv3d.conv3d_reference)(x, w))
    got, want = _vjp(conv3d.conv3d_valid, x, w, g), _vjp(conv3d.conv3d_reference, x, w, g)
    _close(got[0], want[0])
    _close(got[1], want[1])


def test_folding_off_gives_the_same_convolution(monkeypatch):
    x, w, g = _case(3, (2, 8, 9, 10, 4), (3, 3, 3), 6)
    folded = _vjp(conv3d.conv3d_valid, x, w, g)
    monkeypatch.setattr(conv3d, "FOLD_MAX_CHANNELS", 0)
    plain = _vjp(conv3d.conv3d_valid, x, w, g)
    _close(plain[0], folded[0])
    _close(plain[1], folded[1])


@pytest.mark.parametrize(("cin", "kernel"), [(1, (3, 3, 3)), (2, (3, 3, 2)), (4, (3, 3, 3)), (6, (3, 3, 2))])
def test_weight_gradient_is_the_same_for_every_chunking(monkeypatch, cin, kernel):
    # 1-2 channels: the patch-matrix form; more: the shifted-block form; (3, 3, 2): a folded kernel
    x, w, g = _case(1, (3, 10, 8, 9, cin), kernel, 2)
    want = jax.jit(jax.grad(lambda w: jnp.vdot(g, conv3d.conv3d_reference(x, w))))(w)
    for budget in (1, 3 * 8 * 9 * 27 * cin * 4, 1 << 30):  # one output slice per chunk, a few, a whole sample
        monkeypatch.setattr(conv3d, "PATCH_BUDGET_BYTES", budget)
        _close(jax.jit(lambda x, g: conv3d._weight_grad(x, g, kernel))(x, g), want)


def test_gradients_are_bitwise_the_same_twice():
    # the weight gradient's products are split over threads: their sums must not depend on timing
    x, w, g = _case(2, (4, 12, 12, 12, 8), (3, 3, 3), 8)
    vjp = jax.jit(jax.grad(lambda x, w: jnp.vdot(g, conv3d.conv3d_valid(x, w)), argnums=(0, 1)))
    first = vjp(x, w)
    for _ in range(5):
        again = vjp(x, w)
        np.testing.assert_array_equal(np.asarray(again[0]), np.asarray(first[0]))
        np.testing.assert_array_equal(np.asarray(again[1]), np.asarray(first[1]))


def test_bfloat16_inputs_stay_bfloat16():
    # the folded kernel is built in the weights' dtype (a float32 selection matrix used to
    # promote it, and lax.conv refuses mixed dtypes)
    x, w, _ = _case(4, (2, 8, 9, 10, 4), (3, 3, 3), 6)
    got = jax.jit(conv3d.conv3d_valid)(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16))
    assert got.dtype == jnp.bfloat16
    want = conv3d.conv3d_reference(x.astype(jnp.bfloat16).astype(jnp.float32), w.astype(jnp.bfloat16).astype(jnp.float32))
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), rtol=0, atol=2e-2 * scale)
