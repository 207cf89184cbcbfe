"""The seed's fundus preprocessing as numpy functions on channel-first ``(C, H, W)`` blocks.

1. :func:`measure_fundus`: the fundus radius from the middle row (pixels brighter than a
   tenth of the row's mean; photographs are often cut at top and bottom, so never from a
   column) and its centre along that row.
2. :func:`scale_weights` / :func:`crop_block`: scale so the radius becomes ``R`` and crop
   ``2R x 2R`` around the centre, black outside the photograph. Each output pixel is a
   triangle-filter average of the input (bilinear when enlarging, anti-aliased when
   shrinking, like Pillow's BILINEAR), applied as a band of a few taps per pixel, so any
   output region is computed from a bounded input region: the stage is chunk-wise.
3. :func:`local_average`: ``4 * img - 4 * gaussian(img, sigma) + 128``, clipped to 0..255
   (the seed's ``cv2.addWeighted(img, 4, GaussianBlur(img, sigma), -4, 128)``), sigma = R/30.
4. :func:`border_block`: everything outside ``0.9 R`` of the centre set to 128.

Coordinates: pixel ``k`` has its centre at index ``k``; the crop's centre lies between output
pixels ``R - 1`` and ``R``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FundusGeometry", "measure_fundus", "Taps", "scale_weights", "crop_block", "gaussian_halo",
           "local_average", "border_block", "NoFundusError", "preprocess_array"]


class NoFundusError(ValueError):
    """The middle row holds no pixel brighter than a tenth of its mean (a black image)."""


class FundusGeometry(tuple):
    """``(radius, centre_y, centre_x)`` in input pixels."""

    __slots__ = ()

    def __new__(cls, radius: float, centre_y: float, centre_x: float):
        return super().__new__(cls, (float(radius), float(centre_y), float(centre_x)))

    radius = property(lambda self: self[0])
    centre_y = property(lambda self: self[1])
    centre_x = property(lambda self: self[2])


def measure_fundus(row: np.ndarray, height: int) -> FundusGeometry:
    """Radius and centre from the middle row ``row`` (``(C, W)``) of an image ``height``
    rows high: radius = half the number of pixels whose channel sum exceeds a tenth of the
    row's mean; centre x = the mean position of those pixels, centre y = the middle row."""
    x = np.asarray(row, dtype=np.float64).reshape(-1, np.shape(row)[-1]).sum(0)
    bright = np.flatnonzero(x > x.mean() / 10)
    if not bright.size or x.mean() <= 0:
        raise NoFundusError("the middle row is black: no fundus found")
    return FundusGeometry(bright.size / 2, (height - 1) / 2, bright.mean())


class Taps:
    """A banded resampling matrix along one axis: output pixel ``i`` is ``sum_t w[i, t] *
    input[idx[i, t]]`` (indices relative to the first input row the band needs).

    ``shape`` is ``(n_out, span)``, the dense matrix's: ``span`` input rows are read."""

    def __init__(self, idx: np.ndarray, w: np.ndarray, span: int):
        self.idx, self.w, self.span = idx, w, span

    @property
    def shape(self) -> tuple[int, int]:
        return (self.idx.shape[0], self.span)


def scale_weights(out_start: int, out_stop: int, radius_out: int, centre: float, scale: float,
                  n_in: int) -> tuple[int, Taps]:
    """The rows ``out_start:out_stop`` of the resampling along one axis: ``(first, taps)``,
    the first input row needed and the band of weights from there.

    Output pixel ``i`` sits at input coordinate ``centre + (i - (R - 0.5)) / scale``; its
    weights are a triangle of half-width ``max(1, 1/scale)`` normalised over the unbounded
    input line, so pixels past the image's edge count as black (weight kept out of the sum)."""
    support = max(1.0, 1.0 / scale)
    u = centre + (np.arange(out_start, out_stop, dtype=np.float64) - (radius_out - 0.5)) / scale
    lo = np.floor(u - support).astype(np.int64) + 1
    k = lo[:, None] + np.arange(int(math.ceil(2 * support)) + 1)[None, :]
    w = np.clip(1.0 - np.abs(k - u[:, None]) / support, 0.0, None)
    w /= w.sum(1, keepdims=True)
    outside = (k < 0) | (k >= n_in)
    w[outside] = 0.0
    first = int(np.clip(lo.min(), 0, n_in - 1)) if len(u) else 0
    last = int(np.clip(k.max(), first, n_in - 1)) if len(u) else 0
    idx = np.clip(k, first, last) - first  # an outside tap points anywhere valid, with weight 0
    return first, Taps(idx, w, last - first + 1)


