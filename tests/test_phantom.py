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
    NoduleMix,
    Phantom,
    generate_dataset,
    make_ct_phantom,
    sample_diameters,
    write_dicom_series,
)

SOFT_TISSUE = (-150.0, 250.0)  # HU window for a solid nodule's centre voxel
GROUND_GLASS = (-700.0, -200.0)  # ... and for a ground-glass nodule's (noise included)


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
    kinds = {(r["seriesuid"], r["coordX"]): r for r in _read_table(tmp_path / "phantom_findings.csv")}
    assert len(kinds) == len(ann)
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
        assert 0.6 <= sz <= 2.5 and 0.6 <= sx <= 0.9 and sx == pytest.approx(sy)
        arr = sitk.GetArrayFromImage(img).astype(float)
        rows = [r for r in ann if r["seriesuid"] == uid]
        assert len(rows) in (1, 2, 3)
        for r in rows:
            xyz = [float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])]
            diam = float(r["diameter_mm"])
            assert 3.0 <= diam <= 30.0
            kind = kinds[(uid, r["coordX"])]
            centre = _hu_at(img, arr, xyz)
            lo, hi = GROUND_GLASS if kind["texture"] == "ground-glass" else SOFT_TISSUE
            if diam >= 2 * sz:  # smaller solid nodules are blurred by thick slices (tested below)
                assert lo < centre < hi, (r, kind, centre)
            if kind["attachment"] == "isolated":
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


# ----------------------------------------------------------------------------- realism (issue 12)
# LUNA16's annotations.csv (1186 nodules), summarised by hand: 76.3 % under 10 mm, 42.3 %
# under 6 mm, median 6.43 mm, range 3.25-32.3 mm.
LUNA16_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "luna16" / "annotations.csv"


def test_diameters_follow_luna16_distribution() -> None:
    d = sample_diameters(np.random.default_rng(0), 20000)
    assert d.min() >= 3.0 and d.max() <= 30.0
    assert abs((d < 10).mean() - 0.763) < 0.02
    assert abs((d < 6).mean() - 0.423) < 0.02
    assert abs(np.median(d) - 6.43) < 0.2
    assert (d > 20).mean() > 0.02  # a tail of large nodules, not only small ones
    restricted = sample_diameters(np.random.default_rng(1), 2000, 5.0, 12.0)
    assert restricted.min() >= 5.0 and restricted.max() <= 12.0


def test_diameters_match_the_real_luna16_table() -> None:
    if not LUNA16_TABLE.is_file():
        pytest.skip(f"the real LUNA16 table is not at {LUNA16_TABLE}")
    stats = pytest.importorskip("scipy.stats")
    real = np.clip([float(r["diameter_mm"]) for r in _read_table(LUNA16_TABLE)], 3.0, 30.0)
    ours = sample_diameters(np.random.default_rng(2), 20000)
    assert stats.ks_2samp(ours, real).statistic < 0.03


@pytest.fixture(scope="module")
def realistic_set() -> list[Phantom]:
    """Adult-sized chests (about 300 mm across) with LUNA16-like nodules, thick and thin slices."""
    out = []
    for seed in range(8):
        spacing = ((2.5, 1.6, 1.6), (0.7, 1.6, 1.6))[seed % 2]
        shape = (int(72 / spacing[0]), 190, 190)
        out.append(make_ct_phantom(shape, spacing, seed=100 + seed, n_nodules=6,
                                   nodule_diameters_mm=(3.0, 30.0), nodule_mix=NoduleMix()))
    return out


def test_generated_set_sizes_and_kinds(realistic_set: list[Phantom]) -> None:
    nods = [n for ph in realistic_set for n in ph.nodules]
    d = np.array([n.diameter_mm for n in nods])
    assert len(d) == 48 and d.min() >= 3.0 and d.max() <= 30.0
    assert (d < 10).mean() >= 0.6  # most are small, as in LUNA16
    assert {n.attachment for n in nods} == {"isolated", "juxtapleural", "vessel"}
    assert {"solid", "ground-glass"} <= {n.texture for n in nods}


def _ball(ph: Phantom, centre_xyz, radius: float) -> np.ndarray:
    """Boolean mask of voxels whose centre lies within ``radius`` mm of ``centre_xyz``."""
    c = ph.world_to_index(centre_xyz)
    half = radius / np.asarray(ph.spacing) + 1
    lo = np.maximum(np.floor(c - half), 0).astype(int)
    hi = np.minimum(np.ceil(c + half) + 1, ph.shape).astype(int)
    zyx = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    d = np.linalg.norm(ph.index_to_world(zyx.reshape(-1, 3)) - np.asarray(centre_xyz), axis=1)
    out = np.zeros(ph.shape, dtype=bool)
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = (d <= radius).reshape(zyx.shape[:3])
    return out


