"""The nodule network's 3-D convolution against XLA's own: values and both gradients."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from voxelstream_nodules import conv3d  # noqa: E402


def _case(seed: int, shape: tuple[int, ...], k: int, cout: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, k, k, shape[-1], cout)).astype(np.float32))
    out = tuple(n - k + 1 for n in shape[1:4])
    g = jnp.asarray(rng.normal(size=(shape[0], *out, cout)).astype(np.float32))  # an arbitrary cotangent
    return x, w, g


def _close(got: jax.Array, want: jax.Array) -> None:
    # float32 sums in another order: compare relative to the magnitude of the result
    scale = float(jnp.max(jnp.abs(want)))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize(("shape", "k", "cout"), [
    ((2, 9, 10, 11, 1), 3, 4),   # one input channel: depth shifts stacked as channels
    ((2, 8, 7, 9, 3), 3, 5),     # several channels: a sum of 2-D convolutions
    ((1, 11, 9, 10, 2), 3, 3),   # one sample, odd and unequal edges
])
def test_values_and_gradients_equal_lax_conv(shape, k, cout):
    x, w, g = _case(0, shape, k, cout)
    _close(jax.jit(conv3d.conv3d_valid)(x, w), jax.jit(conv3d.conv3d_reference)(x, w))
    # vector-Jacobian products against the reference's autodiff: d<g, conv(x, w)>/dx and /dw
    got = jax.jit(jax.grad(lambda x, w: jnp.vdot(g, conv3d.conv3d_valid(x, w)), argnums=(0, 1)))(x, w)
    want = jax.jit(jax.grad(lambda x, w: jnp.vdot(g, conv3d.conv3d_reference(x, w)), argnums=(0, 1)))(x, w)
    _close(got[0], want[0])
    _close(got[1], want[1])


def test_weight_gradient_is_the_same_for_every_chunking(monkeypatch):
    x, w, g = _case(1, (3, 10, 8, 9, 4), 3, 2)
    want = jax.jit(jax.grad(lambda w: jnp.vdot(g, conv3d.conv3d_reference(x, w))))(w)
    per_slice = 6 * 7 * (27 * 4) * 4  # output slice 6x7, 27 * C_in patch columns, float32
    for budget in (1, 2 * per_slice, 1 << 30):  # one output slice per chunk, two, a whole sample
        monkeypatch.setattr(conv3d, "PATCH_BUDGET_BYTES", budget)
        got = jax.jit(jax.grad(lambda w: jnp.vdot(g, conv3d.conv3d_valid(x, w))))(w)  # a new function: traced anew
        _close(got, want)
