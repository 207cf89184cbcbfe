"""Pixel data, read only when the dask graph runs: one task per slab of consecutive slices.

:func:`lazy_stack` turns a :class:`~.series.SeriesPlan` into a dask array chunked along z
in slabs of :data:`SLAB_SLICES` slices; each chunk's task calls :func:`read_slab`, which
decodes its files and applies each slice's own RescaleSlope/Intercept.

Native 16-bit little-endian slices whose Pixel Data element was located at scan time
(:class:`~.headers.PixelLayout`) are read straight from the file (about 0.1 ms instead of
pydicom's 3 ms per 512x512 slice), with pydicom's treatment of unused high bits; anything
else, or a file whose element is no longer where it was, is decoded by pydicom.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np

from voxelstream.errors import ReadError

from .headers import PixelLayout
from .series import SeriesPlan

__all__ = ["SLAB_SLICES", "read_slice", "read_slab", "lazy_stack"]

#: Slices per dask task: the store's default chunk depth (64), so an ingest of 512x512
#: slices writes each slab as it is (the store writes regions of 64 whole slices; with
#: 32-slice slabs dask had to rechunk, copying every slab once). 64 slices of 512x512 are
#: 32 MiB as int16, 64 MiB as float32.
SLAB_SLICES = 64


def read_native(path: str, layout: PixelLayout, rows: int, cols: int) -> np.ndarray | None:
    """The stored values of a native slice read at ``layout``, or ``None`` when the file no
    longer has its Pixel Data element there (or is too short): then pydicom decides.

    Unused high bits are cleared (unsigned) or sign-extended (signed), as pydicom does.
    """
    try:
        with open(path, "rb") as fh:
            fh.seek(layout.element_offset)
            if fh.read(len(layout.element_head)) != layout.element_head:
                return None
            arr = np.fromfile(fh, dtype=layout.dtype, count=rows * cols)
    except OSError:
        return None
    if arr.size != rows * cols:
        return None
    unused = 16 - layout.bits_stored
    if unused:
        np.left_shift(arr, unused, out=arr)
        np.right_shift(arr, unused, out=arr)
    return arr.reshape(rows, cols)


def read_slice(path: str, rows: int, cols: int, layout: PixelLayout | None = None) -> np.ndarray:
    """The stored (not rescaled) values of one single-frame file, shape ``(rows, cols)``."""
    if layout is not None:
        arr = read_native(path, layout, rows, cols)
        if arr is not None:
            return arr
    import pydicom  # only for slices that are not native: plain series never import it

    try:
        # the whole dataset, not pydicom.pixels.pixel_array(path): that one misreads deflated files
        arr = pydicom.dcmread(path).pixel_array
    except Exception as exc:  # decoders raise many kinds on damaged data
        raise ReadError(f"{path}: cannot decode pixel data ({type(exc).__name__}: {exc}); "
                        "re-export or remove the file") from None
    if arr.shape != (rows, cols):
        raise ReadError(f"{path}: pixel data has shape {arr.shape}, header scan said {(rows, cols)}; "
                        "the file changed since it was scanned: read the series again")
    return arr


def read_slab(
    files: Sequence[str],
    slopes: Sequence[float],
    intercepts: Sequence[float],
    rows: int,
    cols: int,
    dtype: str,
    layouts: Sequence[PixelLayout | None] | None = None,
) -> np.ndarray:
    """Decode ``files`` (consecutive slices) into ``(len(files), rows, cols)`` of ``dtype``,
    each slice rescaled with its own slope and intercept. ``layouts`` (one per file, from the
    header scan) lets native slices skip pydicom."""
    out = np.empty((len(files), rows, cols), dtype=dtype)
    layouts = layouts or [None] * len(files)
    for k, (path, slope, intercept, layout) in enumerate(zip(files, slopes, intercepts, layouts)):
        _rescale_into(out[k], read_slice(path, rows, cols, layout), slope, intercept)
    return out


def _rescale_into(out: np.ndarray, raw: np.ndarray, slope: float, intercept: float) -> None:
    if out.dtype.kind != "i":
        out[...] = raw.astype(np.float64) * slope + intercept
    elif slope == 1 and intercept == 0 and raw.dtype == out.dtype:
        out[...] = raw
    else:  # exact integer arithmetic; saturates only for HU past int16 (see output_dtype)
        wide = raw.astype(np.int32)
        if slope != 1:
            wide *= int(slope)
        wide += int(intercept)
        np.clip(wide, -32768, 32767, out=wide)
        out[...] = wide


def lazy_stack(plan: SeriesPlan, slab: int = SLAB_SLICES) -> da.Array:
    """The series as a lazy ``(z, y, x)`` dask array, one task per ``slab`` slices."""
    parts = []
    n = len(plan.files)
    for z0 in range(0, n, slab):
        z1 = min(n, z0 + slab)
        args = (plan.files[z0:z1], plan.slopes[z0:z1], plan.intercepts[z0:z1], plan.rows, plan.cols, plan.dtype,
                plan.layouts[z0:z1])
        token = dask.base.tokenize(*args)
        task = dask.delayed(read_slab, pure=True)(*args, dask_key_name=f"dicom-slab-{token}")
        parts.append(da.from_delayed(task, shape=(z1 - z0, plan.rows, plan.cols), dtype=plan.dtype,
                                     name=f"dicom-{token}"))
    return parts[0] if len(parts) == 1 else da.concatenate(parts, axis=0)

