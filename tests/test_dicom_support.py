"""Builders for the DICOM variant tests: datasets made with pydicom and its encoders (and
imagecodecs for the JPEG family pydicom cannot encode), never shipped files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

ROW, COL = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)


def base_dataset(rows: int, cols: int, *, series_uid: str, bits: int = 16, signed: bool = False,
                 samples: int = 1, photometric: str = "MONOCHROME2", sop_class: str = pydicom.uid.CTImageStorage,
                 modality: str = "CT", ts: str = ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(ts)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "VARIANT^TEST"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(signed)
    return ds


def place(ds: Dataset, position: Sequence[float], spacing=(0.8, 0.6), orientation=ROW + COL,
          thickness: float = 2.5) -> Dataset:
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = thickness
    return ds


def set_pixels(ds: Dataset, arr: np.ndarray, encoding: str) -> Dataset:
    """Store ``arr`` (one frame, or (frames, rows, cols[, 3])) in ``ds`` with ``encoding``:
    a transfer syntax keyword; pydicom's own encoders where it has them, imagecodecs for
    the JPEG family, byte-swapped data for big endian, pydicom's writer for deflate."""
    import imagecodecs

    frames = arr if arr.ndim == (4 if ds.SamplesPerPixel == 3 else 3) else arr[None]
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    native = {"ExplicitVRLittleEndian", "ImplicitVRLittleEndian", "DeflatedExplicitVRLittleEndian"}
    if encoding in native:
        ds.file_meta.TransferSyntaxUID = getattr(pydicom.uid, encoding)
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
        ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
        return ds
    if encoding == "ExplicitVRBigEndian":
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
        ds.PixelData = frames.astype(frames.dtype.newbyteorder(">")).tobytes()
        ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
        return ds
    ts = getattr(pydicom.uid, encoding)
    if encoding in ("RLELossless", "JPEG2000Lossless", "JPEG2000"):
        kw = {"j2k_cr": [8]} if encoding == "JPEG2000" else {}
        ds.compress(ts, np.ascontiguousarray(arr), generate_instance_uid=False, **kw)
        return ds
    bits = int(ds.BitsStored)
    enc: dict[str, Callable[[np.ndarray], bytes]] = {
        "JPEGBaseline8Bit": lambda f: imagecodecs.jpeg8_encode(f, level=92),
        "JPEGExtended12Bit": lambda f: imagecodecs.jpeg8_encode(f, level=92, bitspersample=12),
        "JPEGLosslessSV1": lambda f: imagecodecs.ljpeg_encode(f, bitspersample=bits),
        "JPEGLossless": lambda f: imagecodecs.jpeg8_encode(f, lossless=True, predictor=7, bitspersample=bits),
        "JPEGLSLossless": lambda f: imagecodecs.jpegls_encode(f),
        "JPEGLSNearLossless": lambda f: imagecodecs.jpegls_encode(f, level=2),
        "HTJ2KLossless": lambda f: imagecodecs.htj2k_encode(f),
        "HTJ2K": lambda f: imagecodecs.htj2k_encode(f),  # a lossless codestream is valid under either syntax
    }
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = encapsulate([enc[encoding](np.ascontiguousarray(f)) for f in frames])
    ds["PixelData"].VR = "OB"
    return ds


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    big = ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRBigEndian
    implicit = ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True, little_endian=not big, implicit_vr=implicit)
    return path


def item(**values) -> Dataset:
    d = Dataset()
    for k, v in values.items():
        setattr(d, k, v)
    return d


def seq(*items: Dataset) -> DicomSequence:
    return DicomSequence(list(items))


def pydicom_values(path: Path) -> np.ndarray:
    """What pydicom decodes (palette expanded), rescaled as the reader rescales grey images."""
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        return pydicom.pixels.apply_color_lut(arr, ds)
    if ds.SamplesPerPixel == 3:
        return arr
    return arr.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
