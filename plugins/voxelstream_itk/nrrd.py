"""NRRD (``.nrrd``, ``.nhdr`` + data file): where the voxels lie, and are they all there.

SimpleITK's NRRD reader (teem) does not stream: asked for a slab it reads the whole image.
So scalar 3-D NRRD with ``raw`` or ``gzip`` encoding is laid out here for :mod:`.rawdata`
(memory-mapped, or inflated once per volume); other encodings (bzip2, ascii, hex), vector
voxels and ``LIST``/numbered data files go through SimpleITK. A detached data file must
stay in the header's folder, as for MetaImage.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import ImageFileError
from .gate import NRRD_TYPES, read_nrrd_header
from .header import ImageInfo
from .metaimage import inside_folder
from .rawdata import RawLayout

__all__ = ["raw_layout", "check_data"]


def _data_file(path: str, fields: dict[str, str], allow_outside: bool) -> str | None:
    """The detached data file (checked to stay inside the folder), None when the data follow
    the header; raises for a LIST or numbered pattern that leaves the folder."""
    name = fields.get("data file") or fields.get("datafile")
    if not name:
        return None
    if name.upper().startswith("LIST") or "%" in name or len(name.split()) > 1:
        inside_folder(path, os.path.join(os.path.dirname(name.split()[0]) or ".", "x"), allow_outside)
        return ""  # several files: SimpleITK reads them
    return inside_folder(path, name, allow_outside)


def check_data(info: ImageInfo, allow_outside: bool = False) -> None:
    """Raise :class:`ImageFileError` when a detached data file leaves the header's folder
    (unless ``allow_outside``), or raw data are shorter than the header says."""
    fields, header_end = read_nrrd_header(info.path)
    data = _data_file(info.path, fields, allow_outside)
    if data == "" or fields.get("encoding", "").lower() != "raw":
        return
    where = data or info.path
    if not os.path.isfile(where):
        raise ImageFileError(info.path, f"its data file {fields.get('data file') or fields.get('datafile')} is missing; "
                             "put it beside the header")
    skip = int(fields.get("byte skip", "0") or 0)
    need = info.data_bytes + (0 if data else header_end) + max(skip, 0)
    size = os.stat(where).st_size
    if size < need:
        raise ImageFileError(info.path, f"raw data are truncated: {os.path.basename(where)} holds {size} bytes but the "
                             f"header needs {need}; re-copy or re-export the file")


def raw_layout(info: ImageInfo, allow_outside: bool = False) -> RawLayout | None:
    """The :class:`RawLayout` of a scalar 3-D raw or gzip NRRD, else None (SimpleITK reads it)."""
    fields, header_end = read_nrrd_header(info.path)
    compression = {"raw": "", "gzip": "gzip", "gz": "gzip"}.get(fields.get("encoding", "").lower())
    code = NRRD_TYPES.get(fields.get("type", "").lower())
    if compression is None or code is None or info.components != 1 or fields.get("dimension") != "3":
        return None
    if tuple(int(v) for v in fields.get("sizes", "").split()) != tuple(info.size_xyz):
        return None
    if int(fields.get("line skip", fields.get("lineskip", "0")) or 0):
        return None
    big = fields.get("endian", "little").lower() == "big"
    dtype = np.dtype(code).newbyteorder(">" if big else "<")
    if dtype.newbyteorder("=").name != info.dtype:
        return None
    data = _data_file(info.path, fields, allow_outside)
    if data == "":
        return None
    where, start = (data, 0) if data else (info.path, header_end)
    skip = int(fields.get("byte skip", fields.get("byteskip", "0")) or 0)
    if compression:
        return None if skip else RawLayout(where, 0, dtype.str, info.shape_zyx, "gzip", stream_start=start)
    offset = os.stat(where).st_size - info.data_bytes if skip == -1 else start + skip
    return RawLayout(where, offset, dtype.str, info.shape_zyx)