def _matrix(taps: Taps):
    """The band as a sparse ``(n_out, span)`` matrix (zero-weight taps dropped)."""
    from scipy import sparse  # here, not at import: registering the plugin must stay cheap

    rows = np.repeat(np.arange(taps.idx.shape[0]), taps.idx.shape[1])
    keep = taps.w.ravel() != 0
    return sparse.csr_matrix((taps.w.ravel()[keep].astype(np.float32), (rows[keep], taps.idx.ravel()[keep])),
                             shape=taps.shape)


def crop_block(block: np.ndarray, wy: Taps, wx: Taps) -> np.ndarray:
    """``(C, h, w)`` float32 output pixels from the input ``block`` the bands cover.

    Rows first (the band has far fewer rows than the input), then columns, per channel, as
    sparse products: each output pixel sums its taps in one order, whatever chunk it is
    computed in, so chunkings agree exactly."""
    my, mx = _matrix(wy), _matrix(wx)
    out = [np.asarray(mx @ (my @ np.asarray(c, dtype=np.float32)).T, dtype=np.float32).T for c in block]
    return np.ascontiguousarray(np.stack(out))


def gaussian_halo(sigma: float) -> int:
    """Pixels the Gaussian of ``sigma`` reaches (scipy's kernel radius at truncate=4)."""
    return int(4.0 * float(sigma) + 0.5)


def local_average(block: np.ndarray, sigma: float = 256 / 30) -> np.ndarray:
    """``clip(4 * img - 4 * gaussian(img, sigma) + 128, 0, 255)`` as uint8, per channel
    (``block`` is ``(C, H, W)``; only the spatial axes are blurred)."""
    from scipy import ndimage  # here, not at import: registering the plugin must stay cheap

    f = np.asarray(block, dtype=np.float32)
    blur = ndimage.gaussian_filter(f, sigma=(0,) + (float(sigma),) * (f.ndim - 1), mode="nearest", truncate=4.0)
    return np.clip(np.rint(4.0 * f - 4.0 * blur + 128.0), 0, 255).astype(np.uint8)


def border_block(block: np.ndarray, offset: tuple[int, int], shape: tuple[int, int], fraction: float = 0.9,
                 value: int = 128) -> np.ndarray:
    """``block`` (``(C, h, w)`` at ``offset`` in an image of spatial ``shape``) with the
    pixels farther than ``fraction * min(shape) / 2`` from the image centre set to ``value``."""
    h, w = block.shape[-2:]
    yy = np.arange(offset[0], offset[0] + h)[:, None] - (shape[0] - 1) / 2
    xx = np.arange(offset[1], offset[1] + w)[None, :] - (shape[1] - 1) / 2
    outside = yy**2 + xx**2 > (fraction * min(shape) / 2) ** 2
    out = np.array(block, copy=True)
    out[..., outside] = value
    return out


def preprocess_array(img: np.ndarray, radius: int, fraction: float = 0.9) -> np.ndarray:
    """The whole recipe on one in-memory ``(C, H, W)`` photograph: ``(C, 2R, 2R)`` uint8.
    (The store's stages compute the same chunk by chunk; this is their reference.)"""
    geo = measure_fundus(img[:, img.shape[1] // 2, :], img.shape[1])
    scale = radius / geo.radius
    y0, wy = scale_weights(0, 2 * radius, radius, geo.centre_y, scale, img.shape[1])
    x0, wx = scale_weights(0, 2 * radius, radius, geo.centre_x, scale, img.shape[2])
    crop = crop_block(img[:, y0:y0 + wy.shape[1], x0:x0 + wx.shape[1]], wy, wx)
    return border_block(local_average(crop, radius / 30), (0, 0), (2 * radius, 2 * radius), fraction)