def _connected_beyond(ph: Phantom, n: Nodule, hu_min: float) -> float:
    """Fraction of the shell r+2..r+4 mm around nodule ``n`` reached from its centre through
    voxels above ``hu_min`` without leaving the ball of radius r+4 (scipy labelling)."""
    from scipy import ndimage

    r = n.diameter_mm / 2
    outer = _ball(ph, n.center_xyz, r + 4.0)
    labels, _ = ndimage.label((ph.hu > hu_min) & outer)
    k = tuple(np.rint(ph.world_to_index(n.center_xyz)).astype(int))
    assert labels[k], f"the centre of {n} is not above {hu_min} HU"
    shell = outer & ~_ball(ph, n.center_xyz, r + 2.0)
    return float((labels[shell] == labels[k]).mean())


def test_juxtapleural_nodules_touch_the_pleura(realistic_set: list[Phantom]) -> None:
    seen = 0
    for ph in realistic_set:
        for n in ph.nodules:
            if n.attachment != "juxtapleural" or n.texture != "solid":
                continue
            seen += 1
            # the ball crosses the lung's boundary into the chest wall (seen on voxel centres:
            # within one voxel of the ball) ...
            reach = n.diameter_mm / 2 + max(ph.spacing)
            assert (~ph.lung[_ball(ph, n.center_xyz, reach)]).any(), n
            # ... and, in the image, tissue runs on from the nodule into the wall: a broad
            # sheet beyond the nodule, not a thin vessel
            assert _connected_beyond(ph, n, -500.0) > 0.05, n
    assert seen >= 2


def test_isolated_solid_nodules_stand_free(realistic_set: list[Phantom]) -> None:
    for ph in realistic_set:
        for n in ph.nodules:
            if n.attachment == "isolated" and n.texture == "solid":
                assert ph.lung[_ball(ph, n.center_xyz, n.diameter_mm / 2 + 2.0)].all(), n


def test_vessel_attached_nodules_have_a_vessel_running_in(realistic_set: list[Phantom]) -> None:
    seen = 0
    for ph in realistic_set:
        for n in ph.nodules:
            if n.attachment == "vessel" and n.texture == "solid":
                seen += 1
                assert ph.lung[_ball(ph, n.center_xyz, n.diameter_mm / 2 + 2.0)].all(), n
                assert _connected_beyond(ph, n, -600.0) > 0.0, n
    assert seen >= 2


def test_ground_glass_nodules_are_hazy() -> None:
    mix = NoduleMix(juxtapleural=0.0, vessel_attached=0.0, ground_glass=1.0, part_solid=0.0)
    ph = make_ct_phantom((40, 190, 190), (2.0, 1.6, 1.6), seed=9, n_nodules=4,
                         nodule_diameters_mm=(8.0, 20.0), nodule_mix=mix)
    assert {n.texture for n in ph.nodules} == {"ground-glass"}
    for n in ph.nodules:
        core = ph.hu[_ball(ph, n.center_xyz, 0.5 * n.diameter_mm / 2)].astype(float)
        core = core[core < -200]  # leave out vessels crossing the nodule (they stay visible)
        assert len(core) >= 5 and -600 <= core.mean() <= -300, (n, core.mean())


def test_part_solid_nodules_have_a_solid_core() -> None:
    mix = NoduleMix(juxtapleural=0.0, vessel_attached=0.0, ground_glass=0.0, part_solid=1.0)
    ph = make_ct_phantom((40, 190, 190), (1.0, 1.0, 1.0), seed=10, n_nodules=3,
                         nodule_diameters_mm=(12.0, 20.0), nodule_mix=mix)
    for n in ph.nodules:
        k = tuple(np.rint(ph.world_to_index(n.center_xyz)).astype(int))
        assert SOFT_TISSUE[0] < ph.hu[k] < SOFT_TISSUE[1], n
        rim = _ball(ph, n.center_xyz, 0.8 * n.diameter_mm / 2) & ~_ball(ph, n.center_xyz, 0.6 * n.diameter_mm / 2)
        assert -700 < np.median(ph.hu[rim]) < -200, n


