"""The ``dicom`` reader: geometry and values against SimpleITK, ordering, laziness, errors, PHI."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

import voxelstream
from voxelstream import ReadError, Source, SourceError
from voxelstream.cli.main import main as cli_main
from voxelstream.privacy import salted_hash
from voxelstream_dicom import pixels

# -- a small, deliberately flexible series writer (also for broken series) ---------------

PHI = {
    "PatientName": "DOE^JANE^TESTPHI",
    "PatientID": "PID-TESTPHI-0042",
    "PatientBirthDate": "19451231",
    "PatientAddress": "42 Secret Lane TESTPHI",
    "AccessionNumber": "ACC-TESTPHI-7",
    "InstitutionName": "Hospital TESTPHI",
    "ReferringPhysicianName": "REFERRER^TESTPHI",
    "OperatorsName": "OPERATOR^TESTPHI",
}


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """An oblique orthonormal matrix (columns: row cosine, column cosine, normal)."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def write_series(
    folder: Path,
    stored: np.ndarray,
    *,
    spacing: Sequence[float] = (2.0, 0.75, 0.5),
    origin: Sequence[float] = (-40.0, -30.0, -100.0),
    direction: np.ndarray | None = None,
    slopes: Sequence[float] | None = None,
    intercepts: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    instance_numbers: Sequence[int] | None = None,
    uid: str | None = None,
    bits_stored: int = 16,
    modality: str = "CT",
) -> tuple[str, list[Path]]:
    """Write ``stored`` (z, y, x; int16 or uint16) as one CT series; slice k sits at
    ``origin + k * spacing_z * normal``. Returns the SeriesInstanceUID and the paths in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    nz = stored.shape[0]
    uid = uid or generate_uid()
    names = names or [f"slice{k:03d}.dcm" for k in range(nz)]
    instance_numbers = instance_numbers or list(range(1, nz + 1))
    slopes = slopes or [1.0] * nz
    intercepts = intercepts or [-1024.0] * nz
    paths = []
    for k in range(nz):
        pos = np.asarray(origin, dtype=float) + k * spacing[0] * d[:, 2]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.Manufacturer = "TestVendor"
        for key, value in PHI.items():
            setattr(ds, key, value)
        ds.StudyInstanceUID = "1.2.3.4"
        ds.SeriesInstanceUID = uid
        ds.InstanceNumber = int(instance_numbers[k])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([d[:, 0], d[:, 1]])]
        ds.PixelSpacing = [f"{spacing[1]:g}", f"{spacing[2]:g}"]
        ds.SliceThickness = f"{spacing[0]:g}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
        ds.RescaleSlope = f"{slopes[k]:g}"
        ds.RescaleIntercept = f"{intercepts[k]:g}"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return uid, paths


def ramp(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """int16 stored values: random, and slice k offset by 10*k so order is visible."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1500, size=shape).astype(np.int16)
    return data + (10 * np.arange(shape[0], dtype=np.int16))[:, None, None]


def sitk_read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_matches_sitk(vol: voxelstream.Volume, img: sitk.Image, *, n_points: int = 200) -> None:
    """Spacing, index->world on many (fractional) points, and every voxel value."""
    assert np.allclose(vol.spacing, img.GetSpacing()[::-1], atol=1e-5)
    shape = np.asarray(vol.spatial_shape)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T
    pts = np.random.default_rng(1).uniform(-0.5, 1, size=(n_points, 3)) * (shape - 1)
    pts = np.concatenate([corners, pts])
    ours = vol.index_to_world(pts)
    theirs = np.array([img.TransformContinuousIndexToPhysicalPoint([float(v) for v in p[::-1]]) for p in pts])
    assert np.allclose(ours, theirs, atol=1e-4)
    assert np.allclose(vol.data[0].compute(), sitk.GetArrayFromImage(img), atol=1e-3)


def error_text(exc: pytest.ExceptionInfo) -> str:
    return str(exc.value)


# -- geometry and values --------------------------------------------------------------------


