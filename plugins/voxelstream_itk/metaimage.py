"""MetaImage (.mhd/.mha) headers: where the voxel bytes are, whether they are whole, and
memory-mapped z slabs of uncompressed data.

SimpleITK gives the geometry; this module reads the few keys it does not expose
(``ElementDataFile``, ``HeaderSize``, ``CompressedData``, byte order) from the text header,
so that ``.mhd`` + ``.raw`` (LUNA16's layout), ``.mhd`` + ``.zraw`` and ``.mha`` are read
block by block straight from the file (:mod:`.rawdata`), without SimpleITK in the loop.

Data files stay in their folder: ``ElementDataFile`` (and every file of a ``LIST`` or a
numbered pattern) must resolve, symlinks included, inside the header's folder, unless the
user opts in (``ReadOptions.allow_outside_data``); otherwise a header could make ingest
copy any file of the host (``/etc/shadow``, ``../../other_patient.raw``) into a store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImageFileError
from .header import ImageInfo
from .rawdata import RawLayout

__all__ = ["MetaHeader", "RawLayout", "read_header", "data_file_of", "data_files_of", "check_data", "raw_layout",
           "inside_folder", "is_plain_text"]

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
    #: the header's lines as written, up to and including ``ElementDataFile``
    lines: tuple[str, ...] = ()

    def get(self, key: str, default: str = "") -> str:
        for k, v in self.keys.items():
            if k.lower() == key.lower():
                return v
        return default

    def flag(self, key: str) -> bool:
        return self.get(key, "False").strip().lower() in ("true", "1", "yes")


def read_header(path: str | Path) -> MetaHeader:
    """Parse the ``Key = Value`` lines of a MetaImage header up to ``ElementDataFile`` (the
    last key; binary data may follow it in a ``.mha``)."""
    keys: dict[str, str] = {}
    lines: list[str] = []
    with open(path, "rb") as f:
        for _ in range(_MAX_HEADER_LINES):
            line = f.readline()
            if not line:
                break
            lines.append(line.decode("latin-1"))
            key, sep, value = lines[-1].partition("=")
            if not sep:
                continue
            keys[key.strip()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                return MetaHeader(str(path), keys, f.tell(), tuple(lines))
    raise ImageFileError(
        str(path), "not a MetaImage header: it has no ElementDataFile line; check the file is a .mhd/.mha"
    )


#: The keys the direct paths understand, spelt as MetaIO spells them (MetaIO's keys are
#: case-sensitive: ``offset = 1 2 3`` is ignored by SimpleITK, so it must be by us too).
_PLAIN_KEYS = frozenset({
    "ObjectType", "NDims", "BinaryData", "BinaryDataByteOrderMSB", "ElementByteOrderMSB", "CompressedData",
    "CompressedDataSize", "TransformMatrix", "Rotation", "Orientation", "Offset", "Position", "Origin",
    "CenterOfRotation", "AnatomicalOrientation", "ElementSpacing", "DimSize", "ElementType", "ElementDataFile",
    "Modality", "HeaderSize", "ElementNumberOfChannels", "Comment", "Name",
})
#: Keys MetaIO refuses before ``NDims`` is known.
_AFTER_NDIMS = frozenset({"TransformMatrix", "Rotation", "Orientation", "Offset", "Position", "Origin",
                          "CenterOfRotation", "ElementSpacing", "DimSize"})


def is_plain_text(header: MetaHeader) -> bool:
    """Whether the header is written so plainly that reading it ourselves cannot disagree
    with SimpleITK: every line ``Key = value`` with a non-empty value and a known key spelt
    exactly as MetaIO spells it, each key once, ``NDims`` before the geometry, binary data.
    Anything else (``Offset: 1 2 3``, ``offset = ...``, ``BinaryData = False``, an empty
    value) is left to SimpleITK, which reads it, or refuses it with its own message."""
    seen: set[str] = set()
    for line in header.lines:
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value or key not in _PLAIN_KEYS or key in seen:
            return False
        if key in _AFTER_NDIMS and "NDims" not in seen:
            return False
        seen.add(key)
    # MetaIO reads BinaryData as true when its value starts with T, t or 1 (absent: binary)
    return header.keys.get("BinaryData", "T")[:1] in ("T", "t", "1")


def inside_folder(header_path: str, name: str, allow_outside: bool) -> str:
    """``name`` (as written in a header) resolved beside ``header_path``; an
    :class:`ImageFileError` when it resolves (symlinks included) outside the header's
    folder and ``allow_outside`` is off."""
    folder = Path(header_path).resolve().parent
    target = (Path(header_path).parent / name)
    if not allow_outside:
        resolved = target.resolve()
        if resolved != folder and folder not in resolved.parents:
            raise ImageFileError(
                header_path,
                f"its data file {name!r} resolves outside the header's folder; refused so that no other file of "
                "this machine is read into the store: move the data beside the header, or pass "
                "--allow-outside-data if the layout is intended",
            )
    return str(target)


def data_file_of(header: MetaHeader, allow_outside: bool = False) -> str | None:
    """The single external data file the header names (resolved beside the header, and
    checked to stay inside its folder), or None for ``LOCAL`` data, a ``LIST`` or a
    numbered file pattern (those go through SimpleITK; see :func:`data_files_of`)."""
    name = header.get("ElementDataFile")
    if name.upper() in ("LOCAL", "LIST") or name.upper().startswith("LIST") or "%" in name:
        return None
    return inside_folder(header.path, name, allow_outside)


def data_files_of(header: MetaHeader, allow_outside: bool = False) -> list[str]:
    """Every data file the header points at (``LOCAL``: the header itself), each checked
    to stay inside the header's folder. A numbered pattern (``slice%03d.raw 1 40 1``) is
    checked by its folder."""
    name = header.get("ElementDataFile")
    if name.upper() == "LOCAL":
        return [header.path]
    if name.upper().startswith("LIST"):
        with open(header.path, "rb") as f:
            f.seek(header.header_end)
            names = [ln.strip() for ln in f.read(1 << 20).decode("latin-1").splitlines() if ln.strip()]
        return [inside_folder(header.path, n, allow_outside) for n in names]
    if "%" in name:
        pattern = name.split()[0]
        inside_folder(header.path, str(Path(pattern).parent / "x"), allow_outside)
        return []
    return [inside_folder(header.path, name, allow_outside)]


def _size(path: str) -> int:
    return os.stat(path).st_size


def check_data(header: MetaHeader, info: ImageInfo, allow_outside: bool = False) -> None:
    """Raise :class:`ImageFileError` if the voxel data the header points at lie outside its
    folder (unless ``allow_outside``), are missing, or are shorter than the header says
    (cheap: file sizes only)."""
    data_files_of(header, allow_outside)
    data_file = data_file_of(header, allow_outside)
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


def raw_layout(header: MetaHeader, info: ImageInfo, allow_outside: bool = False) -> RawLayout | None:
    """Where the voxels lie, when :mod:`.rawdata` can read them (one file, known element
    type, agreeing with SimpleITK's reading of the header; zlib-compressed data too);
    otherwise None."""
    if header.get("NDims") != "3" or not is_plain_text(header):
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
    compression = "zlib" if header.flag("CompressedData") else ""
    data_file = data_file_of(header, allow_outside)
    skip = int(header.get("HeaderSize", "0") or 0)
    if data_file is None:
        if header.get("ElementDataFile").upper() != "LOCAL" or skip:
            return None
        data_file, offset = header.path, header.header_end
    elif compression:
        if skip:
            return None
        offset = 0
    else:
        # HeaderSize -1: the data are the last bytes of the file, after a header of unknown size
        offset = _size(data_file) - info.data_bytes if skip == -1 else skip
    shape = info.shape_zyx + ((channels,) if channels > 1 else ())
    if compression:  # the zlib stream starts at `offset` (after a .mha's header); voxels at its start
        return RawLayout(data_file, 0, dtype.str, shape, compression, stream_start=offset)
    return RawLayout(data_file, offset, dtype.str, shape)


#: MetaIO's modality names (anything else is left to SimpleITK).
_MODALITIES = ("MET_MOD_CT", "MET_MOD_MR", "MET_MOD_NM", "MET_MOD_US", "MET_MOD_OTHER", "MET_MOD_UNKNOWN")


def _one_of(header: MetaHeader, keys: tuple[str, ...]) -> str | None:
    """The value of the one key of ``keys`` (MetaIO's aliases) present; ``""`` when none is;
    ``None`` when several are (which one MetaIO takes is left to SimpleITK)."""
    values = [header.get(k) for k in keys if header.get(k)]
    return None if len(values) > 1 else (values[0] if values else "")


def plain_info(path: str) -> ImageInfo | None:
    """What SimpleITK's ``ReadImageInformation`` gives for a plain 3-D scalar MetaImage header
    (LUNA16's kind), read from the text without importing SimpleITK (0.1-0.2 s of every
    ingest); ``None`` for anything less plain (SimpleITK reads it). The header's values were
    checked by :mod:`.gate`. tests/test_itk_reader.py compares both on varied headers."""
    h = read_header(path)
    if not is_plain_text(h):
        return None
    try:
        if h.get("ObjectType", "Image").lower() != "image" or int(h.get("NDims")) != 3:
            return None
        if int(h.get("ElementNumberOfChannels", "1")) != 1 or h.get("ElementType").upper() not in _ELEMENT_TYPES:
            return None
        size = tuple(int(v) for v in h.get("DimSize").split())
        spacing = tuple(float(v) for v in h.get("ElementSpacing").split())
        origin_text, matrix_text = _one_of(h, ("Offset", "Position", "Origin")), _one_of(
            h, ("TransformMatrix", "Rotation", "Orientation"))
        modality = h.get("Modality", "MET_MOD_UNKNOWN")
    except ValueError:
        return None
    if origin_text is None or matrix_text is None or modality not in _MODALITIES or len(spacing) != 3:
        return None
    origin = tuple(float(v) for v in origin_text.split()) if origin_text else (0.0, 0.0, 0.0)
    matrix = np.array([float(v) for v in matrix_text.split()] if matrix_text else np.eye(3).ravel()).reshape(3, 3)
    if len(size) != 3 or len(origin) != 3 or not np.allclose(matrix @ matrix.T, np.eye(3), rtol=0, atol=1e-9):
        return None  # not orthonormal: how ITK mends it is SimpleITK's business
    return ImageInfo(
        path=str(path),
        format="MetaImage",
        size_xyz=size,
        spacing_xyz=spacing,
        origin_xyz=origin,
        # MetaIO's TransformMatrix holds the index axes' directions as rows; ITK's direction
        # matrix holds them as columns
        direction=tuple(float(v) for v in matrix.T.ravel()),
        dtype=np.dtype(_ELEMENT_TYPES[h.get("ElementType").upper()]).name,
        components=1,
        metadata=(("ITK_InputFilterName", "MetaImageIO"), ("Modality", modality)),
    )
