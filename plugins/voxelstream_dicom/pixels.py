"""Pixel data, read only when the dask graph runs: one task per slab of consecutive slices.

:func:`lazy_stack` turns a :class:`~.series.SeriesPlan` into a dask array chunked along z
in slabs of :data:`SLAB_SLICES` slices; each chunk's task calls :func:`read_slab`, which
decodes its files and applies each slice's own RescaleSlope/Intercept.
"""

from __future__ import annotations

from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np
import pydicom

from voxelstream.errors import ReadError

from .series import SeriesPlan

__all__ = ["SLAB_SLICES", "read_slice", "read_slab", "lazy_stack"]

#: Slices per dask task: 32 slices of 512x512 float32 are 32 MiB, small enough for many
#: workers and large enough that per-task overhead stays negligible.
SLAB_SLICES = 32


def read_slice(path: str, rows: int, cols: int) -> np.ndarray:
    """The stored (not rescaled) values of one single-frame file, shape ``(rows, cols)``."""
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
) -> np.ndarray:
    """Decode ``files`` (consecutive slices) into ``(len(files), rows, cols)`` of ``dtype``,
    each slice rescaled with its own slope and intercept."""
    out = np.empty((len(files), rows, cols), dtype=dtype)
    integral = np.dtype(dtype).kind == "i"
    for k, (path, slope, intercept) in enumerate(zip(files, slopes, intercepts)):
        raw = read_slice(path, rows, cols)
        if integral:  # exact integer arithmetic; saturates only for HU past int16 (see output_dtype)
            out[k] = np.clip(raw.astype(np.int32) * int(slope) + int(intercept), -32768, 32767)
        else:
            out[k] = raw.astype(np.float64) * slope + intercept
    return out


def lazy_stack(plan: SeriesPlan, slab: int = SLAB_SLICES) -> da.Array:
    """The series as a lazy ``(z, y, x)`` dask array, one task per ``slab`` slices."""
    parts = []
    n = len(plan.files)
    for z0 in range(0, n, slab):
        z1 = min(n, z0 + slab)
        args = (plan.files[z0:z1], plan.slopes[z0:z1], plan.intercepts[z0:z1], plan.rows, plan.cols, plan.dtype)
        token = dask.base.tokenize(*args)
        task = dask.delayed(read_slab, pure=True)(*args, dask_key_name=f"dicom-slab-{token}")
        parts.append(da.from_delayed(task, shape=(z1 - z0, plan.rows, plan.cols), dtype=plan.dtype,
                                     name=f"dicom-{token}"))
    return parts[0] if len(parts) == 1 else da.concatenate(parts, axis=0)

