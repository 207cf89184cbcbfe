"""Fast path of the header scan: plain little-endian files parsed straight from their bytes.

pydicom's ``dcmread`` plus converting the ~20 values a slice needs cost 1.5-3 ms per file
(a 600-slice series spent 1.5-2 s on its headers); parsing the bytes here costs about
0.05 ms. Only the plain case is handled: a 'DICM' preamble, an uncompressed Explicit or
Implicit VR Little Endian dataset, ASCII single values where one is expected, and the
needed elements at the top level. :func:`read_plain` returns ``None`` for anything else
(and on any doubt), and the caller reads the file with pydicom as before, so unusual files
get exactly the old values and error messages.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

__all__ = ["PlainHeader", "read_plain", "EXPLICIT_LE", "IMPLICIT_LE"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"

PIXEL_DATA = 0x7FE00010
_FIRST_PIXEL_TAG = 0x7FE00008  # Float/Double Float Pixel Data: pydicom stops there too
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
_FIRST_READ = 8192

#: tag -> (keyword, VR): the values a slice header needs (see headers.scan_file).
WANTED: dict[int, tuple[str, str]] = {
    0x00080018: ("SOPInstanceUID", "UI"),
    0x00080060: ("Modality", "CS"),
    0x00080070: ("Manufacturer", "LO"),
    0x00180050: ("SliceThickness", "DS"),
    0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200013: ("InstanceNumber", "IS"),
    0x00200032: ("ImagePositionPatient", "DS"),
    0x00200037: ("ImageOrientationPatient", "DS"),
    0x00280002: ("SamplesPerPixel", "US"),
    0x00280004: ("PhotometricInterpretation", "CS"),
    0x00280008: ("NumberOfFrames", "IS"),
    0x00280010: ("Rows", "US"),
    0x00280011: ("Columns", "US"),
    0x00280030: ("PixelSpacing", "DS"),
    0x00280100: ("BitsAllocated", "US"),
    0x00280101: ("BitsStored", "US"),
    0x00280103: ("PixelRepresentation", "US"),
    0x00281052: ("RescaleIntercept", "DS"),
    0x00281053: ("RescaleSlope", "DS"),
    0x00281054: ("RescaleType", "LO"),
}
_TRANSFER_SYNTAX = 0x00020010


class PlainHeader(NamedTuple):
    """The wanted values (Python ints, floats, str, lists of floats), the transfer syntax,
    the file offset of the Pixel Data element (where its tag starts) and its first 12 bytes."""

    values: dict[str, Any]
    transfer_syntax: str
    pixel_element_offset: int
    pixel_element_head: bytes


class _NeedMore(Exception):
    """The buffer ended inside the header: read more of the file."""


class _NotPlain(Exception):
    """Not the plain case: let pydicom read the file."""


def read_plain(path: str) -> PlainHeader | None:
    """The header of a plain uncompressed little-endian image file, or ``None`` (use pydicom)."""
    try:
        with open(path, "rb") as fh:
            buf = fh.read(_FIRST_READ)
            while True:
                try:
                    return _parse(buf)
                except _NeedMore:
                    more = fh.read(max(len(buf), _FIRST_READ))
                    if not more:
                        return None  # ends inside the header: pydicom names the problem
                    buf += more
    except (_NotPlain, OSError, ValueError, UnicodeDecodeError, struct.error):
        return None


def _parse(buf: bytes) -> PlainHeader:
    if len(buf) < 132:
        raise _NeedMore
    if buf[128:132] != b"DICM":
        raise _NotPlain
    pos, meta = _read_elements(buf, 132, explicit=True, group=0x0002)
    ts = meta.get(_TRANSFER_SYNTAX)
    if ts is None:
        raise _NotPlain
    ts = _ascii(ts).rstrip("\0 ")
    if ts not in (EXPLICIT_LE, IMPLICIT_LE):
        raise _NotPlain  # big endian, deflated, compressed: pydicom
    explicit = ts == EXPLICIT_LE
    _check_vr_guess(buf, pos, explicit)
    pixel_at, raw = _read_elements(buf, pos, explicit=explicit, group=None)
    if pixel_at is None:
        raise _NotPlain  # no pixel data before the end (or a non-image object)
    values = {WANTED[tag][0]: _convert(WANTED[tag][1], value) for tag, value in raw.items()}
    return PlainHeader(values, ts, pixel_at, buf[pixel_at:pixel_at + 12])


def _check_vr_guess(buf: bytes, pos: int, explicit: bool) -> None:
    """pydicom corrects files whose encoding contradicts their transfer syntax: leave those to it."""
    if len(buf) < pos + 6:
        raise _NeedMore
    looks_explicit = buf[pos + 4:pos + 6] in _LONG_VRS or buf[pos + 4:pos + 6] in _SHORT_VRS
    if looks_explicit != explicit:
        raise _NotPlain


def _element_header(buf: bytes, pos: int, explicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, header length) of the element at ``pos``."""
    if len(buf) < pos + 12:
        raise _NeedMore
    group, elem = struct.unpack_from("<HH", buf, pos)
    tag = group << 16 | elem
    if not explicit or group == 0xFFFE:
        return tag, None, struct.unpack_from("<I", buf, pos + 4)[0], 8
    vr = buf[pos + 4:pos + 6]
    if vr in _LONG_VRS:
        return tag, vr, struct.unpack_from("<I", buf, pos + 8)[0], 12
    if vr in _SHORT_VRS:
        return tag, vr, struct.unpack_from("<H", buf, pos + 6)[0], 8
    raise _NotPlain  # unknown VR


