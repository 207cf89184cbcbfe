"""Tests for the synthetic chest-CT phantom (plugins/voxelstream_ct/phantom.py).

The checks are independent of the phantom code: geometry and pixels are read back with
SimpleITK/GDCM and pydicom, and anatomy is checked through Hounsfield units at world
positions converted by SimpleITK.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest

sitk = pytest.importorskip("SimpleITK")

from voxelstream_ct.phantom import (  # noqa: E402
    Nodule,
    Phantom,
    generate_dataset,
    make_ct_phantom,
    write_dicom_series,
)

SOFT_TISSUE = (-150.0, 250.0)  # HU window for a solid nodule's centre voxel


def _rotation(deg_z: float, deg_x: float, deg_y: float) -> np.ndarray:
    a, b, c = (math.radians(v) for v in (deg_z, deg_x, deg_y))
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    ry = np.array([[math.cos(c), 0, math.sin(c)], [0, 1, 0], [-math.sin(c), 0, math.cos(c)]])
    return rz @ rx @ ry


OBLIQUE = _rotation(12.0, 9.0, -7.0)
SHAPE = (40, 96, 112)
SPACING = (2.0, 0.9, 0.75)  # anisotropic, (z, y, x)
ORIGIN = (-40.0, -60.0, -200.0)


@pytest.fixture(scope="module")
def oblique() -> Phantom:
    return make_ct_phantom(SHAPE, SPACING, seed=5, direction=OBLIQUE, origin_xyz=ORIGIN,
                           n_nodules=2, nodule_diameters_mm=(4.0, 12.0), n_distractors=2)


def _read_series(folder: Path):
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(names)
    return reader.Execute(), names


@pytest.fixture(scope="module")
def oblique_series(oblique: Phantom, tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("oblique") / "series"
    uid = write_dicom_series(oblique, folder, shuffle_names=True, seed=3)
    return folder, uid


def _hu_at(img, arr: np.ndarray, xyz) -> float:
    i, j, k = img.TransformPhysicalPointToIndex([float(v) for v in xyz])
    return float(arr[k, j, i])


def _shell_hu(img, arr: np.ndarray, centre, radius: float) -> np.ndarray:
    """HU at 26 points on a sphere (cube directions) around ``centre``; None outside."""
    out = []
    size = img.GetSize()
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                if dx == dy == dz == 0:
                    continue
                d = np.array([dx, dy, dz], float)
                p = np.asarray(centre) + radius * d / np.linalg.norm(d)
                idx = img.TransformPhysicalPointToIndex([float(v) for v in p])
                assert all(0 <= idx[a] < size[a] for a in range(3)), "shell leaves the volume"
                out.append(arr[idx[2], idx[1], idx[0]])
    return np.asarray(out, dtype=float)


# ----------------------------------------------------------------------------- phantom


def test_phantom_basic_properties(oblique: Phantom) -> None:
    assert oblique.hu.dtype == np.int16 and oblique.hu.shape == SHAPE
    assert oblique.hu.min() >= -1024 and oblique.hu.max() <= 3071
    assert oblique.spacing == SPACING and oblique.origin_xyz == ORIGIN
    np.testing.assert_allclose(oblique.direction, OBLIQUE)
    assert len(oblique.nodules) == 2 and len(oblique.distractors) == 2
    for n in oblique.nodules:
        assert 4.0 <= n.diameter_mm <= 12.0
    hist = oblique.hu.ravel()
    assert (hist < -900).mean() > 0.05  # air outside the body
    assert ((hist > -950) & (hist < -700)).mean() > 0.05  # lung parenchyma
    assert ((hist > -30) & (hist < 110)).mean() > 0.2  # soft tissue
    assert (hist > 500).any()  # bone
    # noise: neighbouring air voxels differ by about sqrt(2) * 20 HU
    corner = oblique.hu[:, :4, :4].astype(float)
    assert 10 < np.std(np.diff(corner, axis=2)) < 45


def test_index_to_world_matches_simpleitk(oblique: Phantom) -> None:
    img = sitk.Image([SHAPE[2], SHAPE[1], SHAPE[0]], sitk.sitkInt16)
    img.SetSpacing(SPACING[::-1])
    img.SetOrigin(ORIGIN)
    img.SetDirection(OBLIQUE.ravel().tolist())
    rng = np.random.default_rng(0)
    zyx = rng.uniform(-2, 50, size=(20, 3))
    ours = oblique.index_to_world(zyx)
    theirs = np.array([img.TransformContinuousIndexToPhysicalPoint(p[::-1].tolist())
                       for p in zyx])
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    np.testing.assert_allclose(oblique.world_to_index(ours), zyx, atol=1e-9)
    aff = oblique.affine
    np.testing.assert_allclose((aff @ np.c_[zyx, np.ones(len(zyx))].T).T[:, :3], theirs,
                               atol=1e-9)


def test_same_seed_same_phantom_and_different_seed_differs() -> None:
    kw = dict(shape=(24, 96, 96), spacing=(2.5, 0.8, 0.8), n_nodules=1,
              nodule_diameters_mm=(4.0, 8.0))
    a, b = make_ct_phantom(seed=11, **kw), make_ct_phantom(seed=11, **kw)
    c = make_ct_phantom(seed=12, **kw)
    assert np.array_equal(a.hu, b.hu)
    assert a.nodules == b.nodules and a.distractors == b.distractors
    assert not np.array_equal(a.hu, c.hu)
    assert a.nodules != c.nodules


def test_noise_level_and_noise_free() -> None:
    kw = dict(shape=(8, 96, 96), spacing=(2.5, 0.8, 0.8), seed=1, n_nodules=0,
              n_distractors=0)
    quiet = make_ct_phantom(noise_hu=0.0, **kw)
    noisy = make_ct_phantom(noise_hu=30.0, **kw)
    air = quiet.hu[:, :5, :5]
    assert np.all(air == -1000)
    diff = noisy.hu.astype(float) - quiet.hu
    inside = (quiet.hu > -990) & (quiet.hu < 1000)
    assert 25 < diff[inside].std() < 35


def test_nodules_soft_tissue_inside_lung_and_apart(oblique: Phantom) -> None:
    nods = oblique.nodules
    for a in range(len(nods)):
        for b in range(a + 1, len(nods)):
            d = np.linalg.norm(np.subtract(nods[a].center_xyz, nods[b].center_xyz))
            assert d > (nods[a].diameter_mm + nods[b].diameter_mm) / 2
    for dist in oblique.distractors:
        assert dist.kind in ("calcification", "vessel")
        for n in nods:
            d = np.linalg.norm(np.subtract(dist.center_xyz, n.center_xyz))
            assert d > (dist.diameter_mm + n.diameter_mm) / 2 + 2.0


# ----------------------------------------------------------------------------- DICOM


def test_dicom_roundtrip_simpleitk_geometry_and_pixels(oblique: Phantom, oblique_series) -> None:
    folder, uid = oblique_series
    img, names = _read_series(folder)
    assert len(names) == SHAPE[0]
    np.testing.assert_allclose(img.GetSpacing(), SPACING[::-1], atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), ORIGIN, atol=1e-4)
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), OBLIQUE, atol=1e-6)
    arr = sitk.GetArrayFromImage(img)
    assert arr.shape == SHAPE
    assert np.array_equal(arr.astype(np.int32), oblique.hu.astype(np.int32))
    # geometry of individual voxels, through SimpleITK
    for zyx in ([0, 0, 0], [SHAPE[0] - 1, 5, 7], [17, SHAPE[1] - 1, SHAPE[2] - 1]):
        np.testing.assert_allclose(img.TransformIndexToPhysicalPoint(zyx[::-1]),
                                   oblique.index_to_world(np.array([zyx]))[0], atol=1e-4)


def test_dicom_tags(oblique: Phantom, oblique_series) -> None:
    folder, uid = oblique_series
    dss = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    assert len(dss) == SHAPE[0]
    ds = dss[0]
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert ds.file_meta.ImplementationClassUID
    assert ds.Modality == "CT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert {d.SeriesInstanceUID for d in dss} == {uid}
    assert len({d.StudyInstanceUID for d in dss}) == 1
    assert len({d.FrameOfReferenceUID for d in dss}) == 1
    assert len({d.SOPInstanceUID for d in dss}) == SHAPE[0]
    assert all(d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID for d in dss)
    assert (ds.Rows, ds.Columns) == SHAPE[1:]
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([SPACING[1], SPACING[2]])
    assert float(ds.SliceThickness) == pytest.approx(SPACING[0])
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 0)
    assert (float(ds.RescaleIntercept), float(ds.RescaleSlope)) == (-1024.0, 1.0)
    assert ds.RescaleType == "HU" and ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.SamplesPerPixel == 1
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientAddress",
                "InstitutionName", "OperatorsName", "AccessionNumber",
                "ReferringPhysicianName"):
        assert str(ds.get(key, "")).strip(), key
    assert str(ds.PatientName) == "PHANTOM^TEST" and ds.PatientID == "PH0001"
    # slices lie along cross(row, col), spaced by the z spacing, and carry the right pixels
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row, col = iop[:3], iop[3:]
    np.testing.assert_allclose(row, OBLIQUE[:, 0], atol=1e-9)
    np.testing.assert_allclose(col, OBLIQUE[:, 1], atol=1e-9)
    normal = np.cross(row, col)
    dss.sort(key=lambda d: float(np.dot([float(v) for v in d.ImagePositionPatient], normal)))
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    steps = np.diff(ipp, axis=0)
    np.testing.assert_allclose(steps, np.tile(normal * SPACING[0], (len(steps), 1)), atol=1e-6)
    np.testing.assert_allclose(ipp[0], ORIGIN, atol=1e-6)
    for k in (0, 13, SHAPE[0] - 1):
        hu = dss[k].pixel_array.astype(np.int32) * float(dss[k].RescaleSlope) + float(
            dss[k].RescaleIntercept)
        assert np.array_equal(hu.astype(np.int32), oblique.hu[k])


def test_shuffled_names_do_not_sort_in_slice_order(oblique: Phantom, oblique_series) -> None:
    folder, _ = oblique_series
    files = sorted(folder.iterdir())
    assert not any(p.name.startswith("slice_") for p in files)
    ds = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    normal = np.cross(*np.reshape([float(v) for v in ds[0].ImageOrientationPatient], (2, 3)))
    pos = [float(np.dot([float(v) for v in d.ImagePositionPatient], normal)) for d in ds]
    assert pos != sorted(pos) and pos != sorted(pos, reverse=True)
    inst = [int(d.InstanceNumber) for d in ds]
    by_pos = [i for _, i in sorted(zip(pos, inst))]
    assert sorted(inst) == list(range(1, SHAPE[0] + 1))
    assert by_pos != sorted(by_pos) and by_pos != sorted(by_pos, reverse=True)


def test_default_names_in_slice_order(tmp_path: Path) -> None:
    ph = make_ct_phantom((6, 96, 96), (2.5, 0.8, 0.8), n_nodules=0, n_distractors=0)
    write_dicom_series(ph, tmp_path)
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files] == [f"slice_{k:04d}.dcm" for k in range(6)]
    assert [int(pydicom.dcmread(p).InstanceNumber) for p in files] == list(range(1, 7))


def test_nodules_visible_in_dicom_read_by_simpleitk(oblique: Phantom, oblique_series) -> None:
    folder, _ = oblique_series
    img, _ = _read_series(folder)
    arr = sitk.GetArrayFromImage(img).astype(float)
    for n in oblique.nodules:
        centre = _hu_at(img, arr, n.center_xyz)
        assert SOFT_TISSUE[0] < centre < SOFT_TISSUE[1], (n, centre)
        shell = _shell_hu(img, arr, n.center_xyz, 1.2 * n.diameter_mm / 2 + 2.0)
        assert np.median(shell) < -600, (n, shell)
        assert (shell < -400).mean() >= 2 / 3, (n, shell)
    for d in oblique.distractors:
        centre = _hu_at(img, arr, d.center_xyz)
        if d.kind == "calcification":
            assert centre > 200, (d, centre)
        else:
            assert SOFT_TISSUE[0] < centre < SOFT_TISSUE[1], (d, centre)


@pytest.mark.parametrize("syntax", ["implicit-little", "deflated", "rle"])
def test_other_transfer_syntaxes_roundtrip(syntax: str, tmp_path: Path) -> None:
    ph = make_ct_phantom((5, 96, 96), (2.5, 0.8, 0.8), n_nodules=0, n_distractors=0, seed=2)
    write_dicom_series(ph, tmp_path, transfer_syntax=syntax)
    img, _ = _read_series(tmp_path)
    assert np.array_equal(sitk.GetArrayFromImage(img).astype(np.int32), ph.hu)


def test_signed_storage_with_zero_intercept(tmp_path: Path) -> None:
    ph = make_ct_phantom((4, 96, 96), (2.5, 0.8, 0.8), n_nodules=0, n_distractors=0, seed=4)
    write_dicom_series(ph, tmp_path, rescale_intercept=0)
    ds = pydicom.dcmread(next(tmp_path.iterdir()))
    assert ds.PixelRepresentation == 1 and float(ds.RescaleIntercept) == 0.0
    img, _ = _read_series(tmp_path)
    assert np.array_equal(sitk.GetArrayFromImage(img).astype(np.int32), ph.hu)


def test_uids_deterministic_and_overridable(tmp_path: Path) -> None:
    ph = make_ct_phantom((3, 96, 96), (2.5, 0.8, 0.8), n_nodules=0, n_distractors=0)
    u1 = write_dicom_series(ph, tmp_path / "a", seed=1)
    u2 = write_dicom_series(ph, tmp_path / "b", seed=1)
    u3 = write_dicom_series(ph, tmp_path / "c", seed=2)
    assert u1 == u2 != u3
    assert pydicom.uid.UID(u1).is_valid
    u4 = write_dicom_series(ph, tmp_path / "d", series_uid="1.2.3.4", study_uid="1.2.3.5")
    ds = pydicom.dcmread(tmp_path / "d" / "slice_0000.dcm")
    assert u4 == "1.2.3.4" and ds.SeriesInstanceUID == "1.2.3.4"
    assert ds.StudyInstanceUID == "1.2.3.5"


def test_left_handed_direction_reads_back_z_flipped(tmp_path: Path) -> None:
    flip = np.diag([1.0, 1.0, -1.0])
    ph = make_ct_phantom((12, 96, 96), (2.5, 0.8, 0.8), direction=flip, n_nodules=0, seed=6)
    write_dicom_series(ph, tmp_path)
    img, _ = _read_series(tmp_path)
    arr = sitk.GetArrayFromImage(img)
    assert np.array_equal(arr[::-1].astype(np.int32), ph.hu)
    last = ph.index_to_world(np.array([[11, 0, 0]]))[0]
    np.testing.assert_allclose(img.GetOrigin(), last, atol=1e-4)  # same physical voxels


# ----------------------------------------------------------------------------- dataset


def _read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("fmt", ["dicom", "mhd"])
def test_generate_dataset_tables_match_images(fmt: str, tmp_path: Path) -> None:
    ann_path = generate_dataset(tmp_path, n_scans=2, seed=7, write_format=fmt)
    assert ann_path == tmp_path / "annotations.csv"
    header = ann_path.read_text().splitlines()[0]
    assert header == "seriesuid,coordX,coordY,coordZ,diameter_mm"
    ann = _read_table(ann_path)
    exc = _read_table(tmp_path / "annotations_excluded.csv")
    uids = [line.strip() for line in (tmp_path / "seriesuids.csv").read_text().splitlines()
            if line.strip()]
    assert len(uids) == len(set(uids)) == 2
    assert {r["seriesuid"] for r in ann} <= set(uids)
    assert any(r["diameter_mm"] == "-1" for r in exc)
    for r in ann:
        assert len(r["coordX"].split(".")[1]) >= 6
    spacings = []
    for uid in uids:
        if fmt == "dicom":
            folders = list(tmp_path.glob(f"*/{uid}"))
            assert len(folders) == 1
            img, _ = _read_series(folders[0])
            ds = pydicom.dcmread(next(folders[0].iterdir()), stop_before_pixels=True)
            assert ds.SeriesInstanceUID == uid and ds.PatientID == folders[0].parent.name
        else:
            img = sitk.ReadImage(str(tmp_path / f"{uid}.mhd"))
        spacings.append(img.GetSpacing())
        sx, sy, sz = img.GetSpacing()
        assert sz >= 1.0 and sz <= 2.5 and sx >= 0.6 and sx <= 0.9 and sx == pytest.approx(sy)
        arr = sitk.GetArrayFromImage(img).astype(float)
        rows = [r for r in ann if r["seriesuid"] == uid]
        assert len(rows) in (1, 2, 3)
        for r in rows:
            xyz = [float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])]
            diam = float(r["diameter_mm"])
            assert diam >= 4.0
            centre = _hu_at(img, arr, xyz)
            assert SOFT_TISSUE[0] < centre < SOFT_TISSUE[1], (r, centre)
            shell = _shell_hu(img, arr, xyz, 1.2 * diam / 2 + 2.0)
            assert np.median(shell) < -600, (r, shell)
    assert spacings[0] != spacings[1]


def test_generate_dataset_is_deterministic(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", n_scans=1, seed=3, shape=(48, 128, 128),
                         write_format="mhd")
    b = generate_dataset(tmp_path / "b", n_scans=1, seed=3, shape=(48, 128, 128),
                         write_format="mhd")
    assert a.read_text() == b.read_text()


def test_nodule_value_type() -> None:
    n = Nodule((1.0, 2.0, 3.0), 5.0)
    assert n.kind == "nodule" and n == Nodule((1.0, 2.0, 3.0), 5.0)
    with pytest.raises(Exception):
        n.diameter_mm = 3.0  # type: ignore[misc]
