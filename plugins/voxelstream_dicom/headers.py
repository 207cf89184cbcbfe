"""Header-only scan of DICOM files: what each slice says about itself, no pixel data read.

:func:`scan_image` parses plain little-endian files straight from their bytes
(:mod:`.rawheader`) and reads the others with pydicom (``stop_before_pixels=True``); either
way it returns plain :class:`SliceHeader` s: one for a single-frame image, one per frame for
a multi-frame object (:mod:`.multiframe` places each frame), none for a DICOM object that
is not an image (a DICOMDIR, a structured report). Colour images (RGB, YBR, palette) and
images without patient geometry (secondary captures) are described too
(``samples``/``photometric``, ``has_geometry``). Problems a user can fix raise
:class:`HeaderError` naming the file; so does any other exception a damaged header causes.
:func:`group_by_series` groups headers by SeriesInstanceUID.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .rawheader import EXPLICIT_LE, IMPLICIT_LE, PIXEL_DATA, read_plain

if TYPE_CHECKING:  # pydicom is imported where it is used: plain series never need it (0.2 s)
    import pydicom

__all__ = ["HeaderError", "PixelLayout", "SliceHeader", "claims", "scan_file", "scan_image", "group_by_series",
           "PHI_KEYWORDS"]

SUFFIXES = (".dcm", ".dicom", ".ima")

#: Patient-identifying attributes: kept (under meta["phi"]) only when the user asks for it.
PHI_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "OperatorsName",
    "PerformingPhysicianName",
    "StudyID",
    "StudyInstanceUID",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
)


class HeaderError(Exception):
    """A claimed file whose header cannot be used; ``str()`` is one line for a user."""

    def __init__(self, path: Path | str, reason: str, series_uid: str | None = None):
        super().__init__(reason)
        self.path = str(path)
        self.reason = reason
        self.series_uid = series_uid


class PixelLayout(NamedTuple):
    """Where a native (uncompressed little-endian, 16-bit) slice's pixels are in its file.

    ``element_head`` is the Pixel Data element's header as scanned (tag, VR, length): the
    reader checks it is still there before trusting ``element_offset``.
    """

    element_offset: int
    element_head: bytes
    dtype: str  # '<u2' or '<i2'
    bits_stored: int


@dataclass(frozen=True)
class SliceHeader:
    """What one single-frame image file says about itself (plain data only)."""

    path: str
    series_uid: str
    rows: int
    cols: int
    orientation: tuple[float, ...]  # ImageOrientationPatient: row cosine, column cosine
    position: tuple[float, float, float]  # ImagePositionPatient (LPS mm)
    pixel_spacing: tuple[float, float]  # DICOM order: (row spacing = y, column spacing = x)
    slope: float
    intercept: float
    bits_stored: int
    pixel_representation: int
    transfer_syntax: str
    modality: str = ""
    manufacturer: str = ""
    rescale_type: str = ""
    slice_thickness: float | None = None
    instance_number: int | None = None
    phi: dict[str, Any] = field(default_factory=dict)
    pixel_layout: PixelLayout | None = None  # None: decode with pydicom
    sop_uid: str = ""
    samples: int = 1  # SamplesPerPixel: 3 for RGB/YBR
    photometric: str = "MONOCHROME2"
    bits_allocated: int = 16
    palette_bits: int = 0  # PALETTE COLOR: bits of one lookup-table entry (8 or 16)
    has_geometry: bool = True  # False: no ImagePositionPatient/ImageOrientationPatient (a pixel image)
    frame: int | None = None  # index of this frame in a multi-frame file; None: single-frame
    frames_in_file: int = 1

    @property
    def channels(self) -> int:
        """3 for colour images (RGB, YBR_*, PALETTE COLOR), else 1."""
        return 3 if self.samples == 3 or self.photometric == "PALETTE COLOR" else 1

    @property
    def group(self) -> str:
        """The volume this header belongs to: its series, or (a multi-frame object, an image
        without geometry) its own SOP instance within the series."""
        if self.frame is None and self.has_geometry:
            return self.series_uid
        return f"{self.series_uid}/{self.sop_uid or self.path}"


def claims(path: Path) -> bool:
    """True for ``*.dcm``/``*.dicom``/``*.ima`` files and for files with the 'DICM' magic
    at byte 128 (reads at most 132 bytes)."""
    if path.name.lower().endswith(SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path) -> tuple[pydicom.Dataset, int, bytes]:
    """The dataset up to (not including) its pixel data, the file offset reached and the
    (up to) 12 bytes there."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with open(path, "rb") as fh:
        try:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
        except InvalidDicomError:
            # old files without the 128-byte preamble: accept them only if they look like images
            fh.seek(0)
            try:
                ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            except Exception:
                ds = None
            if ds is None or "SeriesInstanceUID" not in ds or "Rows" not in ds:
                raise HeaderError(path, "not a DICOM file (no DICM header and no readable image header); "
                                  "remove it from the folder or pass the series files only") from None
        except Exception as exc:  # pydicom raises many kinds on damaged headers
            raise HeaderError(path, f"damaged DICOM header ({type(exc).__name__}: {exc}); "
                              "re-export or remove the file") from None
        offset = fh.tell()
        return ds, offset, fh.read(12)