def _read_elements(buf: bytes, pos: int, explicit: bool, group: int | None) -> tuple[Any, dict[int, bytes]]:
    """Walk top-level elements from ``pos``. For the meta group (``group`` 2): returns
    (position after it, {tag: value}). For the dataset: (offset of Pixel Data, {wanted tag: value})."""
    found: dict[int, bytes] = {}
    while True:
        if group is not None and len(buf) < pos + 2:
            raise _NeedMore
        if group is not None and struct.unpack_from("<H", buf, pos)[0] != group:
            return pos, found
        tag, vr, length, head = _element_header(buf, pos, explicit)
        if group is None and tag >= _FIRST_PIXEL_TAG:
            if tag != PIXEL_DATA or length == _UNDEFINED:
                raise _NotPlain  # float pixel data, or encapsulated data in a native syntax
            return pos, found
        if length == _UNDEFINED:
            if vr not in (b"SQ", None):
                raise _NotPlain  # e.g. UN of undefined length (implicit VR inside)
            pos = _skip_sequence(buf, pos + head, explicit)
            continue
        end = pos + head + length
        if group is not None or tag in WANTED:
            if len(buf) < end:
                raise _NeedMore
            if tag in found or (vr is not None and group is None and vr.decode() != WANTED[tag][1]):
                raise _NotPlain  # repeated element, or a VR other than the dictionary's
            found[tag] = buf[pos + head:end]
        pos = end


def _skip_sequence(buf: bytes, pos: int, explicit: bool) -> int:
    """Position after an undefined-length sequence starting (after its header) at ``pos``."""
    while True:
        tag, _, length, head = _element_header(buf, pos, explicit=False)
        pos += head
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _NotPlain
        if length != _UNDEFINED:
            pos += length
            continue
        while True:  # an item of undefined length: its elements up to the item delimiter
            tag, vr, length, head = _element_header(buf, pos, explicit)
            if tag == _ITEM_END:
                pos += head
                break
            if length == _UNDEFINED:
                if vr not in (b"SQ", None):
                    raise _NotPlain
                pos = _skip_sequence(buf, pos + head, explicit)
            else:
                pos += head + length


def _ascii(raw: bytes) -> str:
    return raw.decode("ascii")  # UnicodeDecodeError: not plain (character sets: pydicom)


def _convert(vr: str, raw: bytes) -> Any:
    """The value as pydicom would give it after int()/float()/str(); raises on anything odd."""
    if vr == "US":
        if len(raw) != 2:
            raise _NotPlain
        return struct.unpack("<H", raw)[0]
    text = _ascii(raw).rstrip("\0 ")
    if vr in ("DS", "IS") and not text.strip():
        return None  # pydicom's empty numeric value; the caller treats None and "" alike
    if vr == "DS":
        parts = text.split("\\")
        if any(not p.strip() for p in parts):
            raise _NotPlain
        floats = [float(p) for p in parts]
        return floats if len(floats) > 1 else floats[0]
    if "\\" in text:
        raise _NotPlain  # a multi-value where one is expected
    if vr == "IS":
        return int(text)
    return text  # CS, LO, UI