def test_oblique_anisotropic_series_matches_simpleitk(tmp_path):
    d = rotation(0.3, -0.2, 0.5)
    stored = ramp((9, 12, 16))
    names = [f"{n}.dcm" for n in np.random.default_rng(3).permutation(9)]  # name order != slice order
    uid, _ = write_series(tmp_path / "s", stored, spacing=(2.5, 0.7, 0.9), origin=(10.5, -20.25, 33.0),
                          direction=d, names=names)
    vol = voxelstream.read(tmp_path / "s")
    img = sitk_read(tmp_path / "s")
    assert_matches_sitk(vol, img)
    assert np.allclose(vol.direction, np.asarray(img.GetDirection()).reshape(3, 3), atol=1e-6)
    assert vol.meta["series_uid"] == uid and vol.meta["n_slices"] == 9


def test_slices_ordered_by_position_not_name_or_instance_number(tmp_path):
    stored = ramp((7, 4, 5), seed=2)
    rng = np.random.default_rng(5)
    names = [f"IM{n:02d}.dcm" for n in rng.permutation(7)]
    instance_numbers = list(rng.permutation(7) + 1)
    # the normal points to -z world: positions decrease with the slice index
    d = np.diag([1.0, -1.0, -1.0])
    write_series(tmp_path / "s", stored, direction=d, names=names, instance_numbers=instance_numbers,
                 origin=(0.0, 0.0, 50.0), spacing=(3.0, 1.0, 1.0))
    vol = voxelstream.read(tmp_path / "s")
    assert np.array_equal(vol.data[0].compute(), stored.astype(np.int32) - 1024)
    assert np.allclose(vol.index_to_world([0, 0, 0]), (0.0, 0.0, 50.0))  # LPS (x, y, z)
    assert np.allclose(vol.origin, (50.0, 0.0, 0.0))  # the same point in array order (z, y, x)
    # the z index axis walks along the normal cross(row, col) = (0, 0, -1)
    assert np.allclose(vol.index_to_world([6, 0, 0]), (0.0, 0.0, 50.0 - 18.0))


def test_rescale_applied_per_slice_and_dtype_follows_the_range(tmp_path):
    stored = ramp((4, 3, 3))
    slopes, intercepts = [1.0, 2.0, 1.0, 3.0], [-1024.0, -2000.0, 5.0, 0.0]
    write_series(tmp_path / "int", stored, slopes=slopes, intercepts=intercepts, bits_stored=12)
    vol = voxelstream.read(tmp_path / "int")
    expected = stored * np.array(slopes)[:, None, None] + np.array(intercepts)[:, None, None]
    assert vol.data.dtype == np.int16  # 12 bits signed, slope <= 3: inside int16
    assert np.array_equal(vol.data[0].compute(), expected)

    write_series(tmp_path / "float", stored, slopes=[0.5, 1.0, 1.0, 1.0], intercepts=[-1024.5] * 4)
    vol = voxelstream.read(tmp_path / "float")
    assert vol.data.dtype == np.float32
    assert np.allclose(vol.data[0].compute()[0], stored[0] * 0.5 - 1024.5)

    # 16 stored bits, unsigned, with intercept -1024 can reach 64511: does not fit int16,
    # so a non-HU modality gets float32 ...
    write_series(tmp_path / "wide", stored.astype(np.uint16), modality="OT")
    assert voxelstream.read(tmp_path / "wide").data.dtype == np.float32
    # ... while CT keeps HU as int16, saturating the (physically impossible) values past it
    wide = stored.astype(np.uint16)
    wide[0, 0, 0] = 65000  # 65000 - 1024 = 63976 HU: past int16
    write_series(tmp_path / "ct", wide)
    vol = voxelstream.read(tmp_path / "ct")
    assert vol.data.dtype == np.int16
    expected = np.clip(wide.astype(np.int32) - 1024, -32768, 32767)
    assert np.array_equal(vol.data[0].compute(), expected) and expected[0, 0, 0] == 32767


def test_meta_describes_the_series_without_phi(tmp_path):
    write_series(tmp_path / "s", ramp((3, 4, 4)))
    meta = voxelstream.read(tmp_path / "s").meta
    assert meta["modality"] == "CT" and meta["units"] == "HU" and meta["reader"] == "dicom"
    assert meta["manufacturer"] == "TestVendor" and meta["slice_thickness"] == 2.0 and meta["n_slices"] == 3
    # the origin without the path (folders carry identifiers): a salted hash, file count and size
    files = sorted((tmp_path / "s").iterdir())
    assert "source" not in meta and str(tmp_path) not in repr(meta)
    assert meta["origin"] == {"reader": "dicom", "source_hash": salted_hash(str(tmp_path / "s")),
                              "files": 3, "bytes": sum(f.stat().st_size for f in files)}
    assert "phi" not in meta and not any(v in repr(meta) for v in PHI.values())
    kept_meta = voxelstream.read(tmp_path / "s", keep_phi=True).meta
    kept = kept_meta["phi"]
    assert kept["PatientName"] == PHI["PatientName"] and kept["PatientID"] == PHI["PatientID"]
    assert Path(kept_meta["source"]) == tmp_path / "s" == Path(kept_meta["origin"]["source"])