Getter = Callable[..., Any]  # ds.get, or dict.get over the fast path's values


def _floats(get: Getter, keyword: str, n: int, path: Path) -> tuple[float, ...]:
    value = get(keyword)
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        out = ()
    if len(out) != n:
        raise HeaderError(path, f"{keyword} is missing or malformed ({value!r}); a volume needs it "
                          "for geometry (is this a localizer or a secondary capture?)",
                          str(get("SeriesInstanceUID", "")) or None)
    return out


def _optional_float(get: Getter, keyword: str) -> float | None:
    try:
        value = get(keyword)
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _phi(ds: pydicom.Dataset) -> dict[str, Any]:
    from pydicom.multival import MultiValue

    out: dict[str, Any] = {}
    for kw in PHI_KEYWORDS:
        value = ds.get(kw)
        if value is None or value == "":
            continue
        if isinstance(value, MultiValue):
            out[kw] = [str(v) for v in value]
        else:
            out[kw] = str(value)
    return out


def _check_decoder(ds: pydicom.Dataset, path: Path, uid: str) -> str:
    """The transfer syntax UID, if pixel data in it can be decoded here."""
    import pydicom
    from pydicom.pixels import get_decoder

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) or pydicom.uid.ImplicitVRLittleEndian
    ts = pydicom.uid.UID(str(ts))
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise HeaderError(path, f"pixel data is encoded as {ts.name} ({ts}), which pydicom cannot decode; "
                          "convert the series to an uncompressed transfer syntax (e.g. gdcmconv --raw)", uid) from None
    if not decoder.is_available:
        options = "; ".join(getattr(decoder, "missing_dependencies", [])) or "a decoder plugin"
        raise HeaderError(path, f"pixel data is compressed as {ts.name} ({ts}) and no decoder for it is installed; "
                          f"install one ({options}) or decompress the series (e.g. gdcmconv --raw)", uid)
    return str(ts)


def _check_complete(get: Getter, path: Path, offset: int, uid: str, ts: str, frames: int = 1) -> None:
    """Raise if the file ends before its pixel data does (an interrupted copy)."""
    native = ts in (EXPLICIT_LE, IMPLICIT_LE)
    if not native:
        from pydicom.uid import UID

        if UID(ts).is_deflated:
            return  # offsets count inflated bytes: nothing to compare with the file size
    size = os.path.getsize(path)
    if offset >= size:
        raise HeaderError(path, "file ends before its pixel data: truncated (interrupted copy?); "
                          "copy it again or remove it", uid)
    if not native and UID(ts).is_compressed:
        return  # encapsulated data has no length to check cheaply; decoding will tell
    expected = int(get("Rows")) * int(get("Columns")) * int(get("SamplesPerPixel", 1)) * int(get("BitsAllocated")) * frames
    expected = (expected + 7) // 8  # BitsAllocated 1 packs eight pixels per byte
    if str(get("PhotometricInterpretation", "")).strip().upper() == "YBR_FULL_422":
        expected = expected * 2 // 3  # native 4:2:2: two samples per pixel (Y, and Cb or Cr)
    header = 12 if ts != IMPLICIT_LE else 8
    if size - offset < expected + header:
        raise HeaderError(path, f"pixel data is truncated ({size - offset - header} of {expected} bytes present); "
                          "copy the file again or remove it", uid)


