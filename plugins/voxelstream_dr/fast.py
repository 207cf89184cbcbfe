"""One-pass preprocessing of a photograph: numpy in a single call, written without a dask graph.

Why: the stages of :mod:`voxelstream_dr.stages` compute the output chunk by chunk through a
dask graph (measure, then crop/scale, local average and border as separate passes), which
costs more than the pixels for a photograph whose whole output is 0.8 MB. Here one call
reads the input once, runs :func:`~voxelstream_dr.fundus.preprocess_array`'s arithmetic on
it, and hands the store a :class:`voxelstream.BlockSource` over the finished array. The
values are those of the stages (same functions, same taps), so outputs agree with them.

JPEG ``draft``: when preprocessing straight from a file (:func:`preprocess_photo`), the
decoder may scale by 1/2, 1/4 or 1/8 while decoding (about 11x faster at 4000 x 3000) to no
less than ``4R`` rows (:data:`DRAFT_ROWS_PER_RADIUS`; the seed's loop used ``2R``): the
fundus is still shrunk by about 1.5x or more after decoding. When the fundus then measures
smaller than ``1.5 R`` decoded pixels, the photograph is decoded again at full size. On 12
synthetic 4000 x 3000 photographs at R = 256 the output differs from a full-size decode by
0.29 grey levels on average (99th percentile 4; 0.3 % of values by more than 8; see
benchmarks/RESULTS.md), against 0.85 (p99 13) at the seed's 2R rule; ``draft=False``
decodes at full size and gives the stages' values exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fundus import FundusGeometry, border_block, crop_block, local_average, measure_fundus, scale_weights

__all__ = ["preprocess_pixels", "preprocess_volume_direct", "preprocess_photo", "draft_scale",
           "DRAFT_ROWS_PER_RADIUS"]

DRAFT_ROWS_PER_RADIUS = 4
"""A draft-decoded photograph keeps at least this many rows per output radius pixel."""


def preprocess_pixels(img: np.ndarray, radius: int, fraction: float = 0.9) -> tuple[np.ndarray, FundusGeometry]:
    """``(C, 2R, 2R)`` uint8 from one in-memory ``(C, H, W)`` photograph, and the geometry
    measured (in ``img``'s pixels). The arithmetic of the ``fundus_crop``, ``local_average``
    and ``fundus_border`` stages, on the whole image at once."""
    h, w = img.shape[-2:]
    geo = measure_fundus(img[:, h // 2, :], h)
    scale = radius / geo.radius
    y0, wy = scale_weights(0, 2 * radius, radius, geo.centre_y, scale, h)
    x0, wx = scale_weights(0, 2 * radius, radius, geo.centre_x, scale, w)
    crop = crop_block(img[:, y0:y0 + wy.shape[1], x0:x0 + wx.shape[1]], wy, wx)
    out = border_block(local_average(crop, radius / 30), (0, 0), (2 * radius, 2 * radius), fraction)
    return out, geo


def _output_volume(out: np.ndarray, geo: FundusGeometry, radius: int, affine: np.ndarray, meta: dict[str, Any],
                   units: Any) -> Any:
    """The Volume ``fundus_crop`` and the later stages would give: the affine maps output
    pixels to the input's positions, ``meta["fundus"]`` records the geometry."""
    from voxelstream import BlockSource, Volume

    scale = radius / geo.radius
    to_input = np.eye(3)
    to_input[0, 0] = to_input[1, 1] = 1.0 / scale
    to_input[:2, 2] = [geo.centre_y - (radius - 0.5) / scale, geo.centre_x - (radius - 0.5) / scale]
    meta = dict(meta)
    meta["fundus"] = {"radius": geo.radius, "centre": [geo.centre_y, geo.centre_x], "scale": scale}
    out.setflags(write=False)  # regions are views of it, read from several threads

    def to_dask() -> Any:
        import dask.array as da

        return da.from_array(out, chunks=(out.shape[0], min(2 * radius, 256), min(2 * radius, 256)))

    src = BlockSource(out.shape, out.dtype, lambda region: out[region], to_dask)
    return Volume(src, np.asarray(affine) @ to_input, meta=meta, units=units)


def preprocess_volume_direct(volume: Any, radius: int, fraction: float = 0.9) -> Any:
    """The preprocessed ``(3, 2R, 2R)`` Volume of a photograph Volume, computed now in one
    pass (one input in memory at a time) and written by the store without a dask graph."""
    whole = (slice(None),) * 3
    src = volume.source
    img = np.asarray(src.read(whole) if src is not None else volume.data.compute())
    out, geo = preprocess_pixels(img, int(radius), fraction)
    return _output_volume(out, geo, int(radius), volume.affine, dict(volume.meta), volume.units)


def draft_scale(full: tuple[int, int], min_rows: int) -> int:
    """The JPEG ``draft`` factor (1, 2, 4 or 8) that keeps at least ``min_rows`` rows and
    the columns in proportion."""
    h, w = full
    for s in (8, 4, 2):
        if -(-h // s) >= min_rows and -(-w // s) >= min_rows * w // max(h, 1):
            return s
    return 1


def _decode(path: str, full: tuple[int, int], scale: int) -> tuple[np.ndarray, int]:
    """``(3, h, w)`` uint8 of ``path`` decoded at 1/``scale`` (JPEG; 1: full size), and the
    factor the decoder used (read back from the decoded size, not assumed). A channel-first
    view of the decoded array: no copy, no cache (each photograph is decoded once here)."""
    from .reader import decode_photo_once

    # Pillow picks the largest factor not above min(W // w, H // h): ask for the floor sizes
    hwc = decode_photo_once(path, None if scale == 1 else (full[0] // scale, full[1] // scale))
    used = max(1, round(full[0] / hwc.shape[0]))
    return hwc.transpose(2, 0, 1), used


def _pixel_affine(scale: int) -> np.ndarray:
    """The photo reader's affine for pixels ``scale`` full-size pixels wide: a decoded pixel
    ``k`` covers full-size pixels ``k*s .. k*s + s - 1``, so its centre is at ``k*s + (s-1)/2``.
    Index ``(row, column)`` maps to world ``(x, y)`` = ``(column, row)``: the ITK order that
    :meth:`Volume.from_array` gives the reader (written out here because ``from_array`` would
    import dask.array, 0.2 s, for a 3 x 3 matrix; tests/test_dr_fast.py compares the two)."""
    half = (scale - 1) / 2
    return np.array([[0.0, scale, half], [scale, 0.0, half], [0.0, 0.0, 1.0]])


def preprocess_photo(path: str, radius: int, fraction: float = 0.9, draft: bool = True,
                     keep_phi: bool = False) -> Any:
    """The preprocessed ``(3, 2R, 2R)`` Volume straight from a photograph file, without a
    full-size copy: decoded once (at 1/2..1/8 when ``draft`` and the file is a JPEG big
    enough), measured, cropped, scaled, local-averaged and bordered in one pass. The affine
    maps output pixels to the full-size photograph's pixels, whatever scale was decoded."""
    from .reader import _photo_meta, inspect_photo

    info = inspect_photo(path)
    radius = int(radius)
    rows = DRAFT_ROWS_PER_RADIUS * radius
    scale = draft_scale((info.height, info.width), rows) if draft and info.format == "JPEG" else 1
    img, scale = _decode(path, (info.height, info.width), scale)
    out, geo = preprocess_pixels(img, radius, fraction)
    if scale > 1 and geo.radius < 1.5 * radius:  # a small fundus: too few decoded pixels, decode it all
        img, scale = _decode(path, (info.height, info.width), 1)
        out, geo = preprocess_pixels(img, radius, fraction)
    del img
    # a decoded pixel k covers full-size pixels k*s .. k*s + s - 1: its centre is at k*s + (s-1)/2
    to_full = _pixel_affine(scale)
    meta = _photo_meta(info, keep_phi)
    if scale > 1:
        meta["decoded_at"] = f"1/{scale}"
    return _output_volume(out, geo, radius, to_full, meta, "pixel")
