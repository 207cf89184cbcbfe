"""One-dimensional resampling kernels on numpy blocks.

A regular output grid along one index axis samples the input at the continuous index
``x_j = j * ratio`` (``ratio = out_spacing / in_spacing``, same origin). Every output sample
is a fixed weighted sum of a few input samples ("taps"). The taps of sample ``j`` depend
only on ``j``, ``ratio``, the input length and the order, never on which block ``j`` falls
in, and the sum is always evaluated in the same order: that is what makes the resampled
volume bit-identical for every chunking.

Orders:

* ``0`` nearest: ``round-half-up(x)`` (``floor(x + 0.5)``), as SimpleITK's
  ``sitkNearestNeighbor`` does; indices past the ends are clamped (edge extension). On
  oblique grids SimpleITK's own float noise can break an exact ``.5`` tie either way; here
  ``x`` is ``j * ratio`` exactly, so ties always round up.
* ``1`` linear: taps ``floor(x)`` and ``floor(x) + 1`` weighted ``1 - t`` and ``t``;
  indices past the ends are clamped (edge extension, like ``scipy.ndimage`` ``mode="nearest"``).
  Inside the input this is SimpleITK's ``sitkLinear``; SimpleITK returns its default value
  for points more than half a voxel past the last sample, we keep extending the edge.
* ``3`` cubic B-spline with whole-sample mirror boundaries (SimpleITK's ``sitkBSpline``,
  ``scipy.ndimage.map_coordinates(order=3, mode="mirror")``). The B-spline prefilter is
  global (an IIR filter); here it is its exact impulse response ``sqrt(3) * z1**|k|``
  (``z1 = sqrt(3) - 2``) truncated to ``|k| <= PREFILTER_HALF_WIDTH`` and renormalised, so
  each output sample depends on ``2 * 12 + 4`` input samples only. The truncation changes a
  value by at most about ``2 * sqrt(3) * |z1|**13 / (1 - |z1|) ~ 2e-7`` times the input's
  range; with float32 arithmetic the result agrees with SimpleITK within 2e-3 HU on CT.

Arithmetic is float32 for orders 1 and 3 (measured against SimpleITK's double-precision
``sitkLinear``: within 2e-4 HU on CT phantoms and real slabs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ORDERS", "PREFILTER_HALF_WIDTH", "AxisTaps", "axis_taps", "apply_taps", "linear_pass", "mirror_index"]

ORDERS = (0, 1, 3)
PREFILTER_HALF_WIDTH = 12
_Z1 = np.sqrt(3.0) - 2.0


@dataclass(frozen=True)
class AxisTaps:
    """How output samples along one axis are made from input samples.

    ``index``: ``(n_out, taps)`` global input indices, already mapped inside ``[0, n_in)``.
    ``weight``: ``(n_out, taps)`` float64 weights, or ``None`` for nearest (copy the sample).
    """

    index: np.ndarray
    weight: np.ndarray | None

    @property
    def lo(self) -> int:
        """First input index needed."""
        return int(self.index.min())

    @property
    def hi(self) -> int:
        """One past the last input index needed."""
        return int(self.index.max()) + 1


def mirror_index(i: np.ndarray, n: int) -> np.ndarray:
    """Whole-sample mirror of integer indices into ``[0, n)`` (``-1 -> 1``, ``n -> n - 2``)."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.mod(i, period)
    return np.where(i > n - 1, period - i, i)


def _positions(j0: int, j1: int, ratio: float) -> np.ndarray:
    # j * ratio for the global j: the same float for a sample whatever block it is in
    return np.arange(j0, j1, dtype=np.float64) * float(ratio)


def _bspline_weights(t: np.ndarray) -> np.ndarray:
    """Cubic B-spline weights of coefficients ``floor(x) - 1 .. floor(x) + 2``."""
    s = 1.0 - t
    return np.stack(
        [
            s**3 / 6.0,
            (4.0 - 6.0 * t**2 + 3.0 * t**3) / 6.0,
            (1.0 + 3.0 * t + 3.0 * t**2 - 3.0 * t**3) / 6.0,
            t**3 / 6.0,
        ],
        axis=1,
    )