def _pixel_layout(get: Getter, ts: str, offset: int, head: bytes) -> PixelLayout | None:
    """The layout of native 16-bit little-endian pixel data, after checking that the Pixel
    Data element really starts at ``offset`` with enough bytes; ``None``: use pydicom."""
    if ts not in (EXPLICIT_LE, IMPLICIT_LE) or get("BitsAllocated") != 16 or len(head) < 12:
        return None
    representation, stored = get("PixelRepresentation"), get("BitsStored")
    if representation not in (0, 1) or not isinstance(stored, int) or not 1 <= stored <= 16:
        return None  # pydicom decides what such files mean
    group, elem = struct.unpack_from("<HH", head)
    if (group << 16 | elem) != PIXEL_DATA:
        return None
    if ts == EXPLICIT_LE:
        if head[4:6] not in (b"OW", b"OB"):
            return None
        length, head = struct.unpack_from("<I", head, 8)[0], head[:12]
    else:
        length, head = struct.unpack_from("<I", head, 4)[0], head[:8]
    if length == 0xFFFFFFFF or length < int(get("Rows")) * int(get("Columns")) * 2:
        return None
    return PixelLayout(offset, head, "<i2" if representation else "<u2", stored)


def _geometry(get: Getter, path: Path) -> tuple[bool, tuple[float, ...], tuple[float, float, float]]:
    """(has geometry, ImageOrientationPatient, ImagePositionPatient). Both absent: an image
    without patient geometry (secondary capture, photograph); one malformed: an error."""
    if get("ImagePositionPatient") in (None, "") and get("ImageOrientationPatient") in (None, ""):
        return False, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0)
    orientation = _floats(get, "ImageOrientationPatient", 6, path)
    position = _floats(get, "ImagePositionPatient", 3, path)
    return True, orientation, position  # type: ignore[return-value]


def _palette_bits(get: Getter, photometric: str) -> int:
    if photometric != "PALETTE COLOR":
        return 0
    desc = get("RedPaletteColorLookupTableDescriptor")
    try:
        return 16 if int(desc[2]) > 8 else 8  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return 16