def test_single_slice_series_uses_slice_thickness(tmp_path):
    write_series(tmp_path / "s", ramp((1, 4, 4)), spacing=(5.0, 1.0, 1.0))
    vol = voxelstream.read(tmp_path / "s")
    assert vol.shape == (1, 1, 4, 4) and vol.spacing[0] == 5.0


@pytest.mark.parametrize("syntax", ["implicit-little", "deflated", "rle"])
def test_other_transfer_syntaxes_decode(tmp_path, syntax):
    phantom = pytest.importorskip("voxelstream_ct.phantom", reason="the ct plugin's phantom is not installed")
    ph = phantom.make_ct_phantom((4, 64, 64), (2.5, 0.8, 0.8), seed=3, n_nodules=0, n_distractors=0)
    phantom.write_dicom_series(ph, tmp_path, transfer_syntax=syntax)
    assert np.array_equal(voxelstream.read(tmp_path).data[0].compute(), ph.hu)


# -- laziness ---------------------------------------------------------------------------------


def test_volume_is_lazy_and_streamed_in_slabs(tmp_path, monkeypatch):
    n = 2 * pixels.SLAB_SLICES + 5
    stored = ramp((n, 6, 5))
    write_series(tmp_path / "s", stored)
    calls: list[str] = []
    real = pixels.read_slice

    def counting(path, *args):
        calls.append(path)
        return real(path, *args)

    monkeypatch.setattr(pixels, "read_slice", counting)
    (src,) = [s for s in voxelstream.discover([tmp_path / "s"]) if isinstance(s, Source)]
    vol = src.open()
    assert calls == []  # building the volume read no pixel data
    assert vol.data.numblocks[1] == 3  # one task per slab of slices
    first = vol.data[0, :2].compute()
    assert len(calls) == pixels.SLAB_SLICES  # one slab, not the volume
    assert np.array_equal(first, stored[:2] - 1024)
    # dask.distributed workers rebuild volumes from a pickled Source.open
    again = pickle.loads(pickle.dumps(src.open))()
    assert np.array_equal(again.data[0].compute(), stored - 1024)


# -- real data --------------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("case", ["LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"])
def test_lidc_slabs_match_simpleitk(shared_data, case):
    (folder,) = {p.parent for p in (shared_data / "lidc-idri-slabs" / case).rglob("*.dcm")}
    vol = voxelstream.read(folder)
    img = sitk_read(folder)
    assert_matches_sitk(vol, img)
    assert vol.meta["units"] == "HU"
    uid = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID
    (src,) = list(voxelstream.discover([shared_data / "lidc-idri-slabs" / case]))
    assert src.volume_id == uid == vol.meta["series_uid"]


# -- bad inputs -------------------------------------------------------------------------------


def test_two_series_in_one_folder(tmp_path):
    uid_a, _ = write_series(tmp_path, ramp((3, 4, 4)), names=[f"a{k}.dcm" for k in range(3)])
    uid_b, _ = write_series(tmp_path, ramp((4, 4, 4)), names=[f"b{k}.dcm" for k in range(4)], origin=(0, 0, 0))
    found = list(voxelstream.discover([tmp_path]))
    assert sorted(s.volume_id for s in found if isinstance(s, Source)) == sorted([uid_a, uid_b])
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path)
    assert uid_a in error_text(exc) and uid_b in error_text(exc)
    assert voxelstream.read(tmp_path, volume_id=uid_b).shape == (1, 4, 4, 4)


def test_missing_slice_names_the_gap(tmp_path):
    _, paths = write_series(tmp_path / "s", ramp((6, 4, 4)), spacing=(2.0, 1.0, 1.0))
    paths[3].unlink()
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "s")
    msg = error_text(exc)
    assert "slice002.dcm" in msg and "slice004.dcm" in msg and "gap of 4.000 mm" in msg and "missing" in msg