def _prefilter() -> np.ndarray:
    """Truncated impulse response of the cubic B-spline prefilter, taps ``-H..H``, sum 1."""
    k = np.arange(-PREFILTER_HALF_WIDTH, PREFILTER_HALF_WIDTH + 1)
    h = np.sqrt(3.0) * _Z1 ** np.abs(k)
    return h / h.sum()


def axis_taps(j0: int, j1: int, ratio: float, n_in: int, order: int) -> AxisTaps:
    """Taps of output samples ``j0 .. j1 - 1`` along an axis of ``n_in`` input samples."""
    x = _positions(j0, j1, ratio)
    if order == 0:
        idx = np.clip(np.floor(x + 0.5).astype(np.int64), 0, n_in - 1)
        return AxisTaps(idx[:, None], None)
    base = np.floor(x)
    t = x - base
    base = base.astype(np.int64)
    if order == 1:
        idx = np.clip(np.stack([base, base + 1], axis=1), 0, n_in - 1)
        return AxisTaps(idx, np.stack([1.0 - t, t], axis=1))
    if order == 3:
        # fold prefilter h (taps -H..H) and spline weights w (taps -1..2) into one filter
        h = _prefilter()
        w = _bspline_weights(t)
        width = PREFILTER_HALF_WIDTH
        combined = np.zeros((x.size, 2 * width + 4))
        for q in range(4):  # coefficient base + q - 1 = sum_m h[m] f[base + q - 1 + m]
            combined[:, q : q + 2 * width + 1] += w[:, q : q + 1] * h[None, :]
        offsets = np.arange(-width - 1, width + 3)
        idx = mirror_index(base[:, None] + offsets[None, :], n_in)
        return AxisTaps(idx, combined)
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def apply_taps(block: np.ndarray, axis: int, taps: AxisTaps, offset: int, dtype: np.dtype) -> np.ndarray:
    """Resample ``block`` along ``axis``; ``block`` holds input indices ``offset ..`` there.

    Nearest keeps the block's dtype; otherwise the result is ``dtype``, computed in the same
    order for every sample (linear as ``f0 + t * (f1 - f0)``, the others tap by tap).
    """
    idx = taps.index - offset
    if taps.weight is None:
        return np.take(block, idx[:, 0], axis=axis)
    shape = [1] * block.ndim
    shape[axis] = -1
    if idx.shape[1] == 2:
        return linear_pass(block, axis, idx[:, 0], idx[:, 1], taps.weight[:, 1].astype(dtype).reshape(shape))
    weight = taps.weight.astype(dtype)
    out = None
    for s in range(idx.shape[1]):
        term = np.take(block, idx[:, s], axis=axis).astype(dtype, copy=False)
        term *= weight[:, s].reshape(shape)
        if out is None:
            out = term
        else:
            out += term
    return out


def linear_pass(block: np.ndarray, axis: int, i0: np.ndarray, i1: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Linear resampling of ``block`` along ``axis``: sample ``j`` is ``f0 + t * (f1 - f0)``
    with ``f0 = block[.., i0[j], ..]``, ``f1`` at ``i1[j]`` and ``t = weight[j]``, in
    ``weight``'s dtype (``weight`` shaped to broadcast along ``axis``).

    Two gathers and three in-place passes, the fewest numpy needs for this arithmetic.
    The gathers are ``np.take``: its results are C-contiguous, so the in-place passes, the
    next axis's gathers and the encoder read them in order (indexing, ``block[:, i0]``,
    returned strided arrays along the inner axes): a whole 64^3 linear resample measured
    0.53 instead of 0.65 ms, and its result needs no copy before it is compressed.
    """
    out = np.take(block, i0, axis=axis).astype(weight.dtype, copy=False)
    step = np.take(block, i1, axis=axis).astype(weight.dtype, copy=False)
    step -= out
    step *= weight
    out += step
    return out
