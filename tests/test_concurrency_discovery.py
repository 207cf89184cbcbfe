"""Discovery of thousands of DICOM files in parallel (threads, or worker processes) finds
exactly what the serial scan finds (series, headers, failures), in the same order."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from voxelstream.parallel import map_in_processes


def _write_series(folder, n_series=3, n_slices=400):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    px = np.zeros((8, 8), np.int16).tobytes()
    for s in range(n_series):
        series = generate_uid()
        for k in range(n_slices):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, generate_uid()
            ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, float(k)], [1.0, 0, 0, 0, 1.0, 0]
            ds.PixelSpacing, ds.SliceThickness, ds.InstanceNumber = [0.7, 0.7], 1.0, k + 1
            ds.Rows = ds.Columns = 8
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit, ds.PixelRepresentation = 15, 1
            ds.PixelData = px
            ds.save_as(str(folder / f"s{s}_{k:04d}.dcm"), enforce_file_format=True)


def _square(x: int) -> int:
    return x * x


def test_map_in_processes_keeps_order_and_falls_back_below_the_threshold():
    items = list(range(3000))
    assert map_in_processes(_square, items, workers=2) == [x * x for x in items]
    assert map_in_processes(_square, items[:10], workers=2) == [x * x for x in items[:10]]


def test_parallel_dicom_discovery_equals_the_serial_scan(tmp_path):
    pytest.importorskip("voxelstream_dicom")
    from voxelstream_dicom.plugin import _scan, _scan_one

    _write_series(tmp_path)
    (tmp_path / "broken.dcm").write_bytes(b"DICM" * 10)
    files = sorted(tmp_path.iterdir())
    scan = functools.partial(_scan_one, keep_phi=False)
    reference = [scan(f) for f in files]  # one file after the other, in this thread
    assert sum(len(found) for found, _ in reference) == 1200
    assert map_in_processes(scan, files, workers=2) == reference  # worker processes
    headers, failed, skipped = _scan(files, False)  # the reader's own (threads from 1000 files)
    assert headers == [h for found, _ in reference for h in found]
    assert [(e.path, e.reason) for e in failed] == [err[:2] for _, err in reference if err]
    assert skipped == sum(1 for found, err in reference if not found and not err)