def test_duplicate_positions(tmp_path):
    uid, _ = write_series(tmp_path / "s", ramp((3, 4, 4)), names=["a0.dcm", "a1.dcm", "a2.dcm"])
    write_series(tmp_path / "s", ramp((1, 4, 4)), names=["dup.dcm"], uid=uid)
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "s")
    assert "duplicate slice position" in error_text(exc) and "dup.dcm" in error_text(exc) and uid in error_text(exc)


def test_mixed_slice_sizes(tmp_path):
    uid, _ = write_series(tmp_path / "s", ramp((3, 4, 4)))
    write_series(tmp_path / "s", ramp((1, 4, 6)), names=["wide.dcm"], uid=uid, origin=(-40.0, -30.0, -90.0))
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "s")
    assert "mixed slice sizes" in error_text(exc) and "wide.dcm" in error_text(exc)


def test_mixed_orientations(tmp_path):
    uid, _ = write_series(tmp_path / "s", ramp((3, 4, 4)))
    write_series(tmp_path / "s", ramp((1, 4, 4)), names=["tilted.dcm"], uid=uid, direction=rotation(0.2, 0, 0))
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "s")
    assert "mixed orientations" in error_text(exc) and "tilted.dcm" in error_text(exc)


def test_sheared_stack_is_refused(tmp_path):
    _, paths = write_series(tmp_path / "s", ramp((4, 4, 4)), spacing=(2.0, 1.0, 1.0))
    for k, path in enumerate(paths):  # each slice shifted 0.5 mm along y: a gantry tilt
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x:.6f}", f"{y + 0.5 * k:.6f}", f"{z:.6f}"]
        ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "s")
    assert "not stacked along their normal" in error_text(exc) and "slice003.dcm" in error_text(exc)


def _unavailable_syntax() -> pydicom.uid.UID:
    from pydicom.pixels import get_decoder

    for ts in (pydicom.uid.JPEGLSLossless, pydicom.uid.JPEG2000Lossless, pydicom.uid.JPEGLosslessSV1):
        if not get_decoder(ts).is_available:
            return ts
    pytest.skip("every compressed transfer syntax tried has a decoder installed here")


def test_compressed_without_decoder_is_refused_at_scan_time(tmp_path):
    ts = _unavailable_syntax()
    _, paths = write_series(tmp_path / "s", ramp((3, 4, 4)))
    ds = pydicom.dcmread(paths[1])
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8 not really compressed \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[1], enforce_file_format=True)
    found = list(voxelstream.discover([tmp_path / "s"]))
    assert all(isinstance(f, SourceError) for f in found)  # scan time: no Source to fail later
    assert "slice001.dcm" in found[0].reason and ts.name in found[0].reason and "decoder" in found[0].reason


@pytest.mark.parametrize("keep_bytes", [600, -100])
def test_truncated_file(tmp_path, keep_bytes):
    _, paths = write_series(tmp_path / "s", ramp((3, 8, 8)))
    paths[2].write_bytes(paths[2].read_bytes()[:keep_bytes])
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "s")
    assert "slice002.dcm" in error_text(exc) and "truncated" in error_text(exc)


def test_multiframe_file_is_refused(tmp_path):
    _, paths = write_series(tmp_path / "s", ramp((2, 4, 4)))
    ds = pydicom.dcmread(paths[0])
    ds.NumberOfFrames = 2
    ds.PixelData = ramp((2, 4, 4)).tobytes()
    ds.save_as(paths[0], enforce_file_format=True)
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "s")
    assert "slice000.dcm" in error_text(exc) and "multi-frame" in error_text(exc)


def test_not_dicom_and_not_an_image(tmp_path):
    (tmp_path / "fake.dcm").write_text("this is a note, not a DICOM file\n" * 10)
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "fake.dcm")
    assert "fake.dcm" in error_text(exc) and "not a DICOM file" in error_text(exc)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "notes.txt")
    assert "notes.txt" in error_text(exc) and "not an image file" in error_text(exc)


def test_empty_folder_and_nonexistent_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReadError, match="empty"):
        voxelstream.read(tmp_path / "empty")
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path / "nowhere")
    assert "nowhere" in error_text(exc) and "no such file" in error_text(exc)


