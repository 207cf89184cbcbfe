"""NIfTI-1: is the file whole, and where are its voxels.

SimpleITK reads a truncated ``.nii``/``.nii.gz`` without a word
(the missing voxels come back as garbage), so discovery checks the size the header
promises against the file, cheaply.

For ``.nii.gz`` the gzip trailer records the uncompressed size (modulo 2**32); only when it
disagrees (a truncated file, or a rare multi-member gzip) is the stream decompressed, without
keeping it, to count the bytes for certain.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from .errors import ImageFileError
from .gate import NIFTI_TYPES, read_nifti_header
from .header import ImageInfo
from .rawdata import RawLayout

__all__ = ["stored_bytes", "check_complete", "raw_layout"]

_CHUNK = 4 * 2**20


def stored_bytes(info: ImageInfo) -> int:
    """Bytes of the uncompressed file the header promises: ``vox_offset`` plus the voxel
    block as stored (``bitpix`` and all ``dim`` entries, before any scl_slope rescaling)."""
    ndim = int(info.meta("dim[0]", "3"))
    dims = [int(info.meta(f"dim[{i}]", "1")) for i in range(1, ndim + 1)]
    voxels = int(np.prod(dims, dtype=np.int64))
    return int(float(info.meta("vox_offset", "352"))) + voxels * int(info.meta("bitpix", "8")) // 8


def _gzip_trailer_size(path: str) -> int | None:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 18:  # smallest possible gzip member
            return None
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def _gunzipped_size(path: str) -> int:
    """Bytes the gzip stream(s) decompress to, up to the first damaged or missing byte."""
    total = 0
    with open(path, "rb") as f:
        d = zlib.decompressobj(wbits=31)
        while chunk := f.read(_CHUNK):
            while chunk:
                try:
                    total += len(d.decompress(chunk))
                except zlib.error:  # damaged data, or padding after the last member
                    return total
                chunk = d.unused_data if d.eof else b""
                if d.eof:
                    d = zlib.decompressobj(wbits=31)
    return total


def check_complete(info: ImageInfo) -> None:
    """Raise :class:`ImageFileError` if ``info.path`` holds fewer bytes than its header needs."""
    need = stored_bytes(info)
    fix = "re-copy or re-export the file"
    if not info.path.lower().endswith(".gz"):
        size = os.stat(info.path).st_size
        if size < need:
            raise ImageFileError(info.path, f"truncated: it holds {size} bytes but the header needs {need}; {fix}")
        return
    if _gzip_trailer_size(info.path) == need % 2**32:
        return
    got = _gunzipped_size(info.path)
    if got < need:
        raise ImageFileError(
            info.path,
            f"truncated or damaged gzip data: it decompresses to {got} bytes (header needs {need}); {fix}",
        )


def raw_layout(info: ImageInfo) -> RawLayout | None:
    """Where a scalar NIfTI-1 volume's voxels lie (``.nii``: memory-mapped; ``.nii.gz``:
    inflated once per volume by :mod:`.stream`), with ``scl_slope``/``scl_inter`` applied
    as SimpleITK does (to its float output type); None for what SimpleITK should read
    (vector or RGB voxels, more than three non-trivial dimensions)."""
    h = read_nifti_header(info.path)
    if info.components != 1 or NIFTI_TYPES[h.datatype][0].startswith("c") or h.datatype in (128, 2304):
        return None
    dims = tuple(h.dims) + (1,) * (3 - len(h.dims))
    if any(d != 1 for d in dims[3:]) or tuple(dims[:3]) != tuple(info.size_xyz):
        return None
    stored = np.dtype(h.stored_dtype)
    if h.scaled:
        if np.dtype(info.dtype).kind != "f":
            return None
        scale = {"slope": float(h.scl_slope), "inter": float(h.scl_inter), "out_dtype": info.dtype}
    elif stored.newbyteorder("=").name == info.dtype:
        scale = {}
    else:
        return None
    compression = "gzip" if info.path.lower().endswith(".gz") else ""
    return RawLayout(info.path, int(h.vox_offset), stored.str, info.shape_zyx, compression, **scale)