@pytest.mark.parametrize("spacing", [(2.5, 0.7, 0.7), (0.6, 0.9, 0.9)])
def test_partial_volume_edges_equal_supersampled_coverage(spacing) -> None:
    """The anti-aliased ball equals the fraction of each voxel it covers, computed by brute
    force (8x8x8 sub-samples per voxel); the classic 1 mm ramp does not in thick slices."""
    from voxelstream_ct.phantom_geometry import Grid
    from voxelstream_ct.phantom_structures import Sphere, stamp_sphere

    shape = (int(24 / spacing[0]), int(24 / spacing[1]), int(24 / spacing[2]))
    grid = Grid(shape, spacing, np.zeros(3), np.eye(3))
    rng = np.random.default_rng(3)
    errs = {True: [], False: []}
    for r in (1.5, 2.5, 4.0):
        c = np.array([12.0, 12.0, 12.0]) + rng.uniform(-0.5, 0.5, 3)
        sub = (np.arange(8) + 0.5) / 8 - 0.5
        axes = [(np.arange(n)[:, None] + sub[None, :]).ravel() * s for n, s in zip(shape, spacing)]
        zz, yy, xx = np.meshgrid(*axes, indexing="ij", sparse=True)
        inside = ((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) <= r * r
        truth = inside.reshape(shape[0], 8, shape[1], 8, shape[2], 8).mean(axis=(1, 3, 5))
        near = (truth > 0) | np.roll(truth > 0, 1, 0) | np.roll(truth > 0, -1, 0)
        for aa in (True, False):
            val = np.zeros(shape, np.float32)
            stamp_sphere(val, grid, 0, shape[0], Sphere(c, r, 1.0, 0.05 if aa else 1.0, np.zeros((0, 4)), aa))
            errs[aa].append(np.abs(val - truth)[near].mean())
            if aa:  # the ball's volume is kept: to 3 % once it spans two slices, else 20 %
                tol = 0.03 if r >= max(spacing) else 0.2
                assert abs(val.sum() - truth.sum()) <= tol * truth.sum(), (r, val.sum(), truth.sum())
    assert max(errs[True]) < 0.05, errs
    assert np.mean(errs[True]) < 0.7 * np.mean(errs[False]), errs


def test_realistic_dataset_slice_thickness_and_byte_identical_dicom(tmp_path: Path) -> None:
    runs = [generate_dataset(tmp_path / k, n_scans=3, seed=21, shape=(40, 128, 128)) for k in "ab"]
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".dcm"]) == 3 * 40
    for f in files:  # same seed -> the same bytes, every DICOM file and every table
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    thick = {float(pydicom.dcmread(next(p.iterdir()), stop_before_pixels=True).SliceThickness)
             for p in (tmp_path / "a").glob("PH*/*")}
    assert len(thick) == 3 and all(0.6 <= t <= 2.5 for t in thick)
    assert runs[0].read_text() == runs[1].read_text()
    other = generate_dataset(tmp_path / "c", n_scans=1, seed=22, shape=(40, 128, 128))
    assert other.read_text() != runs[0].read_text()


def test_classic_mix_is_the_earlier_phantom() -> None:
    ph = make_ct_phantom((24, 96, 96), (2.5, 0.8, 0.8), seed=11, n_nodules=2)
    same = make_ct_phantom((24, 96, 96), (2.5, 0.8, 0.8), seed=11, n_nodules=2, nodule_mix=NoduleMix.classic())
    assert np.array_equal(ph.hu, same.hu)
    assert {(n.texture, n.attachment) for n in ph.nodules} == {("solid", "isolated")}
    with pytest.raises(ValueError):
        NoduleMix(juxtapleural=0.8, vessel_attached=0.5)


def test_phantoms_command_classic_and_realistic(tmp_path: Path) -> None:
    from voxelstream.cli.main import main

    for flag, out in (([], tmp_path / "new"), (["--classic"], tmp_path / "old")):
        assert main(["ct", "phantoms", "--out", str(out), "--n", "2", "--format", "mhd", "--seed", "4", *flag]) == 0
    old = generate_dataset(tmp_path / "ref", n_scans=2, seed=4, write_format="mhd", realistic=False)
    assert (tmp_path / "old" / "annotations.csv").read_text() == old.read_text()
    kinds = _read_table(tmp_path / "old" / "phantom_findings.csv")
    assert {(r["texture"], r["attachment"]) for r in kinds} == {("solid", "isolated")}
    spacing = [sitk.ReadImage(str(p)).GetSpacing()[2] for p in sorted((tmp_path / "old").glob("*.mhd"))]
    assert all(1.0 <= s <= 2.5 for s in spacing)
    assert (tmp_path / "new" / "annotations.csv").read_text() != old.read_text()


def test_generate_dataset_nodules_per_scan(tmp_path: Path) -> None:
    """``nodules=(lo, hi)`` gives every scan lo..hi annotated nodules; the default (1, 3)
    writes exactly the tables it wrote before the option existed."""
    ann = _read_table(generate_dataset(tmp_path / "many", n_scans=3, seed=5, shape=(64, 160, 160),
                                       write_format="mhd", nodules=(4, 5)))
    uids = [ln.strip() for ln in (tmp_path / "many" / "seriesuids.csv").read_text().splitlines() if ln.strip()]
    counts = [sum(r["seriesuid"] == u for r in ann) for u in uids]
    assert len(counts) == 3 and all(4 <= n <= 5 for n in counts)
    a = generate_dataset(tmp_path / "a", n_scans=2, seed=3, shape=(48, 128, 128), write_format="mhd")
    b = generate_dataset(tmp_path / "b", n_scans=2, seed=3, shape=(48, 128, 128), write_format="mhd",
                         nodules=(1, 3))
    assert a.read_text() == b.read_text()
    with pytest.raises(ValueError, match="nodules"):
        generate_dataset(tmp_path / "c", n_scans=1, nodules=(3, 2))