def test_folder_of_non_image_dicom_objects(tmp_path):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = pydicom.uid.BasicTextSRStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with pytest.raises(ReadError) as exc:
        voxelstream.read(tmp_path)
    assert str(tmp_path) in error_text(exc) and "no image among them" in error_text(exc)


def test_dicom_magic_claims_files_without_suffix(tmp_path):
    _, paths = write_series(tmp_path / "s", ramp((3, 4, 4)))
    for p in paths:
        p.rename(p.with_suffix(""))
    assert voxelstream.read(tmp_path / "s").shape == (1, 3, 4, 4)


# -- fast paths: headers parsed from bytes, native pixels read directly; pydicom is the reference --


def _resave(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


def _nested_sequences(ds: Dataset) -> None:
    """Sequences of undefined and defined length, nested, before the wanted elements, and a private tag."""
    inner = Dataset()
    inner.CodeValue = "X1"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    item.ConceptNameCodeSequence = [inner]
    item.is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = [item]
    ds["ReferencedImageSequence"].is_undefined_length = True
    other = Dataset()
    other.CodeMeaning = "defined length"
    ds.AnatomicRegionSequence = [other]
    ds.add_new(0x00091010, "LO", "private value")


def _pydicom_scan(paths: Sequence[Path], monkeypatch, keep_phi: bool = False) -> list:
    from voxelstream_dicom import headers

    with monkeypatch.context() as m:
        m.setattr(headers, "_scan_plain", lambda path: None)
        return [headers.scan_file(p, keep_phi=keep_phi) for p in paths]


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian])
def test_fast_header_scan_equals_pydicom(tmp_path, monkeypatch, syntax):
    from voxelstream_dicom import headers

    _, paths = write_series(tmp_path / "s", ramp((4, 6, 5)), slopes=[1, 2, 1, 1], intercepts=[-1024, 0, 5, -1])

    def change(ds: Dataset) -> None:
        ds.file_meta.TransferSyntaxUID = syntax
        _nested_sequences(ds)

    for p in paths:
        _resave(p, change)
    _resave(paths[1], lambda ds: setattr(ds, "SliceThickness", None))  # empty values
    _resave(paths[2], lambda ds: setattr(ds, "InstanceNumber", None))
    assert all(headers._scan_plain(p) is not None for p in paths)  # the fast path took them all
    fast = [headers.scan_file(p) for p in paths]
    assert fast == _pydicom_scan(paths, monkeypatch)
    assert fast[1].slice_thickness is None and fast[2].instance_number is None
    assert all(h.pixel_layout is not None for h in fast)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about a decimal IS value on purpose
def test_files_the_fast_scan_leaves_to_pydicom_read_as_before(tmp_path, monkeypatch):
    from voxelstream_dicom import headers

    _, paths = write_series(tmp_path / "s", ramp((3, 4, 4)))

    def non_ascii(ds: Dataset) -> None:
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.Manufacturer = "Müller Medizintechnik"

    _resave(paths[0], non_ascii)
    _resave(paths[1], lambda ds: setattr(ds, "NumberOfFrames", "1.0"))  # IS written as a decimal
    ds = pydicom.dcmread(paths[2])
    ds.preamble = None
    ds.save_as(paths[2], enforce_file_format=False)  # no preamble, no 'DICM'
    assert [headers._scan_plain(p) for p in paths] == [None, None, None]
    assert [headers.scan_file(p) for p in paths] == _pydicom_scan(paths, monkeypatch)
    assert headers.scan_file(paths[0]).manufacturer == "Müller Medizintechnik"
    assert voxelstream.read(tmp_path / "s").shape == (1, 3, 4, 4)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, pydicom.uid.ImplicitVRLittleEndian])
