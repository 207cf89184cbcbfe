"""A VALID 3-D convolution (NDHWC x DHWIO) built from operations XLA runs fast on a CPU.

``jax.lax.conv_general_dilated`` in 3-D, and its autodiff, are slow on XLA's CPU backend: a
3-D convolution runs at ~9 GFLOP/s here, and the weight gradient of any convolution becomes a
convolution whose *kernel* is the whole output gradient (measured 4-5x slower than the
forward pass; see benchmarks/RESULTS.md, "Training throughput"). So:

* forward: a sum over the kernel's depth of 2-D convolutions of depth-shifted slices (2-D
  convolutions go to XLA's fast Eigen path); with a single input channel the ``k`` depth
  shifts are stacked as channels instead, one 2-D convolution with ``k`` input channels
  (a 1-channel 2-D convolution leaves the vector units mostly idle);
* input gradient: the same forward on the zero-padded output gradient with the kernel
  flipped and its in/out channels swapped (the transposed convolution);
* weight gradient: a matrix product of stacked patches (``k^3 * C_in`` columns) with the
  output gradient, accumulated over chunks of a few output slices so that the patch matrix
  stays in cache instead of being written to memory whole.

All three are device-agnostic JAX (the same code runs under jax[cuda]); results equal
``lax.conv_general_dilated`` within float32 rounding (summation order differs; tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["conv3d_valid", "conv3d_reference", "PATCH_BUDGET_BYTES"]

# Bytes of one chunk's patch matrix in the weight gradient: small enough for a core's L2
# cache (2 MiB here), large enough that the loop over chunks costs little.
PATCH_BUDGET_BYTES = 2 << 20


def conv3d_reference(x: jax.Array, w: jax.Array) -> jax.Array:
    """``lax.conv_general_dilated`` itself (what :func:`conv3d_valid` must equal)."""
    return jax.lax.conv_general_dilated(x, w, (1, 1, 1), "VALID", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def _conv2d(x: jax.Array, w: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _forward(x: jax.Array, w: jax.Array) -> jax.Array:
    """The VALID convolution as 2-D convolutions over depth (see the module docstring)."""
    b, d, h, wd, c = x.shape
    k, cout = w.shape[0], w.shape[-1]
    od = d - k + 1
    if c == 1:
        # the k depth shifts as channels: (B*od, H, W, k) x (kh, kw, k, cout)
        stacked = jnp.concatenate([x[:, i : i + od] for i in range(k)], axis=-1).reshape(b * od, h, wd, k)
        out = _conv2d(stacked, jnp.transpose(w[..., 0, :], (1, 2, 0, 3)))
    else:
        out = None
        for i in range(k):
            y = _conv2d(x[:, i : i + od].reshape(b * od, h, wd, c), w[i])
            out = y if out is None else out + y
    return out.reshape(b, od, h - w.shape[1] + 1, wd - w.shape[2] + 1, cout)


def _slices_per_chunk(n: int, bytes_per_slice: int) -> int:
    """The largest divisor of ``n`` whose chunk of output slices fits PATCH_BUDGET_BYTES."""
    cap = max(1, PATCH_BUDGET_BYTES // max(1, bytes_per_slice))
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= cap)


def _weight_grad(x: jax.Array, g: jax.Array, k: int) -> jax.Array:
    """``dW[a, b, c, i, o] = sum_{n, z, y, x} x[n, z+a, y+b, x+c, i] * g[n, z, y, x, o]``."""
    b, _, h, wd, c = x.shape
    od, oh, ow, cout = g.shape[1:]
    cols = k * k * k * c
    zb = _slices_per_chunk(od, oh * ow * cols * x.dtype.itemsize)
    per_sample = od // zb

    def chunk(i: jax.Array, acc: jax.Array) -> jax.Array:
        n, z0 = i // per_sample, (i % per_sample) * zb
        xs = jax.lax.dynamic_slice(x, (n, z0, 0, 0, 0), (1, zb + k - 1, h, wd, c))[0]
        gs = jax.lax.dynamic_slice(g, (n, z0, 0, 0, 0), (1, zb, oh, ow, cout))[0]
        # shifts stacked one axis at a time (x, then y, then z): column ((a*k + b)*k + c)*C + i,
        # the kernel's (a, b, c, i) order; three small concatenations compile in a fraction of
        # the time one of k^3 operands takes
        patches = jnp.concatenate([xs[:, :, q : q + ow] for q in range(k)], axis=-1)
        patches = jnp.concatenate([patches[:, p : p + oh] for p in range(k)], axis=-1)
        patches = jnp.concatenate([patches[a : a + zb] for a in range(k)], axis=-1)
        return acc + patches.reshape(-1, cols).T @ gs.reshape(-1, cout)

    acc = jax.lax.fori_loop(0, b * per_sample, chunk, jnp.zeros((cols, cout), jnp.float32))
    return acc.reshape(k, k, k, c, cout).astype(x.dtype)


@jax.custom_vjp
def _conv3d_fast_grad(x: jax.Array, w: jax.Array) -> jax.Array:
    return _forward(x, w)


def _fwd(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _forward(x, w), (x, w)


def _bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = res
    k = w.shape[0]
    padded = jnp.pad(g, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
    dx = _forward(padded, jnp.flip(w, (0, 1, 2)).swapaxes(3, 4))  # unused (and removed by XLA) for the input
    return dx, _weight_grad(x, g, k)


_conv3d_fast_grad.defvjp(_fwd, _bwd)

# Above this kernel edge the patch matrix (k^3 columns per channel) is no longer small. Such
# kernels here are the head's (9^3 on a 9^3 input in training, a few voxels out): XLA's own 3-D
# convolution and its autodiff are cheap there, and for the large dense-inference input it ran
# 1.5x faster than 9 depth-sliced 2-D convolutions (0.27 vs 0.40 s on a 24^3-output tile).
_MAX_PATCH_KERNEL = 3


def conv3d_valid(x: jax.Array, w: jax.Array) -> jax.Array:
    """VALID 3-D convolution of ``x`` ``(B, D, H, W, C_in)`` with a cubic kernel ``w``
    ``(k, k, k, C_in, C_out)``, stride 1, no bias: ``(B, D-k+1, H-k+1, W-k+1, C_out)``.
    Differentiable; equal to :func:`conv3d_reference` within float32 rounding."""
    if w.shape[0] <= _MAX_PATCH_KERNEL:
        return _conv3d_fast_grad(x, w)
    return conv3d_reference(x, w)
