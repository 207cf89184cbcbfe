"""A VALID 3-D convolution (NDHWC x DHWIO) built from operations XLA runs fast on a CPU.

``jax.lax.conv_general_dilated`` in 3-D, and its autodiff, are slow on XLA's CPU backend: a
3-D convolution runs at ~9 GFLOP/s here, and the weight gradient of any convolution becomes a
convolution whose *kernel* is the whole output gradient (measured 4-5x slower than the
forward pass; see benchmarks/RESULTS.md, "Training throughput"). So, on the CPU:

* forward: a sum over the kernel's depth of 2-D convolutions of depth-shifted slices (2-D
  convolutions go to XLA's fast Eigen path); with few input channels the depth shifts are
  stacked as channels instead, one 2-D convolution (a 1-channel 2-D convolution leaves the
  vector units mostly idle);
* input gradient: the same forward on the zero-padded output gradient with the kernel
  flipped and its in/out channels swapped (the transposed convolution);
* weight gradient: a sum over kernel offsets of products of contiguous row blocks of the
  flattened input and output gradient (no patch matrix; see :func:`_weight_grad_shifted`),
  accumulated over chunks of output slices in a fixed order;
* layers with at most 8 channels on both sides fold pairs of neighbouring voxels along W
  into the channels (a free reshape in NDHWC): the 8->8 layer becomes a 16->16 one with a
  3x3x2 kernel; 33 % more multiply-adds, but Eigen's convolutions and the weight-gradient
  products run far below peak with 8 output channels (the 46^3 8->8 layer: forward 0.41 vs
  0.56 CPU s at batch 32, measured);
* a kernel that covers its whole input (the head on a training cube) is a matrix product;
  wide kernels (the head on a dense-inference tile) are folded whatever their channels.

On other backends (jax[cuda]) :func:`conv3d_valid` is ``lax.conv_general_dilated`` (cuDNN has
fast 3-D convolutions and gradients); results equal it within float32 rounding (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["FOLD_MAX_CHANNELS", "PATCH_BUDGET_BYTES", "conv3d_reference", "conv3d_valid"]

# Bytes of one chunk's working set in the weight gradient: small enough for a core's L2 cache
# (2 MiB here), large enough that the loop over chunks costs little.
PATCH_BUDGET_BYTES = 2 << 20

# Layers with at most this many input and output channels fold voxel pairs along W into the
# channels (see the module docstring); 0 turns folding off.
FOLD_MAX_CHANNELS = 8


def conv3d_reference(x: jax.Array, w: jax.Array) -> jax.Array:
    """``lax.conv_general_dilated`` itself (what :func:`conv3d_valid` must equal)."""
    return jax.lax.conv_general_dilated(x, w, (1, 1, 1), "VALID", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def _conv2d(x: jax.Array, w: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _forward(x: jax.Array, w: jax.Array) -> jax.Array:
    """The VALID convolution (kernel ``(kd, kh, kw, C_in, C_out)``) as 2-D convolutions over
    depth (see the module docstring)."""
    b, d, h, wd, c = x.shape
    kd, kh, kw, _, cout = w.shape
    od = d - kd + 1
    if c * kd <= 8:
        # the kd depth shifts as channels: (B*od, H, W, kd*C) x (kh, kw, kd*C, cout)
        stacked = jnp.concatenate([x[:, i : i + od] for i in range(kd)], axis=-1).reshape(b * od, h, wd, kd * c)
        out = _conv2d(stacked, jnp.transpose(w, (1, 2, 0, 3, 4)).reshape(kh, kw, kd * c, cout))
    else:
        out = None
        for i in range(kd):
            y = _conv2d(x[:, i : i + od].reshape(b * od, h, wd, c), w[i])
            out = y if out is None else out + y
    return out.reshape(b, od, h - kh + 1, wd - kw + 1, cout)


def _slices_per_chunk(n: int, bytes_per_slice: int) -> int:
    """The largest divisor of ``n`` whose chunk of output slices fits PATCH_BUDGET_BYTES."""
    cap = max(1, PATCH_BUDGET_BYTES // max(1, bytes_per_slice))
    return max(d for d in range(1, n + 1) if n % d == 0 and d <= cap)


def _weight_grad_patches(x: jax.Array, g: jax.Array, kernel: tuple[int, int, int]) -> jax.Array:
    """``dW[a, b, c, i, o] = sum_{n, z, y, x} x[n, z+a, y+b, x+c, i] * g[n, z, y, x, o]`` as a
    patch matrix (``kd*kh*kw * C_in`` columns) times the output gradient, per chunk of output
    slices. Used for one or two input channels, where the shifted-block form below would
    multiply matrices of one or two rows."""
    kd, kh, kw = kernel
    b, _, h, wd, c = x.shape
    od, oh, ow, cout = g.shape[1:]
    cols = kd * kh * kw * c
    zb = _slices_per_chunk(od, oh * ow * cols * x.dtype.itemsize)
    per_sample = od // zb

    def chunk(i: jax.Array, acc: jax.Array) -> jax.Array:
        n, z0 = i // per_sample, (i % per_sample) * zb
        xs = jax.lax.dynamic_slice(x, (n, z0, 0, 0, 0), (1, zb + kd - 1, h, wd, c))[0]
        gs = jax.lax.dynamic_slice(g, (n, z0, 0, 0, 0), (1, zb, oh, ow, cout))[0]
        # shifts stacked one axis at a time (x, then y, then z): column ((a*kh + b)*kw + c)*C + i,
        # the kernel's (a, b, c, i) order; three small concatenations compile in a fraction of
        # the time one of kd*kh*kw operands takes
        patches = jnp.concatenate([xs[:, :, q : q + ow] for q in range(kw)], axis=-1)
        patches = jnp.concatenate([patches[:, p : p + oh] for p in range(kh)], axis=-1)
        patches = jnp.concatenate([patches[a : a + zb] for a in range(kd)], axis=-1)
        return acc + patches.reshape(-1, cols).T @ gs.reshape(-1, cout)

    acc = jax.lax.fori_loop(0, b * per_sample, chunk, jnp.zeros((cols, cout), jnp.float32))
    return acc.reshape(kd, kh, kw, c, cout).astype(x.dtype)


def _weight_grad_shifted(x: jax.Array, g: jax.Array, kernel: tuple[int, int, int]) -> jax.Array:
    """The same weight gradient without a patch matrix: with ``g`` zero-padded to ``x``'s
    (H, W) grid and both flattened over (D, H, W), the kernel offset ``(a, b, c)`` is one
    flat offset ``(a*H + b)*W + c``, and ``dW[a, b, c] = sum_p x_flat[p + off]^T g_flat[p]``
    (the rows that wrap into the next row or slice meet the zero padding of ``g``). The W
    offsets ``c`` are taken on ``g``'s side (``kw`` copies shifted by one row each, side by
    side as channels), so each (a, b) is one product of a *contiguous* row block of ``x``
    with that matrix: blocks are copied at memory speed where building patches (a strided
    gather) cost 3-4x the products (profiled), and the products keep both cores busy. The
    46^3 8->8 layer at batch 32: 1.1-1.7 s wall with patches, 0.42 s with k^3 shifted
    blocks, 0.43-0.48 CPU s folded with W shifts on g's side. Accumulated over chunks of
    output slices in a fixed order (deterministic)."""
    kd, kh, kw = kernel
    b, d, h, wd, c = x.shape
    od, oh, ow, cout = g.shape[1:]
    plane = h * wd
    # the chunk's block of x and the shifted copy being multiplied fit the budget (1 MiB of x)
    zb = _slices_per_chunk(od, 2 * plane * c * x.dtype.itemsize)
    per_sample = od // zb
    # the chunk's last rows beyond the output (y >= oh) are zero in g: leaving them out keeps
    # every shifted block of x inside the chunk's zb + kd - 1 input slices
    rows = zb * plane - (kh - 1) * wd - (kw - 1)
    gflat = jnp.pad(g, ((0, 0), (0, 0), (0, h - oh), (0, wd - ow), (0, 0))).reshape(b, od * plane, cout)
    xflat = x.reshape(b, d * plane, c)
    offsets = [(a * h + p) * wd for a in range(kd) for p in range(kh)]

    def chunk(i: jax.Array, acc: jax.Array) -> jax.Array:
        n, z0 = i // per_sample, (i % per_sample) * zb
        xs = jax.lax.dynamic_slice(xflat, (n, z0 * plane, 0), (1, (zb + kd - 1) * plane, c))[0]
        gs = jax.lax.dynamic_slice(gflat, (n, z0 * plane, 0), (1, rows, cout))[0]
        # row r, channels q*cout..: g[r - q] (zero outside the chunk), for x row r + off
        gq = jnp.concatenate([jnp.pad(gs, ((q, kw - 1 - q), (0, 0))) for q in range(kw)], axis=-1)
        return acc + jnp.stack([xs[off : off + rows + kw - 1].T @ gq for off in offsets])

    acc = jax.lax.fori_loop(0, b * per_sample, chunk, jnp.zeros((len(offsets), c, kw * cout), jnp.float32))
    return acc.reshape(kd, kh, c, kw, cout).transpose(0, 1, 3, 2, 4).astype(x.dtype)


def _weight_grad(x: jax.Array, g: jax.Array, kernel: tuple[int, int, int]) -> jax.Array:
    """``dW[a, b, c, i, o] = sum_{n, z, y, x} x[n, z+a, y+b, x+c, i] * g[n, z, y, x, o]``."""
    # with 1-2 input channels the shifted blocks are matrices of 1-2 rows (the first layer,
    # folded: patches 0.12 vs shifted blocks 0.26 CPU s at batch 32)
    if x.shape[-1] <= 2:
        return _weight_grad_patches(x, g, kernel)
    return _weight_grad_shifted(x, g, kernel)


@jax.custom_vjp
def _conv3d_fast_grad(x: jax.Array, w: jax.Array) -> jax.Array:
    return _forward(x, w)


def _fwd(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _forward(x, w), (x, w)


def _bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = res
    kd, kh, kw = w.shape[:3]
    padded = jnp.pad(g, ((0, 0), (kd - 1, kd - 1), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    dx = _forward(padded, jnp.flip(w, (0, 1, 2)).swapaxes(3, 4))  # unused (and removed by XLA) for the input
    return dx, _weight_grad(x, g, (kd, kh, kw))


_conv3d_fast_grad.defvjp(_fwd, _bwd)


def _fold_kernel(w: jax.Array, f: int) -> jax.Array:
    """The kernel of the W-folded convolution: ``(kd, kh, kc, f*C_in, f*C_out)`` with
    ``kc = ceil((f + kw - 1) / f)`` cells, where output voxel ``q`` of a cell sees input voxel
    ``j`` of kernel cell ``m`` through tap ``m*f + j - q`` of ``w`` (zero where that is not a
    tap). Linear in ``w``, so autodiff maps the folded weight gradient back."""
    kd, kh, kw, cin, cout = w.shape
    kc = -(-(f + kw - 1) // f)
    select = np.zeros((kc, f, f, kw), np.float32)
    for m in range(kc):
        for j in range(f):
            for q in range(f):
                if 0 <= m * f + j - q < kw:
                    select[m, j, q, m * f + j - q] = 1.0
    folded = jnp.einsum("mjqt,zytio->zymjiqo", jnp.asarray(select, w.dtype), w)
    return folded.reshape(kd, kh, kc, f * cin, f * cout)


def _conv_folded(x: jax.Array, w: jax.Array, f: int = 2) -> jax.Array:
    """:func:`_conv3d_fast_grad` on ``x`` with ``f`` neighbouring W voxels as channels."""
    b, d, h, wd, c = x.shape
    kw, cout = w.shape[2], w.shape[-1]
    ow = wd - kw + 1
    cells_out = -(-ow // f)
    cells_in = cells_out + -(-(f + kw - 1) // f) - 1
    if cells_in * f != wd:  # odd widths: zero columns complete the last cell (cropped below)
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, cells_in * f - wd), (0, 0)))
    out = _conv3d_fast_grad(x.reshape(b, d, h, cells_in, f * c), _fold_kernel(w, f))
    out = out.reshape(*out.shape[:3], cells_out * f, cout)
    return out if cells_out * f == ow else out[:, :, :, :ow]


def _use_cpu_path() -> bool:
    return jax.default_backend() == "cpu"


def conv3d_valid(x: jax.Array, w: jax.Array) -> jax.Array:
    """VALID 3-D convolution of ``x`` ``(B, D, H, W, C_in)`` with a cubic kernel ``w``
    ``(k, k, k, C_in, C_out)``, stride 1, no bias: ``(B, D-k+1, H-k+1, W-k+1, C_out)``.
    Differentiable; equal to :func:`conv3d_reference` within float32 rounding."""
    if x.shape[1:4] == w.shape[:3]:
        # the kernel covers the whole input (the head on a training cube): one matrix product,
        # whose gradients are matrix products too; XLA's input gradient of that convolution
        # on the CPU (a 9^3 kernel over the output gradient padded by 8) took 0.6-1 s of a 3.7 s step
        b, cout = x.shape[0], w.shape[-1]
        return (x.reshape(b, -1) @ w.reshape(-1, cout)).reshape(b, 1, 1, 1, cout)
    if not _use_cpu_path():
        return conv3d_reference(x, w)
    # folding costs 2 * ceil((kw + 1) / 2) / kw times the multiply-adds: 4/3 for a 3-wide
    # kernel, paid back only where channels are few (8 -> 16 and 16 -> 16 layers ran 2-3x slower
    # folded); 10/9 for the 9-wide head, whose dense-inference tile (32^3 x 16 -> 24^3 x 32) took
    # 0.22-0.28 CPU s folded, 0.34-0.37 depth-sliced unfolded, 0.49-0.57 with XLA's own 3-D
    # convolution (which ran on one core)
    few_channels = max(x.shape[-1], w.shape[-1]) <= FOLD_MAX_CHANNELS
    if (few_channels or w.shape[2] > 3) and x.shape[3] >= 2 * w.shape[2]:
        return _conv_folded(x, w)
    return _conv3d_fast_grad(x, w)