@pytest.mark.parametrize("signed,bits", [(True, 12), (False, 12), (True, 16), (False, 16)])
def test_native_pixels_equal_pydicom_and_the_stored_bits(tmp_path, monkeypatch, syntax, signed, bits):
    """Values with junk in the unused high bits: pydicom masks/sign-extends them, and so must we."""
    rng = np.random.default_rng(bits + signed)
    shape = (3, 7, 9)
    if signed:
        values = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=shape)
    else:
        values = rng.integers(0, 2**bits, size=shape)
    junk = rng.integers(0, 2 ** (16 - bits), size=shape) << bits if bits < 16 else 0
    raw = ((values & (2**bits - 1)) | junk).astype(np.uint16)
    stored = raw.view(np.int16) if signed else raw
    _, paths = write_series(tmp_path / "s", stored, bits_stored=bits, intercepts=[-1024.0] * 3)
    for p in paths:
        _resave(p, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", syntax))
    expected = np.clip(values - 1024, -32768, 32767)  # HU as int16, saturating (see series.output_dtype)
    reference = np.stack([pydicom.dcmread(p).pixel_array.astype(np.int32) - 1024 for p in paths])
    assert np.array_equal(np.clip(reference, -32768, 32767), expected)  # the hand computation agrees with pydicom
    (src,) = voxelstream.discover([tmp_path / "s"])
    vol = src.open()

    def no_pydicom(*args, **kwargs):
        raise AssertionError("pixel data decoded by pydicom, not read natively")

    monkeypatch.setattr(pydicom, "dcmread", no_pydicom)
    assert np.array_equal(vol.data[0].compute(), expected)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about an over-long LO value on purpose
def test_native_read_notices_a_file_rewritten_after_the_scan(tmp_path):
    stored = ramp((3, 6, 5))
    _, paths = write_series(tmp_path / "s", stored)
    vol = voxelstream.read(tmp_path / "s")
    changed = stored[1] + 7

    def rewrite(ds: Dataset) -> None:
        ds.StudyDescription = "a longer header moves the pixel data " * 3
        ds.PixelData = changed.tobytes()

    _resave(paths[1], rewrite)
    got = vol.data[0].compute()
    assert np.array_equal(got[1], changed - 1024) and np.array_equal(got[[0, 2]], stored[[0, 2]] - 1024)


# -- CLI ingest: PHI and failure reporting ----------------------------------------------------


def _store_bytes(store: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file())


def _phantom_series(folder: Path) -> list[str]:
    """A phantom CT series written by the ct plugin; returns the PHI values it wrote."""
    phantom = pytest.importorskip("voxelstream_ct.phantom", reason="the ct plugin's phantom is not installed")
    ph = phantom.make_ct_phantom((6, 64, 64), (2.5, 0.8, 0.8), seed=3, n_nodules=0, n_distractors=0)
    phantom.write_dicom_series(ph, folder, shuffle_names=True, patient_name="PHANTOM^SECRET",
                               patient_id="SECRET-PID-77")
    return ["PHANTOM^SECRET", "SECRET-PID-77", *phantom.PHI_DUMMIES.values()]


def _local_series(folder: Path) -> list[str]:
    write_series(folder, ramp((4, 8, 8)))
    return list(PHI.values())


@pytest.mark.parametrize("make", [_local_series, _phantom_series], ids=["local", "phantom"])
def test_ingest_keeps_phi_out_of_the_store_unless_asked(tmp_path, make, capsys):
    values = make(tmp_path / "series")
    assert cli_main(["ingest", str(tmp_path / "series"), "--store", str(tmp_path / "plain.zarr")]) == 0
    stored = _store_bytes(tmp_path / "plain.zarr")
    leaked = [v for v in values if v.encode() in stored]
    assert leaked == []
    assert cli_main(["ingest", str(tmp_path / "series"), "--store", str(tmp_path / "phi.zarr"), "--keep-phi"]) == 0
    stored = _store_bytes(tmp_path / "phi.zarr")
    assert [v for v in values if v.encode() not in stored] == []


def test_ingest_reports_a_bad_input_and_finishes_the_others(tmp_path, capsys):
    uid, _ = write_series(tmp_path / "good", ramp((5, 6, 7)))
    bad_uid, paths = write_series(tmp_path / "bad", ramp((4, 6, 7)))
    paths[2].write_bytes(paths[2].read_bytes()[:-50])
    status = cli_main(["ingest", str(tmp_path / "bad"), str(tmp_path / "good"), "--store", str(tmp_path / "s.zarr")])
    out, err = capsys.readouterr()
    assert status == 1
    assert out.strip().splitlines() == [f"{uid}\t1x5x6x7"]
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'bad'}: series {bad_uid}: slice002.dcm: ")
    assert "truncated" in line
    assert "Traceback" not in err
    assert voxelstream.open_store(tmp_path / "s.zarr").volume_ids() == [uid]