def _slice_header(
    get: Getter, path: Path, offset: int, head: bytes, transfer_syntax: Callable[[str], str], keep_phi: bool,
    phi: Callable[[], dict[str, Any]], frames_ok: bool = False,
) -> SliceHeader:
    """Check an image header's values (read by pydicom or by the fast path) and keep them.

    ``transfer_syntax(uid)`` returns the syntax after checking it can be decoded.
    ``frames_ok``: the caller places the frames of a multi-frame object (:mod:`.multiframe`).
    """
    uid = str(get("SeriesInstanceUID", "")).strip()
    if not uid:
        raise HeaderError(path, "image has no SeriesInstanceUID, so it cannot be grouped into a series; "
                          "fix the header or remove the file")
    try:
        frames = int(get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        raise HeaderError(path, f"NumberOfFrames {get('NumberOfFrames')!r} is not a number; fix the header or "
                          "remove the file", uid) from None
    if frames < 1:
        raise HeaderError(path, f"NumberOfFrames is {frames}; fix the header or remove the file", uid)
    if frames > 1 and not frames_ok:
        raise _MultiFrame()
    rows, cols, bits = int(get("Rows")), int(get("Columns")), int(get("BitsAllocated", 16))
    if rows < 1 or cols < 1 or bits not in (1, 8, 16, 32, 64):
        raise HeaderError(path, f"Rows {rows}, Columns {cols}, BitsAllocated {bits}: not an image size or sample "
                          "size; fix the header or remove the file", uid)
    samples = int(get("SamplesPerPixel", 1))
    photometric = str(get("PhotometricInterpretation", "") or "MONOCHROME2").strip().upper()
    if samples not in (1, 3) or (samples == 3) != (photometric.startswith(("RGB", "YBR"))):
        raise HeaderError(path, f"{samples} sample(s) per pixel with PhotometricInterpretation {photometric} is not "
                          "an image type this reader supports (grey, RGB, YBR or palette colour)", uid)
    ts = transfer_syntax(uid)
    _check_complete(get, path, offset, uid, ts, frames)
    has_geometry, orientation, position = _geometry(get, path)
    if has_geometry or get("PixelSpacing") not in (None, ""):
        spacing = _floats(get, "PixelSpacing", 2, path)
    else:
        spacing = (1.0, 1.0)
    instance = get("InstanceNumber")
    bits_allocated = int(get("BitsAllocated", 16))
    slope = _optional_float(get, "RescaleSlope") or 1.0
    intercept = _optional_float(get, "RescaleIntercept") or 0.0
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise HeaderError(path, f"RescaleSlope {slope} / RescaleIntercept {intercept} are not finite numbers; "
                          "fix the header or remove the file", uid)
    return SliceHeader(
        path=str(path),
        series_uid=uid,
        rows=int(get("Rows")),
        cols=int(get("Columns")),
        orientation=orientation,
        position=position,
        pixel_spacing=(spacing[0], spacing[1]),
        slope=slope,
        intercept=intercept,
        bits_stored=int(get("BitsStored", bits_allocated)),
        pixel_representation=int(get("PixelRepresentation", 0)),
        transfer_syntax=ts,
        modality=str(get("Modality", "")),
        manufacturer=str(get("Manufacturer", "")),
        rescale_type=str(get("RescaleType", "")),
        slice_thickness=_optional_float(get, "SliceThickness"),
        instance_number=int(instance) if instance not in (None, "") else None,
        phi=phi() if keep_phi else {},
        pixel_layout=_pixel_layout(get, ts, offset, head) if samples == 1 and frames == 1 and has_geometry else None,
        sop_uid=str(get("SOPInstanceUID", "")),
        samples=samples,
        photometric=photometric,
        bits_allocated=bits_allocated,
        palette_bits=_palette_bits(get, photometric),
        has_geometry=has_geometry,
        frames_in_file=frames,
    )


class _MultiFrame(Exception):
    """Raised by :func:`_slice_header` for a multi-frame object: the pydicom path places its frames."""


def _scan_plain(path: Path) -> SliceHeader | None:
    """The fast path (:mod:`.rawheader`); ``None`` when the file needs pydicom."""
    plain = read_plain(str(path))
    if plain is None or plain.values.get("Rows") is None:
        return None
    try:
        h = _slice_header(plain.values.get, path, plain.pixel_element_offset, plain.pixel_element_head,
                          lambda uid: plain.transfer_syntax, False, dict)
    except Exception:  # any problem: pydicom reads the file again and reports it exactly as before
        return None
    return None if h.photometric == "PALETTE COLOR" else h  # the lookup tables: pydicom


def scan_image(path: Path, keep_phi: bool = False) -> list[SliceHeader]:
    """The headers of one file's image frames: one for a single-frame image, one per frame
    (placed in the world by :mod:`.multiframe`) for a multi-frame object, none for DICOM
    objects that are not images. Raises :class:`HeaderError` for files that are not DICOM,
    truncated, of an unsupported kind, compressed without a decoder, with malformed
    geometry, or whose header fails in any other way (one line naming the file)."""
    try:
        with warnings.catch_warnings():  # pydicom warns about every odd value; the errors say what matters
            warnings.simplefilter("ignore")
            return _scan_image(Path(path), keep_phi)
    except HeaderError:
        raise
    except Exception as exc:  # a damaged value anywhere: this file fails, the batch goes on
        raise HeaderError(path, f"unusable header ({type(exc).__name__}: {str(exc)[:200]}); "
                          "re-export or remove the file") from None


def _scan_image(path: Path, keep_phi: bool) -> list[SliceHeader]:
    if not keep_phi:
        fast = _scan_plain(path)
        if fast is not None:
            return [fast]
    ds, offset, head = _read_header(path)
    if "Rows" not in ds:
        from pydicom.uid import UID

        sop_class = UID(str(ds.get("SOPClassUID", "")))
        if "Image Storage" in sop_class.name and offset >= os.path.getsize(path):
            raise HeaderError(path, f"{sop_class.name} file ends inside its header: truncated "
                              "(interrupted copy?); copy it again or remove it")
        return []  # a DICOMDIR, report, presentation state...: not an image

    def build(frames_ok: bool) -> SliceHeader:
        return _slice_header(ds.get, path, offset, head, lambda uid: _check_decoder(ds, path, uid), keep_phi,
                             lambda: _phi(ds), frames_ok)

    try:
        return [build(False)]
    except _MultiFrame:
        from .multiframe import frame_headers

        return frame_headers(ds, build(True))


def scan_file(path: Path, keep_phi: bool = False) -> SliceHeader | None:
    """The header of a single-frame image file (``None`` for DICOM objects that are not
    images); see :func:`scan_image`, which also takes multi-frame objects."""
    found = scan_image(path, keep_phi)
    if len(found) > 1:
        raise HeaderError(path, f"multi-frame object ({len(found)} frames): read it with scan_image")
    return found[0] if found else None


def group_by_series(headers: Iterable[SliceHeader]) -> dict[str, list[SliceHeader]]:
    """Headers grouped by SeriesInstanceUID, in first-seen order."""
    groups: dict[str, list[SliceHeader]] = {}
    for h in headers:
        groups.setdefault(h.series_uid, []).append(h)
    return groups
