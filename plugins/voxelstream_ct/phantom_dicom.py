"""Writing a phantom as a CT Image Storage DICOM series with pydicom (one file per slice)."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .phantom_types import Phantom

__all__ = ["PHI_DUMMIES", "write_dicom_series"]

_TRANSFER_SYNTAXES = {
    "explicit-little": "1.2.840.10008.1.2.1",
    "implicit-little": "1.2.840.10008.1.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
}

#: Dummy identifying values written into every phantom file (tests check they never leak).
PHI_DUMMIES: dict[str, str] = {
    "PatientBirthDate": "19700101",
    "PatientAddress": "1 Phantom Street, Testville, PH4 1NT",
    "InstitutionName": "Voxelstream Phantom General Hospital",
    "InstitutionAddress": "2 Phantom Street, Testville",
    "OperatorsName": "OPERATOR^PHANTOM",
    "AccessionNumber": "ACCPHANTOM01",
    "ReferringPhysicianName": "REFERRER^PHANTOM",
    "OtherPatientIDs": "PHANTOM-OTHER-ID",
    "PatientTelephoneNumbers": "+00 000 000 0000",
}


def fingerprint(ph: Phantom) -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(ph.hu[::7, ::7, ::7]).tobytes())
    h.update(repr((ph.shape, ph.spacing, ph.origin_xyz, ph.direction.tolist())).encode())
    return h.hexdigest()


def phantom_uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["voxelstream-phantom|" + "|".join(map(str, parts))]))


def _ds(v: float) -> str:
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(float(v) + 0.0)


def write_dicom_series(phantom: Phantom, folder: Path, *, series_uid: str | None = None,
                       study_uid: str | None = None, patient_name: str = "PHANTOM^TEST",
                       patient_id: str = "PH0001", shuffle_names: bool = False, seed: int = 0,
                       rescale_intercept: float = -1024, rescale_slope: float = 1,
                       transfer_syntax: str = "explicit-little") -> str:
    """Write ``phantom`` as a CT Image Storage series, one file per slice, into ``folder``.

    Files are ``slice_0000.dcm``... in slice order, or, with ``shuffle_names``, random names
    that do not sort in slice order and shuffled InstanceNumbers (readers must order by
    ImagePositionPatient along the normal ``cross(row, col)``). ``ImagePositionPatient`` of
    slice ``k`` is ``phantom.index_to_world((k, 0, 0))``. Pixels are stored as
    ``round((hu - intercept) / slope)`` -- unsigned (PixelRepresentation 0) when the
    intercept is -1024 and all values fit, signed otherwise; the round trip is exact when
    ``slope == 1``. ``transfer_syntax`` is one of ``explicit-little`` (default),
    ``implicit-little``, ``deflated`` or ``rle`` (RLE Lossless; slow, for small series).
    Patient-identifying attributes get recognisable dummy values (see ``PHI_DUMMIES``).
    UIDs not given are derived deterministically from ``seed`` and the phantom's content.
    A left-handed ``direction`` is written faithfully; a reader then sees the z-flipped,
    right-handed equivalent volume. Returns the SeriesInstanceUID.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage

    by_uid = {v: k for k, v in _TRANSFER_SYNTAXES.items()}
    transfer_syntax = by_uid.get(str(transfer_syntax), transfer_syntax)
    if transfer_syntax not in _TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {sorted(_TRANSFER_SYNTAXES)}")
    if rescale_slope == 0:
        raise ValueError("rescale_slope must not be 0")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fp = fingerprint(phantom)
    study_uid = str(study_uid) if study_uid else phantom_uid("study", seed, patient_id, fp)
    series_uid = str(series_uid) if series_uid else phantom_uid("series", seed, patient_id, fp)
    for_uid = phantom_uid("for", study_uid, series_uid)

    def to_stored(hu: NDArray[Any]) -> NDArray[np.float64]:
        return np.rint((np.asarray(hu, dtype=np.float64) - rescale_intercept) / rescale_slope)

    ends = to_stored(np.array([phantom.hu.min(), phantom.hu.max()]))
    lo, hi = float(ends.min()), float(ends.max())
    if rescale_intercept == -1024 and lo >= 0 and hi <= 65535:
        pixrep, dtype = 0, np.dtype("<u2")
    elif lo >= -32768 and hi <= 32767:
        pixrep, dtype = 1, np.dtype("<i2")
    else:
        raise ValueError("rescaled values do not fit in 16 bits; adjust intercept/slope")

    nz, ny, nx = phantom.shape
    D = np.asarray(phantom.direction, dtype=np.float64)
    row, col = D[:, 0], D[:, 1]
    normal = np.cross(row, col)
    positions = phantom.index_to_world(np.stack([np.arange(nz), np.zeros(nz), np.zeros(nz)], 1))

    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xD1C0])
    if shuffle_names:
        while True:
            tokens = [f"{int(t):012x}" for t in rng.integers(0, 16 ** 12, size=nz)]
            names = [f"IM_{t}.dcm" for t in tokens]
            order = sorted(range(nz), key=lambda k: names[k])
            if len(set(names)) == nz and (nz < 2 or (order != list(range(nz))
                                                    and (nz < 3 or order != list(range(nz))[::-1]))):
                break
        while True:
            inst = rng.permutation(nz) + 1
            if nz < 3 or (np.any(np.diff(inst) < 0) and np.any(np.diff(inst) > 0)):
                break
    else:
        names = [f"slice_{k:04d}.dcm" for k in range(nz)]
        inst = np.arange(nz) + 1

    ts = UID(_TRANSFER_SYNTAXES[transfer_syntax])
    date, time = "20200101", "120000"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = phantom_uid("sop", series_uid, 0)
    meta.TransferSyntaxUID = ts if transfer_syntax != "rle" else UID(_TRANSFER_SYNTAXES["explicit-little"])
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "VOXELSTREAM_PH"
    tpl = Dataset()
    tpl.file_meta = meta
    tpl.SpecificCharacterSet = "ISO_IR 100"
    tpl.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    tpl.SOPClassUID = CTImageStorage
    tpl.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    tpl.StudyDate = tpl.SeriesDate = tpl.ContentDate = tpl.AcquisitionDate = date
    tpl.StudyTime = tpl.SeriesTime = tpl.ContentTime = time
    tpl.Modality = "CT"
    tpl.Manufacturer = "voxelstream"
    tpl.ManufacturerModelName = "synthetic chest phantom"
    tpl.StudyDescription = "CHEST PHANTOM"
    tpl.SeriesDescription = "voxelstream synthetic chest CT"
    tpl.BodyPartExamined = "CHEST"
    tpl.PatientName = patient_name
    tpl.PatientID = patient_id
    tpl.PatientSex = "O"
    tpl.PatientAge = "050Y"
    for key, value in PHI_DUMMIES.items():
        setattr(tpl, key, value)
    tpl.StudyInstanceUID = study_uid
    tpl.SeriesInstanceUID = series_uid
    tpl.FrameOfReferenceUID = for_uid
    tpl.PositionReferenceIndicator = ""
    tpl.StudyID = "1"
    tpl.SeriesNumber = 1
    tpl.AcquisitionNumber = 1
    tpl.InstanceNumber = 1
    tpl.PatientPosition = "HFS"
    tpl.KVP = _ds(120)
    tpl.SliceThickness = _ds(phantom.spacing[0])
    tpl.ImagePositionPatient = [_ds(v) for v in positions[0]]
    tpl.ImageOrientationPatient = [_ds(v) for v in np.concatenate([row, col])]
    tpl.SliceLocation = _ds(0.0)
    tpl.SamplesPerPixel = 1
    tpl.PhotometricInterpretation = "MONOCHROME2"
    tpl.Rows = ny
    tpl.Columns = nx
    tpl.PixelSpacing = [_ds(phantom.spacing[1]), _ds(phantom.spacing[2])]
    tpl.BitsAllocated = 16
    tpl.BitsStored = 16
    tpl.HighBit = 15
    tpl.PixelRepresentation = pixrep
    tpl.RescaleIntercept = _ds(rescale_intercept)
    tpl.RescaleSlope = _ds(rescale_slope)
    tpl.RescaleType = "HU"
    tpl.WindowCenter = _ds(-600)
    tpl.WindowWidth = _ds(1500)
    for k in range(nz):
        ds = copy.deepcopy(tpl) if transfer_syntax == "rle" else tpl
        sop_uid = phantom_uid("sop", series_uid, k)
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = int(inst[k])
        ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
        ds.SliceLocation = _ds(float(positions[k] @ normal))
        frame = to_stored(phantom.hu[k]).astype(dtype)
        if transfer_syntax == "rle":
            ds.compress(ts, frame, generate_instance_uid=False)
        else:
            ds.PixelData = frame.tobytes()
            ds["PixelData"].VR = "OW"
        ds.save_as(folder / names[k], enforce_file_format=True)
    return series_uid
