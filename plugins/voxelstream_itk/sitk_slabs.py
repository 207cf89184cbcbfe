"""Blocks read through SimpleITK's streaming reader (any format SimpleITK reads).

Each task asks SimpleITK for slices ``[z0:z1]`` and rows ``[y0:y1]`` only
(``SetExtractIndex/SetExtractSize``). This is the fallback for what :mod:`.rawdata` does
not lay out itself (LIST and numbered MetaImage files, NRRD encodings other than raw and
gzip, vector NIfTI/NRRD): formats whose ImageIO streams read just that part; others read
the whole image in each task, so they are kept for small or unusual files.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from .errors import ImageFileError
from .header import ImageInfo, sitk_error_line
from .slabs import slab_array

__all__ = ["sitk_array", "read_sitk_slab"]


def read_sitk_slab(z0: int, z1: int, y0: int, y1: int, *, path: str, size_xyz: tuple[int, int, int],
                   dtype: str) -> np.ndarray:
    """Slices ``[z0:z1]``, rows ``[y0:y1]`` of the image at ``path`` as ``(z, y, x[, c])``."""
    import SimpleITK as sitk  # imported when used: plugin loading stays light

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.SetExtractIndex([0, int(y0), int(z0)])
    reader.SetExtractSize([int(size_xyz[0]), int(y1 - y0), int(z1 - z0)])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageFileError(
            path, f"reading slices {z0}-{z1 - 1} failed ({sitk_error_line(exc)}); the file may be truncated or damaged, re-copy or re-export it"
        ) from None
    arr = sitk.GetArrayFromImage(image)
    if arr.dtype != np.dtype(dtype):  # the header and the data disagree: never guess
        raise ImageFileError(path, f"slices {z0}-{z1 - 1} came back as {arr.dtype}, header says {dtype}")
    return arr


def sitk_array(info: ImageInfo, depth: int | None = None) -> da.Array:
    """Lazy ``(z, y, x[, c])`` array of SimpleITK-streamed blocks (see :func:`.slabs.block_plan`)."""
    shape = info.shape_zyx + ((info.components,) if info.components > 1 else ())
    return slab_array(read_sitk_slab, shape, info.dtype, depth, path=info.path, size_xyz=info.size_xyz, dtype=info.dtype)
