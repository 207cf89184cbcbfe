"""Header-only scan of DICOM files: what each slice says about itself, no pixel data read.

:func:`scan_file` reads one file with ``stop_before_pixels=True`` and returns a plain
:class:`SliceHeader` (or ``None`` for a DICOM object that is not an image, e.g. a DICOMDIR
or a structured report). Problems a user can fix raise :class:`HeaderError` naming the file.
:func:`group_by_series` groups headers by SeriesInstanceUID.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

__all__ = ["HeaderError", "SliceHeader", "claims", "scan_file", "group_by_series", "PHI_KEYWORDS"]

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


def _read_header(path: Path) -> tuple[pydicom.Dataset, int]:
    """The dataset up to (not including) its pixel data, and the file offset reached."""
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
        return ds, fh.tell()


def _floats(ds: pydicom.Dataset, keyword: str, n: int, path: Path) -> tuple[float, ...]:
    value = ds.get(keyword)
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        out = ()
    if len(out) != n:
        raise HeaderError(path, f"{keyword} is missing or malformed ({value!r}); a volume needs it "
                          "for geometry (is this a localizer or a secondary capture?)",
                          str(ds.get("SeriesInstanceUID", "")) or None)
    return out


def _optional_float(ds: pydicom.Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _phi(ds: pydicom.Dataset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kw in PHI_KEYWORDS:
        value = ds.get(kw)
        if value is None or value == "":
            continue
        if isinstance(value, pydicom.multival.MultiValue):
            out[kw] = [str(v) for v in value]
        else:
            out[kw] = str(value)
    return out


def _check_decoder(ds: pydicom.Dataset, path: Path, uid: str) -> str:
    """The transfer syntax UID, if pixel data in it can be decoded here."""
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


def _check_complete(ds: pydicom.Dataset, path: Path, offset: int, uid: str, ts: str) -> None:
    """Raise if the file ends before its pixel data does (an interrupted copy)."""
    if pydicom.uid.UID(ts).is_deflated:
        return  # offsets count inflated bytes: nothing to compare with the file size
    size = os.path.getsize(path)
    if offset >= size:
        raise HeaderError(path, "file ends before its pixel data: truncated (interrupted copy?); "
                          "copy it again or remove it", uid)
    if pydicom.uid.UID(ts).is_compressed:
        return  # encapsulated data has no length to check cheaply; decoding will tell
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8
    header = 12 if pydicom.uid.UID(ts) != pydicom.uid.ImplicitVRLittleEndian else 8
    if size - offset < expected + header:
        raise HeaderError(path, f"pixel data is truncated ({size - offset - header} of {expected} bytes present); "
                          "copy the file again or remove it", uid)


def scan_file(path: Path, keep_phi: bool = False) -> SliceHeader | None:
    """Read one file's header; ``None`` for DICOM objects that are not images.

    Raises :class:`HeaderError` for files that are not DICOM, truncated, multi-frame,
    not single-channel, compressed without a decoder, or lacking geometry.
    """
    ds, offset = _read_header(path)
    if "Rows" not in ds:
        sop_class = pydicom.uid.UID(str(ds.get("SOPClassUID", "")))
        if "Image Storage" in sop_class.name and offset >= os.path.getsize(path):
            raise HeaderError(path, f"{sop_class.name} file ends inside its header: truncated "
                              "(interrupted copy?); copy it again or remove it")
        return None  # a DICOMDIR, report, presentation state...: not a slice
    uid = str(ds.get("SeriesInstanceUID", "")).strip()
    if not uid:
        raise HeaderError(path, "image has no SeriesInstanceUID, so it cannot be grouped into a series; "
                          "fix the header or remove the file")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise HeaderError(path, f"multi-frame image ({frames} frames, e.g. Enhanced CT) is not supported yet; "
                          "convert it to single-frame files (e.g. dcmtk's or highdicom's legacy converters)", uid)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise HeaderError(path, "colour image (SamplesPerPixel > 1) is not a volume slice this reader supports", uid)
    ts = _check_decoder(ds, path, uid)
    _check_complete(ds, path, offset, uid, ts)
    spacing = _floats(ds, "PixelSpacing", 2, path)
    instance = ds.get("InstanceNumber")
    return SliceHeader(
        path=str(path),
        series_uid=uid,
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        orientation=_floats(ds, "ImageOrientationPatient", 6, path),
        position=_floats(ds, "ImagePositionPatient", 3, path),  # type: ignore[arg-type]
        pixel_spacing=(spacing[0], spacing[1]),
        slope=_optional_float(ds, "RescaleSlope") or 1.0,
        intercept=_optional_float(ds, "RescaleIntercept") or 0.0,
        bits_stored=int(ds.get("BitsStored", ds.get("BitsAllocated", 16))),
        pixel_representation=int(ds.get("PixelRepresentation", 0)),
        transfer_syntax=ts,
        modality=str(ds.get("Modality", "")),
        manufacturer=str(ds.get("Manufacturer", "")),
        rescale_type=str(ds.get("RescaleType", "")),
        slice_thickness=_optional_float(ds, "SliceThickness"),
        instance_number=int(instance) if instance not in (None, "") else None,
        phi=_phi(ds) if keep_phi else {},
    )


def group_by_series(headers: Iterable[SliceHeader]) -> dict[str, list[SliceHeader]]:
    """Headers grouped by SeriesInstanceUID, in first-seen order."""
    groups: dict[str, list[SliceHeader]] = {}
    for h in headers:
        groups.setdefault(h.series_uid, []).append(h)
    return groups
