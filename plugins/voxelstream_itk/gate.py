"""Header values checked before SimpleITK sees a file.

SimpleITK's readers trust their headers: a MetaImage with ``NDims = 1e308`` ends the
process with a segmentation fault inside ``ReadImageInformation``, and absurd sizes make
later steps allocate what the header says. So each format's header is parsed here first
(text for MetaImage and NRRD, the binary 348-byte header for NIfTI-1, read from at most the
first few kB of the file, decompressed if need be) and every value a reader relies on is
checked: dimension counts small positive integers, sizes positive, spacings and
positions finite, element types known. A failure is an :class:`ImageFileError` naming the
field; the file is never handed to SimpleITK.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Sequence

from .errors import ImageFileError
from .naming import format_of

__all__ = ["check_header", "NiftiHeader", "read_nifti_header", "NRRD_TYPES", "read_nrrd_header"]

MAX_NDIMS = 8
MAX_EDGE = 2**31 - 1  # ITK's sizes are signed 32-bit per axis in several IOs
_MAX_TEXT_HEADER = 64 * 1024

_META_TYPES = {
    "MET_CHAR", "MET_UCHAR", "MET_SHORT", "MET_USHORT", "MET_INT", "MET_UINT", "MET_LONG", "MET_ULONG",
    "MET_LONG_LONG", "MET_ULONG_LONG", "MET_FLOAT", "MET_DOUBLE",
}


def _bad(path: str, field: str, value: object, want: str) -> ImageFileError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return ImageFileError(path, f"header field {field} is {shown}: {want}; the file is damaged or not a valid "
                          f"{format_of(path)} file")


def _ints(path: str, field: str, text: str, n: int | None, lo: int, hi: int) -> list[int]:
    parts = text.split()
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise _bad(path, field, text, "expected integers") from None
    if (n is not None and len(vals) != n) or not vals or any(not lo <= v <= hi for v in vals):
        count = f"{n} " if n is not None else ""
        raise _bad(path, field, text, f"expected {count}integer(s) from {lo} to {hi}")
    return vals


def _floats(path: str, field: str, text: str, n: int, positive: bool = False) -> list[float]:
    try:
        vals = [float(p) for p in text.split()]
    except ValueError:
        raise _bad(path, field, text, "expected numbers") from None
    if len(vals) != n or not all(math.isfinite(v) for v in vals) or (positive and min(vals) <= 0):
        raise _bad(path, field, text, f"expected {n} finite{' positive' if positive else ''} number(s)")
    return vals


# -- MetaImage -----------------------------------------------------------------------------------


def _check_metaimage(path: str) -> None:
    from .metaimage import read_header  # text header up to ElementDataFile

    h = read_header(path)
    ndims = _ints(path, "NDims", h.get("NDims"), 1, 1, MAX_NDIMS)[0]
    _ints(path, "DimSize", h.get("DimSize"), ndims, 1, MAX_EDGE)
    for key in ("ElementSpacing", "ElementSize"):
        if h.get(key):
            _floats(path, key, h.get(key), ndims, positive=True)
    for key in ("Offset", "Position", "Origin", "CenterOfRotation"):
        if h.get(key):
            _floats(path, key, h.get(key), ndims)
    for key in ("TransformMatrix", "Rotation", "Orientation"):
        if h.get(key):
            _floats(path, key, h.get(key), ndims * ndims)
    if h.get("ElementNumberOfChannels"):
        _ints(path, "ElementNumberOfChannels", h.get("ElementNumberOfChannels"), 1, 1, 4096)
    if h.get("HeaderSize"):
        _ints(path, "HeaderSize", h.get("HeaderSize"), 1, -1, 2**62)
    if h.get("CompressedDataSize"):
        _ints(path, "CompressedDataSize", h.get("CompressedDataSize"), 1, 0, 2**62)
    for key in ("BinaryData", "BinaryDataByteOrderMSB", "ElementByteOrderMSB", "CompressedData"):
        # MetaIO reads an empty or odd flag as False: BinaryData then means ASCII voxels, and
        # SimpleITK fails later inside the data read, on stderr
        present = [v for k, v in h.keys.items() if k.lower() == key.lower()]
        if present and present[0].strip().lower() not in ("true", "false", "t", "f", "1", "0"):
            raise _bad(path, key, present[0], "expected True or False")
    etype = h.get("ElementType").upper()
    if etype not in _META_TYPES:
        raise _bad(path, "ElementType", h.get("ElementType"), "expected one of " + ", ".join(sorted(_META_TYPES)))


# -- NIfTI-1 ---------------------------------------------------------------------------------------

#: NIfTI datatype code -> (numpy dtype code, bits per voxel).
NIFTI_TYPES = {
    2: ("u1", 8), 4: ("i2", 16), 8: ("i4", 32), 16: ("f4", 32), 64: ("f8", 64), 256: ("i1", 8),
    512: ("u2", 16), 768: ("u4", 32), 1024: ("i8", 64), 1280: ("u8", 64), 128: ("u1", 24),
    2304: ("u1", 32), 32: ("c8", 64), 1792: ("c16", 128),
}


class NiftiHeader:
    """The fields of a NIfTI-1 header this reader uses (byte order detected)."""

    def __init__(self, endian: str, dims: Sequence[int], datatype: int, bitpix: int, pixdim: Sequence[float],
                 vox_offset: float, scl_slope: float, scl_inter: float):
        self.endian = endian
        self.dims = tuple(dims)
        self.datatype = datatype
        self.bitpix = bitpix
        self.pixdim = tuple(pixdim)
        self.vox_offset = vox_offset
        self.scl_slope = scl_slope
        self.scl_inter = scl_inter

    @property
    def stored_dtype(self) -> str:
        """numpy dtype string of one stored value, with byte order."""
        return self.endian + NIFTI_TYPES[self.datatype][0]

    @property
    def scaled(self) -> bool:
        """True when readers apply ``scl_slope``/``scl_inter`` (slope neither 0 nor 1, or an
        intercept), as niftilib does."""
        return self.scl_slope != 0 and (self.scl_slope != 1 or self.scl_inter != 0)


def _head_bytes(path: str, n: int) -> bytes:
    """The first ``n`` bytes of the file, inflated first when it is gzip-compressed (only as
    much input as those bytes need: a decompression bomb is never expanded here)."""
    with open(path, "rb") as f:
        start = f.read(2)
        f.seek(0)
        if start != b"\x1f\x8b":
            return f.read(n)
        d = zlib.decompressobj(wbits=31)
        out = b""
        try:
            while len(out) < n:
                chunk = f.read(4096)
                if not chunk:
                    break
                out += d.decompress(chunk, n - len(out))
                while d.unconsumed_tail and len(out) < n:
                    out += d.decompress(d.unconsumed_tail, n - len(out))
        except zlib.error as exc:
            raise ImageFileError(path, f"damaged gzip data at the start of the file ({exc}); re-copy or re-export it") from None
        return out[:n]


def read_nifti_header(path: str) -> NiftiHeader:
    """Parse and check a NIfTI-1 header (``.nii`` or ``.nii.gz``)."""
    raw = _head_bytes(path, 348)
    if len(raw) < 4:
        raise ImageFileError(path, f"not a valid NIfTI file: it holds {len(raw)} bytes; re-copy or re-export it")
    for endian in ("<", ">"):
        if struct.unpack_from(endian + "i", raw, 0)[0] == 348:
            break
    else:
        size = struct.unpack_from("<i", raw, 0)[0]
        if size == 540 or struct.unpack_from(">i", raw, 0)[0] == 540:
            raise ImageFileError(path, "a NIfTI-2 file: this reader handles NIfTI-1; convert it (e.g. nibabel) first")
        raise ImageFileError(path, f"not a valid NIfTI file (sizeof_hdr is {size}, not 348); check the file "
                             "and its name's extension")
    if len(raw) < 348:
        raise ImageFileError(path, f"the file ends inside its NIfTI header ({len(raw)} of 348 bytes); re-copy it")
    dim = struct.unpack_from(endian + "8h", raw, 40)
    if not 1 <= dim[0] <= 7:
        raise _bad(path, "dim[0]", dim[0], "expected 1 to 7 dimensions")
    dims = dim[1:1 + dim[0]]
    if min(dims) < 1:
        raise _bad(path, "dim", list(dims), "expected positive sizes")
    datatype, bitpix = struct.unpack_from(endian + "hh", raw, 70)
    if datatype not in NIFTI_TYPES:
        raise _bad(path, "datatype", datatype, "expected a NIfTI-1 datatype code")
    if bitpix != NIFTI_TYPES[datatype][1]:
        raise _bad(path, "bitpix", bitpix, f"datatype {datatype} has {NIFTI_TYPES[datatype][1]} bits")
    pixdim = struct.unpack_from(endian + "8f", raw, 76)
    if not all(math.isfinite(v) for v in pixdim[:1 + dim[0]]):
        raise _bad(path, "pixdim", list(pixdim[:1 + dim[0]]), "expected finite numbers")
    if any(v == 0 for v in pixdim[1:1 + min(dim[0], 3)]):
        raise _bad(path, "pixdim", list(pixdim[1:1 + min(dim[0], 3)]), "expected non-zero voxel sizes")
    vox_offset, scl_slope, scl_inter = struct.unpack_from(endian + "3f", raw, 108)
    if not math.isfinite(vox_offset) or not 0 <= vox_offset <= 2**40:
        raise _bad(path, "vox_offset", vox_offset, "expected a byte offset")
    qform = struct.unpack_from(endian + "6f", raw, 256)
    srow = struct.unpack_from(endian + "12f", raw, 280)
    if not all(math.isfinite(v) for v in (*qform, *srow)):
        raise _bad(path, "qform/sform", "non-finite", "expected finite orientation values")
    if not math.isfinite(scl_slope):  # NaN/Inf slope: niftilib treats it as "no scaling"
        scl_slope, scl_inter = 0.0, 0.0
    if not math.isfinite(scl_inter):
        raise _bad(path, "scl_inter", scl_inter, "expected a finite intercept")
    return NiftiHeader(endian, dims, datatype, bitpix, pixdim, vox_offset, scl_slope, scl_inter)


# -- NRRD --------------------------------------------------------------------------------------------

#: NRRD type names (and their aliases) -> numpy dtype code.
NRRD_TYPES = {}
for _code, _names in {
    "i1": "signed char|int8|int8_t", "u1": "uchar|unsigned char|uint8|uint8_t",
    "i2": "short|short int|signed short|signed short int|int16|int16_t",
    "u2": "ushort|unsigned short|unsigned short int|uint16|uint16_t",
    "i4": "int|signed int|int32|int32_t", "u4": "uint|unsigned int|uint32|uint32_t",
    "i8": "longlong|long long|long long int|signed long long|signed long long int|int64|int64_t",
    "u8": "ulonglong|unsigned long long|unsigned long long int|uint64|uint64_t",
    "f4": "float", "f8": "double",
}.items():
    for _n in _names.split("|"):
        NRRD_TYPES[_n] = _code


def read_nrrd_header(path: str) -> tuple[dict[str, str], int]:
    """The ``field: value`` lines of a NRRD header (keys lower-case) and the byte offset
    where the header ends (after its blank line; the end of the file for a ``.nhdr``)."""
    with open(path, "rb") as f:
        head = f.read(_MAX_TEXT_HEADER)
    if not head.startswith(b"NRRD000"):
        raise ImageFileError(path, "not a NRRD file (no NRRD000x magic line); check the file and its extension")
    fields: dict[str, str] = {}
    pos = head.index(b"\n") + 1 if b"\n" in head else len(head)
    while pos < len(head):
        end = head.find(b"\n", pos)
        if end < 0:
            if len(head) == _MAX_TEXT_HEADER:
                raise ImageFileError(path, f"NRRD header longer than {_MAX_TEXT_HEADER} bytes; the file is damaged")
            end = len(head)
        line = head[pos:end].decode("latin-1").rstrip("\r")
        pos = end + 1
        if not line:
            return fields, pos
        if line.startswith("#") or ":=" in line:
            continue  # comment or key/value pair (free text)
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields, pos


def _check_nrrd(path: str) -> None:
    fields, _ = read_nrrd_header(path)
    ndim = _ints(path, "dimension", fields.get("dimension", ""), 1, 1, MAX_NDIMS)[0]
    _ints(path, "sizes", fields.get("sizes", ""), ndim, 1, MAX_EDGE)
    if fields.get("type", "").lower() not in NRRD_TYPES and fields.get("type", "").lower() != "block":
        raise _bad(path, "type", fields.get("type"), "expected a NRRD scalar type")
    if "spacings" in fields:
        vals = [v for v in fields["spacings"].split() if v.lower() != "nan"]
        if vals:
            _floats(path, "spacings", " ".join(vals), len(vals), positive=True)
    if "space directions" in fields:
        vecs = re.findall(r"\(([^)]*)\)", fields["space directions"])
        for v in vecs:
            nums = v.split(",")
            _floats(path, "space directions", " ".join(nums), len(nums))
    if "space origin" in fields:
        inner = fields["space origin"].strip("() ")
        _floats(path, "space origin", inner.replace(",", " "), len(inner.split(",")))
    if "byte skip" in fields:
        _ints(path, "byte skip", fields["byte skip"], 1, -1, 2**62)


def check_header(path: str) -> None:
    """Raise :class:`ImageFileError` when the header of ``path`` (MetaImage, NIfTI or NRRD)
    holds a value no reader should act on; returns quietly otherwise."""
    fmt = format_of(path)
    try:
        if fmt == "MetaImage":
            _check_metaimage(path)
        elif fmt == "NIfTI":
            read_nifti_header(path)
        else:
            _check_nrrd(path)
    except ImageFileError:
        raise
    except OSError as exc:
        raise ImageFileError(path, f"cannot read the file ({exc.strerror or exc}); check it exists and is readable") from None
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise ImageFileError(path, f"unreadable {fmt} header ({type(exc).__name__}: {exc})") from None
