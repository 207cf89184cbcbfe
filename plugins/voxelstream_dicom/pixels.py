"""Pixel data, read only when the dask graph runs: one task per slab of consecutive slices.

:func:`lazy_stack` turns a :class:`~.series.SeriesPlan` into a dask array chunked along z
in slabs of :data:`SLAB_SLICES` slices; each chunk's task calls :func:`read_slab`, which
decodes its files and applies each slice's own RescaleSlope/Intercept.

Native 16-bit little-endian slices whose Pixel Data element was located at scan time
(:class:`~.headers.PixelLayout`) are read straight from the file (about 0.1 ms instead of
pydicom's 3 ms per 512x512 slice), with pydicom's treatment of unused high bits; anything
else (compressed, big-endian, deflated, colour, multi-frame), or a file whose element is no
longer where it was, is decoded by pydicom with its installed handlers (pylibjpeg & co.):
the frames of a multi-frame file one slab at a time (``iter_pixels``), YBR colour as
pydicom converts it to RGB, palette colour through its lookup tables. Colour slabs are
``(z, y, x, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np

from voxelstream.errors import ReadError

from .headers import PixelLayout
from .series import SeriesPlan

__all__ = ["SLAB_SLICES", "read_slice", "read_frames", "read_slab", "lazy_stack"]

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


def read_slice(path: str, rows: int, cols: int, layout: PixelLayout | None = None, channels: int = 1) -> np.ndarray:
    """The stored (not rescaled) values of one single-frame file, shape ``(rows, cols)``
    (``(rows, cols, 3)`` in RGB for colour)."""
    if layout is not None:
        arr = read_native(path, layout, rows, cols)
        if arr is not None:
            return arr
    return read_frames(path, [None], rows, cols, channels)[0]


def _decode_error(path: str, exc: BaseException) -> ReadError:
    return ReadError(f"{path}: cannot decode pixel data ({type(exc).__name__}: {exc}); re-export or remove the file")


def read_frames(path: str, frames: Sequence[int | None], rows: int, cols: int, channels: int = 1) -> list[np.ndarray]:
    """Frames ``frames`` of one file (``[None]``: a single-frame file) as pydicom decodes
    them, palette colour expanded to RGB; each ``(rows, cols)`` or ``(rows, cols, 3)``."""
    import warnings

    import pydicom  # only for slices that are not native: plain series never import it
    from pydicom.pixels import apply_color_lut, iter_pixels

    with warnings.catch_warnings():  # pydicom's warnings about odd values: the error line says what matters
        warnings.simplefilter("ignore")
        return _decode_frames(path, frames, rows, cols, channels, pydicom, apply_color_lut, iter_pixels)


def _decode_frames(path: str, frames: Sequence[int | None], rows: int, cols: int, channels: int, pydicom,
                   apply_color_lut, iter_pixels) -> list[np.ndarray]:
    try:
        if frames == [None]:
            # the whole dataset, not pydicom.pixels.pixel_array(path): that one misreads deflated files
            ds = pydicom.dcmread(path)
            out = [ds.pixel_array]
        elif pydicom.filereader.read_file_meta_info(path).TransferSyntaxUID.is_deflated:
            ds = pydicom.dcmread(path)
            every = ds.pixel_array
            out = [every[k] for k in frames]
        else:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            wanted = [int(k) for k in frames]  # type: ignore[arg-type]
            got = dict(zip(sorted(set(wanted)), iter_pixels(path, indices=sorted(set(wanted)))))
            out = [got[k] for k in wanted]
        if str(ds.get("PhotometricInterpretation", "")).upper() == "PALETTE COLOR":
            out = [apply_color_lut(a, ds) for a in out]
    except ReadError:
        raise
    except Exception as exc:  # decoders raise many kinds on damaged data
        raise _decode_error(path, exc) from None
    want = (rows, cols, 3) if channels == 3 else (rows, cols)
    for a in out:
        if a.shape != want:
            raise ReadError(f"{path}: pixel data has shape {a.shape}, header scan said {want}; "
                            "the file changed since it was scanned: read the series again")
    return out


def read_slab(
    files: Sequence[str],
    slopes: Sequence[float],
    intercepts: Sequence[float],
    rows: int,
    cols: int,
    dtype: str,
    layouts: Sequence[PixelLayout | None] | None = None,
    frames: Sequence[int | None] | None = None,
    channels: int = 1,
) -> np.ndarray:
    """Decode ``files`` (consecutive slices; ``frames``: which frame of each file, None for
    single-frame files) into ``(len(files), rows, cols[, 3])`` of ``dtype``, each grey slice
    rescaled with its own slope and intercept. ``layouts`` (one per file, from the header
    scan) lets native slices skip pydicom; the frames of one file are decoded in one pass."""
    n = len(files)
    out = np.empty((n, rows, cols, 3) if channels == 3 else (n, rows, cols), dtype=dtype)
    layouts = layouts or [None] * n
    frames = frames or [None] * n
    k = 0
    while k < n:
        try:
            k = _read_run(out, k, files, slopes, intercepts, rows, cols, layouts, frames, channels)
        except ReadError:
            raise
        except Exception as exc:  # anything else a damaged file causes: an error naming that file
            raise _decode_error(files[k], exc) from None
    return out


def _read_run(out: np.ndarray, k: int, files: Sequence[str], slopes: Sequence[float], intercepts: Sequence[float],
              rows: int, cols: int, layouts: Sequence[PixelLayout | None], frames: Sequence[int | None],
              channels: int) -> int:
    """Decode slice ``k`` (or the run of frames of one file starting there) into ``out``;
    returns the next slice index."""
    n = len(files)
    if frames[k] is None:
        decoded = [read_slice(files[k], rows, cols, layouts[k], channels)]
    else:  # a run of frames of one file
        end = k
        while end < n and files[end] == files[k] and frames[end] is not None:
            end += 1
        decoded = read_frames(files[k], list(frames[k:end]), rows, cols, channels)
    for raw in decoded:
        if channels == 3:
            out[k] = raw
        else:
            _rescale_into(out[k], raw, slopes[k], intercepts[k])
        k += 1
    return k


def _rescale_into(out: np.ndarray, raw: np.ndarray, slope: float, intercept: float) -> None:
    if out.dtype.kind != "i":
        with np.errstate(over="ignore", invalid="ignore"):  # an absurd rescale gives inf: kept, counted at ingest
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


def lazy_stack(plan: SeriesPlan, slab: int | None = None) -> da.Array:
    """The series as a lazy ``(z, y, x)`` (colour: ``(z, y, x, 3)``) dask array, one task per
    ``slab`` slices (default: :data:`SLAB_SLICES`, fewer when slices are so large that a
    task would pass 64 MiB)."""
    slice_bytes = plan.rows * plan.cols * plan.channels * np.dtype(plan.dtype).itemsize
    slab = slab or max(1, min(SLAB_SLICES, (64 * 2**20) // max(1, slice_bytes)))
    parts = []
    n = len(plan.files)
    frames = plan.frames or (None,) * n
    tail = (plan.channels,) if plan.channels == 3 else ()
    for z0 in range(0, n, slab):
        z1 = min(n, z0 + slab)
        args = (plan.files[z0:z1], plan.slopes[z0:z1], plan.intercepts[z0:z1], plan.rows, plan.cols, plan.dtype,
                plan.layouts[z0:z1], frames[z0:z1], plan.channels)
        token = dask.base.tokenize(*args)
        task = dask.delayed(read_slab, pure=True)(*args, dask_key_name=f"dicom-slab-{token}")
        parts.append(da.from_delayed(task, shape=(z1 - z0, plan.rows, plan.cols, *tail), dtype=plan.dtype,
                                     name=f"dicom-{token}"))
    return parts[0] if len(parts) == 1 else da.concatenate(parts, axis=0)

