"""MetaImage (.mhd/.mha) headers: where the voxel bytes are, whether they are whole, and
memory-mapped z slabs of uncompressed data.

SimpleITK gives the geometry; this module reads the few keys it does not expose
(``ElementDataFile``, ``HeaderSize``, ``CompressedData``, byte order) from the text header,
so that an uncompressed ``.mhd`` + ``.raw`` (LUNA16's layout) or ``.mha`` is read slab by
slab straight from the file, without SimpleITK in the loop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np

from .errors import ImageFileError
from .header import ImageInfo
from .slabs import slab_array, slab_depth

__all__ = ["MetaHeader", "RawLayout", "read_header", "data_file_of", "check_data", "raw_layout", "memmap_array", "read_raw_slab"]

_MAX_HEADER_LINES = 1000
# Unambiguous sizes only: MET_LONG/MET_ULONG follow the writer's C ``long`` and are left to
# SimpleITK, as is anything else not listed here.
_ELEMENT_TYPES = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_LONG_LONG": "i8",
    "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}


@dataclass(frozen=True)
class MetaHeader:
    """The text header's keys (as written) and, for ``LOCAL`` data, where the header ends."""

    path: str
    keys: Mapping[str, str]
    header_end: int

    def get(self, key: str, default: str = "") -> str:
        for k, v in self.keys.items():
            if k.lower() == key.lower():
                return v
        return default

    def flag(self, key: str) -> bool:
        return self.get(key, "False").strip().lower() in ("true", "1", "yes")


@dataclass(frozen=True)
class RawLayout:
    """Uncompressed voxel bytes in one file: plain data, safe to put into a dask graph."""

    data_file: str
    offset: int
    dtype: str  # with byte order, e.g. ">i2"
    shape: tuple[int, ...]  # (z, y, x) or (z, y, x, c)


def read_header(path: str | Path) -> MetaHeader:
    """Parse the ``Key = Value`` lines of a MetaImage header up to ``ElementDataFile`` (the
    last key; binary data may follow it in a ``.mha``)."""
    keys: dict[str, str] = {}
    with open(path, "rb") as f:
        for _ in range(_MAX_HEADER_LINES):
            line = f.readline()
            if not line:
                break
            key, sep, value = line.decode("latin-1").partition("=")
            if not sep:
                continue
            keys[key.strip()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                return MetaHeader(str(path), keys, f.tell())
    raise ImageFileError(
        str(path), "not a MetaImage header: it has no ElementDataFile line; check the file is a .mhd/.mha"
    )


def data_file_of(header: MetaHeader) -> str | None:
    """The single external data file the header names (resolved beside the header), or None
    for ``LOCAL`` data, a ``LIST`` or a numbered file pattern (those go through SimpleITK)."""
    name = header.get("ElementDataFile")
    if name.upper() in ("LOCAL", "LIST") or name.upper().startswith("LIST") or "%" in name:
        return None
    return str(Path(header.path).parent / name)


def _size(path: str) -> int:
    return os.stat(path).st_size


def check_data(header: MetaHeader, info: ImageInfo) -> None:
    """Raise :class:`ImageFileError` if the voxel data the header points at is missing or
    shorter than the header says (cheap: file sizes only)."""
    data_file = data_file_of(header)
    name = header.get("ElementDataFile")
    if data_file is None and name.upper() != "LOCAL":
        return  # a LIST or a numbered pattern of files: SimpleITK reports what is missing
    if data_file is not None and not os.path.isfile(data_file):
        raise ImageFileError(
            header.path,
            f"its data file {name} (ElementDataFile) is missing; put {name} beside the header",
        )
    where, size = (data_file, _size(data_file)) if data_file else (header.path, _size(header.path))
    what = f"data file {name}" if data_file else "the file"
    if header.flag("CompressedData"):
        need = int(header.get("CompressedDataSize", "0") or 0)
        if need and size < need + (0 if data_file else header.header_end):
            raise ImageFileError(
                header.path,
                f"{what} is truncated: compressed data should be {need} bytes; re-copy {os.path.basename(where)}",
            )
        return
    skip = int(header.get("HeaderSize", "0") or 0)
    need = info.data_bytes + max(skip, 0) + (0 if data_file else header.header_end)
    if size < need:
        raise ImageFileError(
            header.path,
            f"{what} is truncated: it holds {size} bytes but the header needs {need}; "
            f"re-copy {os.path.basename(where)}",
        )


def raw_layout(header: MetaHeader, info: ImageInfo) -> RawLayout | None:
    """Where the uncompressed voxels lie, when they can be memory-mapped (one file, known
    element type, agreeing with SimpleITK's reading of the header); otherwise None."""
    if header.flag("CompressedData") or header.get("NDims") != "3":
        return None
    code = _ELEMENT_TYPES.get(header.get("ElementType").upper())
    channels = int(header.get("ElementNumberOfChannels", "1") or 1)
    dims = tuple(int(v) for v in header.get("DimSize").split())
    if code is None or channels != info.components or dims != info.size_xyz:
        return None
    msb = header.flag("BinaryDataByteOrderMSB") or header.flag("ElementByteOrderMSB")
    dtype = np.dtype(code).newbyteorder(">" if msb else "<")
    if dtype.newbyteorder("=").name != info.dtype:
        return None
    data_file = data_file_of(header)
    skip = int(header.get("HeaderSize", "0") or 0)
    if data_file is None:
        if header.get("ElementDataFile").upper() != "LOCAL" or skip:
            return None
        data_file, offset = header.path, header.header_end
    else:
        # HeaderSize -1: the data are the last bytes of the file, after a header of unknown size
        offset = _size(data_file) - info.data_bytes if skip == -1 else skip
    shape = info.shape_zyx + ((channels,) if channels > 1 else ())
    return RawLayout(data_file, offset, dtype.str, shape)


def read_raw_slab(z0: int, z1: int, *, path: str, offset: int, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Slices ``[z0:z1]`` of the raw data, copied out of a memory map opened for this call
    only (the map itself never enters the graph), in native byte order."""
    mm = np.memmap(path, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
    try:
        return np.ascontiguousarray(mm[z0:z1], dtype=np.dtype(dtype).newbyteorder("="))
    finally:
        del mm


def memmap_array(layout: RawLayout, depth: int | None = None) -> da.Array:
    """Lazy ``(z, y, x[, c])`` array of memory-mapped slabs of ``depth`` slices each."""
    slice_bytes = int(np.prod(layout.shape[1:])) * np.dtype(layout.dtype).itemsize
    depth = depth or slab_depth(slice_bytes)
    native = np.dtype(layout.dtype).newbyteorder("=").name
    return slab_array(
        read_raw_slab, layout.shape, native, depth, path=layout.data_file, offset=layout.offset, dtype=layout.dtype, shape=layout.shape
    )
