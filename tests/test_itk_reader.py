"""The itk reader (MetaImage, NIfTI, NRRD) against SimpleITK itself, on phantoms it wrote."""

from __future__ import annotations

import gzip
import io
import pickle
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import voxelstream
from voxelstream.cli.main import main as cli_main
from voxelstream.privacy import salted_hash
from voxelstream_itk import rawdata
from voxelstream_itk.naming import volume_id_for
from voxelstream_itk.plugin import claims, discover

RNG = np.random.default_rng(20261122)
SPACING_XYZ = (0.73, 0.91, 2.5)
ORIGIN_XYZ = (-120.5, 33.25, -310.0)


def oblique_direction() -> tuple[float, ...]:
    """A proper rotation about a skew axis (Rodrigues), so every axis is oblique."""
    axis = np.array([0.3, -0.5, 0.8])
    axis /= np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.deg2rad(23.0)
    r = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    return tuple(r.ravel())


def phantom(shape_zyx=(23, 17, 19), dtype=np.int16) -> sitk.Image:
    arr = RNG.integers(-1024, 3000, size=shape_zyx).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING_XYZ)
    img.SetOrigin(ORIGIN_XYZ)
    img.SetDirection(oblique_direction())
    return img


FORMATS = [
    ("mhd", False),
    ("mhd", True),
    ("mha", False),
    ("mha", True),
    ("nii", False),
    ("nii.gz", True),
    ("nrrd", False),
    ("nrrd", True),
    ("nhdr", False),
]


def write(img: sitk.Image, path: Path, compress: bool = False) -> Path:
    sitk.WriteImage(img, str(path), compress)
    return path


def index_points(shape_zyx) -> np.ndarray:
    corners = np.array([[z, y, x] for z in (0, shape_zyx[0] - 1) for y in (0, shape_zyx[1] - 1) for x in (0, shape_zyx[2] - 1)])
    inside = RNG.uniform(-0.5, np.array(shape_zyx) - 0.5, size=(40, 3))
    return np.vstack([corners, inside])


def assert_matches_sitk(path: Path) -> voxelstream.Volume:
    vol = voxelstream.read(path)
    ref = sitk.ReadImage(str(path))
    ref_arr = sitk.GetArrayFromImage(ref)
    arr = vol.data[0].compute()
    assert arr.dtype == ref_arr.dtype
    np.testing.assert_array_equal(arr, ref_arr)
    np.testing.assert_allclose(vol.spacing, ref.GetSpacing()[::-1], rtol=1e-6)
    pts = index_points(vol.spatial_shape)
    expected = np.array([ref.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in p[::-1])) for p in pts])
    np.testing.assert_allclose(vol.index_to_world(pts), expected, atol=1e-6)
    integer = np.array([ref.TransformIndexToPhysicalPoint(tuple(int(v) for v in p[::-1])) for p in pts[:8].astype(int)])
    np.testing.assert_allclose(vol.index_to_world(pts[:8]), integer, atol=1e-6)
    return vol


@pytest.mark.parametrize("ext,compress", FORMATS, ids=[f"{e}{'-z' if c else ''}" for e, c in FORMATS])
def test_reads_like_simpleitk(tmp_path, ext, compress):
    path = write(phantom(), tmp_path / f"scan.{ext}", compress)
    vol = assert_matches_sitk(path)
    assert vol.data.dtype == np.int16
    assert vol.meta["id"] == "scan"
    assert vol.meta["reader"] == "itk"
    # no path in meta by default (folder names carry identifiers): a salted hash, counts, sizes
    origin = vol.meta["origin"]
    assert "source" not in vol.meta and "source" not in origin and str(tmp_path) not in repr(vol.meta)
    files = sorted(p for p in tmp_path.iterdir() if p.name.split(".")[0] == "scan")
    assert origin["files"] == len(files) and origin["bytes"] == sum(p.stat().st_size for p in files)
    assert origin["source_hash"] == salted_hash(str(path.resolve()))
    assert voxelstream.read(path, keep_phi=True).meta["source"] == str(path.resolve())
    assert "units" not in vol.meta  # no modality in these headers, so no HU claim


def test_metaimage_modality_ct_gives_hu(tmp_path):
    path = write(phantom(), tmp_path / "ct.mhd")
    header = path.read_text().replace("ElementType", "Modality = MET_MOD_CT\nElementType")
    path.write_text(header)
    meta = voxelstream.read(path).meta
    assert (meta["modality"], meta["units"], meta["format"]) == ("CT", "HU", "MetaImage")


def hand_written_mhd(folder: Path, arr: np.ndarray, *, msb: bool, header_size: int, prefix: bytes) -> Path:
    """A .mhd + .raw written byte by byte (big-endian data, a skipped raw prefix)."""
    raw = prefix + arr.astype(">i2" if msb else "<i2").tobytes()
    (folder / "hand.raw").write_bytes(raw)
    z, y, x = arr.shape
    direction = " ".join(f"{v:.17g}" for v in oblique_direction())
    (folder / "hand.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\n"
        f"BinaryDataByteOrderMSB = {msb}\nCompressedData = False\n"
        f"TransformMatrix = {direction}\nOffset = 1.5 -2 3\n"
        f"ElementSpacing = 0.5 0.75 1.25\nDimSize = {x} {y} {z}\nHeaderSize = {header_size}\n"
        "ElementType = MET_SHORT\nElementDataFile = hand.raw\n"
    )
    return folder / "hand.mhd"


@pytest.mark.parametrize("msb,header_size,prefix", [(True, 0, b""), (False, 37, b"x" * 37), (True, -1, b"y" * 11)])
def test_raw_layouts_big_endian_and_header_size(tmp_path, msb, header_size, prefix, monkeypatch):
    arr = RNG.integers(-2000, 2000, size=(9, 7, 5)).astype(np.int16)
    path = hand_written_mhd(tmp_path, arr, msb=msb, header_size=header_size, prefix=prefix)
    calls = count_calls(monkeypatch, rawdata, "read_raw_block")
    vol = assert_matches_sitk(path)
    np.testing.assert_array_equal(vol.data[0].compute(), arr)
    assert vol.data.dtype == np.dtype("int16") and vol.data.dtype.isnative
    assert calls, "uncompressed .mhd + .raw should be read through memory maps"


def test_metaimage_list_of_slice_files_reads_through_simpleitk(tmp_path):
    arr = RNG.integers(-2000, 2000, size=(3, 8, 7)).astype(np.int16)
    for k in range(3):
        arr[k].tofile(tmp_path / f"sl{k}.raw")
    (tmp_path / "list.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "CompressedData = False\nElementSpacing = 1 1 2\nDimSize = 7 8 3\nElementType = MET_SHORT\n"
        "ElementDataFile = LIST 2D\nsl0.raw\nsl1.raw\nsl2.raw\n"
    )
    vol = assert_matches_sitk(tmp_path / "list.mhd")
    np.testing.assert_array_equal(vol.data[0].compute(), arr)


def count_calls(monkeypatch, module, name: str) -> list:
    calls: list = []
    original = getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


@pytest.mark.parametrize(
    "ext,compress,module,fn",
    [
        ("mhd", False, rawdata, "read_raw_block"),
        ("mha", False, rawdata, "read_raw_block"),
        ("mhd", True, rawdata, "read_raw_block"),
        ("mha", True, rawdata, "read_raw_block"),
        ("nii", False, rawdata, "read_raw_block"),
        ("nii.gz", True, rawdata, "read_raw_block"),
        ("nrrd", False, rawdata, "read_raw_block"),
        ("nrrd", True, rawdata, "read_raw_block"),
        ("nhdr", False, rawdata, "read_raw_block"),
    ],
)
def test_building_reads_no_voxels_and_long_volumes_have_several_slabs(tmp_path, monkeypatch, ext, compress, module, fn):
    img = phantom(shape_zyx=(150, 6, 5))
    path = write(img, tmp_path / f"long.{ext}", compress)
    calls = count_calls(monkeypatch, module, fn)
    vol = voxelstream.read(path)
    assert calls == []
    assert vol.data.numblocks[1] >= 2
    np.testing.assert_array_equal(vol.data[0].compute(), sitk.GetArrayFromImage(img))
    assert len(calls) == vol.data.numblocks[1]
    # one slab read on its own reads that slab only
    calls.clear()
    np.testing.assert_array_equal(vol.data[0, 140:].compute(), sitk.GetArrayFromImage(img)[140:])
    assert len(calls) == 1


def test_source_open_pickles_and_graph_holds_no_memmap(tmp_path):
    path = write(phantom(shape_zyx=(130, 40, 40)), tmp_path / "p.mhd")
    (src,) = list(discover([path]))
    vol = pickle.loads(pickle.dumps(src.open))()
    np.testing.assert_array_equal(vol.data[0].compute(), sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
    graph = dict(vol.data.__dask_graph__())
    assert len(pickle.dumps(graph)) < 20_000  # 416 kB of voxels: only paths and offsets inside


def test_vector_pixels_become_a_leading_channel_axis(tmp_path):
    arr = RNG.normal(size=(5, 6, 7, 3)).astype(np.float32)
    img = sitk.GetImageFromArray(arr, isVector=True)
    img.SetSpacing(SPACING_XYZ)
    path = write(img, tmp_path / "vec.nrrd")
    vol = voxelstream.read(path)
    assert vol.shape == (3, 5, 6, 7)
    np.testing.assert_array_equal(vol.data.compute(), np.moveaxis(arr, -1, 0))


@pytest.mark.parametrize(
    "name,expected",
    [
        ("1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260.mhd",
         "1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260"),
        ("scan.nii.gz", "scan"),
        ("Scan.v2.NII.GZ", "Scan.v2"),
        ("case.raw.mha", "case.raw"),
        ("a.b.nrrd", "a.b"),
        ("head.nhdr", "head"),
        ("brain.nii", "brain"),
    ],
)
def test_volume_id_strips_only_the_image_extension(name, expected):
    assert volume_id_for(name) == expected
    assert claims(Path(name))


@pytest.mark.parametrize("name", ["notes.txt", "scan.raw", "scan.zraw", "x.gz", "mhd", "scan.mhd.bak"])
def test_claims_only_image_suffixes(name):
    assert not claims(Path(name))


def test_luna_style_folder_gives_uid_ids_and_no_companion_noise(tmp_path):
    uid = "1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260"
    write(phantom(), tmp_path / f"{uid}.mhd")
    write(phantom(), tmp_path / "other.mhd", True)
    items = list(voxelstream.discover([tmp_path]))
    assert sorted(i.volume_id for i in items) == sorted([uid, "other"])  # all Sources, no errors


# -- bad inputs ------------------------------------------------------------------------------


def read_error(path) -> str:
    with pytest.raises(voxelstream.ReadError) as err:
        voxelstream.read(path)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_raw(tmp_path):
    path = write(phantom(), tmp_path / "m.mhd")
    (tmp_path / "m.raw").unlink()
    (src_or_err,) = list(discover([path]))  # found at discover time, before any open
    assert isinstance(src_or_err, voxelstream.SourceError)
    msg = read_error(path)
    assert "m.mhd" in msg and "m.raw" in msg and "missing" in msg


def test_truncated_raw(tmp_path):
    path = write(phantom(), tmp_path / "t.mhd")
    raw = tmp_path / "t.raw"
    raw.write_bytes(raw.read_bytes()[:-100])
    msg = read_error(path)
    assert "t.mhd" in msg and "t.raw" in msg and "truncated" in msg


def test_raw_truncated_after_discovery_fails_its_volume_with_one_error(tmp_path):
    """The file shrinks between opening and writing (another process re-copying it): the
    direct write reports it as an error of that file, not a crash of the process."""
    path = write(phantom(), tmp_path / "s.mhd")
    vol = voxelstream.read(path)
    assert vol.source is not None, "the direct (memory-mapped) path is the one under test"
    raw = tmp_path / "s.raw"
    raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    store = voxelstream.open_store(tmp_path / "s.zarr", create=True)
    with pytest.raises(voxelstream.VoxelstreamError, match="truncated"):
        store.write(vol, "v", chunks=4)


def test_truncated_compressed_mhd(tmp_path):
    path = write(phantom(), tmp_path / "z.mhd", True)
    data = tmp_path / "z.zraw"
    data.write_bytes(data.read_bytes()[:-50])
    msg = read_error(path)
    assert "z.mhd" in msg and "z.zraw" in msg and "truncated" in msg


@pytest.mark.parametrize("name,data_name", [("n.nrrd", "n.nrrd"), ("d.nhdr", "d.raw")])
def test_truncated_raw_nrrd_fails_at_discovery(tmp_path, name, data_name):
    path = write(phantom(), tmp_path / name, False)
    data = tmp_path / data_name
    data.write_bytes(data.read_bytes()[:-300])
    msg = read_error(path)
    assert name in msg and data_name in msg and "truncated" in msg


def test_truncated_gzip_nrrd_fails_when_read_with_a_picklable_error(tmp_path):
    path = write(phantom(), tmp_path / "g.nrrd", True)
    path.write_bytes(path.read_bytes()[:-300])
    vol = voxelstream.read(path)  # the inflated size of gzip data is known only by inflating it
    with pytest.raises(voxelstream.ReadError) as err:
        vol.data[0].compute()
    again = pickle.loads(pickle.dumps(err.value))  # as it comes back from a distributed worker
    assert str(again) == str(err.value)
    assert "g.nrrd" in str(err.value) and ("truncated" in str(err.value) or "damaged" in str(err.value))


@pytest.mark.parametrize("ext", ["nii", "nii.gz"])
def test_truncated_nifti(tmp_path, ext):
    path = write(phantom(), tmp_path / f"t.{ext}", ext.endswith("gz"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    msg = read_error(path)
    assert f"t.{ext}" in msg and "truncated" in msg


def test_multi_member_gzip_nifti_is_not_mistaken_for_truncated(tmp_path):
    path = write(phantom(), tmp_path / "mm.nii")
    raw = path.read_bytes()
    half = len(raw) // 2
    gz = tmp_path / "mm.nii.gz"
    gz.write_bytes(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))  # trailer holds half the size
    assert_matches_sitk(gz)


@pytest.mark.parametrize("name", ["x.mhd", "x.nii", "x.nrrd", "x.mha"])
def test_text_file_with_image_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text("these are my notes, not an image\n")
    msg = read_error(path)
    assert name in msg and re.search(r"not a (readable|valid)? ?(MetaImage|NIfTI|NRRD)", msg), msg


def test_two_d_image_is_refused(tmp_path):
    path = write(sitk.Image([4, 5], sitk.sitkInt16), tmp_path / "flat.nrrd")
    msg = read_error(path)
    assert "flat.nrrd" in msg and "2-D" in msg


def test_nonexistent_path_and_empty_folder(tmp_path):
    msg = read_error(tmp_path / "nope.mhd")
    assert "nope.mhd" in msg and "no such file" in msg
    (tmp_path / "empty").mkdir()
    msg = read_error(tmp_path / "empty")
    assert "empty" in msg and "folder is empty" in msg


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_ingest_reports_bad_volume_and_stores_good_ones(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = {"alpha.1": write(phantom(), folder / "alpha.1.mhd"), "beta": write(phantom((31, 9, 11)), folder / "beta.mhd", True)}
    bad = write(phantom(), folder / "broken.mhd")
    (folder / "broken.raw").unlink()
    store_path = tmp_path / "store.zarr"
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(["ingest", str(folder), "--store", str(store_path)])
    assert code == 1
    lines = sorted(out.getvalue().splitlines())
    expected = sorted(
        f"{vid}\t1x{'x'.join(str(n) for n in sitk.GetArrayViewFromImage(sitk.ReadImage(str(p))).shape)}"
        for vid, p in good.items()
    )
    assert lines == expected
    (err_line,) = [ln for ln in err.getvalue().splitlines() if ln.startswith("error:")]
    assert err_line.startswith(f"error: {bad}: ") and "broken.raw" in err_line and "missing" in err_line
    store = voxelstream.open_store(store_path)
    for vid, p in good.items():
        stored = store.open(vid)
        fresh = voxelstream.read(p)
        np.testing.assert_array_equal(stored.data[0].compute(), sitk.GetArrayFromImage(sitk.ReadImage(str(p))))
        np.testing.assert_allclose(stored.affine, fresh.affine, atol=1e-9)


# -- plain MetaImage headers are read without SimpleITK: the same information ------------------------

_Q = np.linalg.qr(np.array([[1.0, 0.3, -0.2], [-0.3, 1.0, 0.1], [0.2, 0.05, 1.0]]))[0]
_HEADERS = {
    "luna16": "TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = -180 -180.5 -400.25\nCenterOfRotation = 0 0 0\n"
              "AnatomicalOrientation = RAI\nElementSpacing = 0.69999999999999996 0.69999999999999996 2.5\n",
    "oblique": "TransformMatrix = " + " ".join(repr(float(v)) for v in _Q.ravel()) + "\nOffset = 1 2 3\n"
               "ElementSpacing = 0.8 0.9 1.7\nModality = MET_MOD_CT\n",
    "flipped": "TransformMatrix = -1 0 0 0 -1 0 0 0 1\nPosition = 10 -20 30\nAnatomicalOrientation = LPS\n"
               "ElementSpacing = 1 1 1\nModality = MET_MOD_MR\n",
    "permuted": "Orientation = 0 1 0 0 0 1 1 0 0\nOrigin = 5 6 7\nElementSpacing = 2 3 4\n",
    "bare": "ElementSpacing = 0.5 0.5 0.5\n",
}


@pytest.mark.parametrize("kind", sorted(_HEADERS))
@pytest.mark.parametrize("etype", ["MET_SHORT", "MET_FLOAT", "MET_UCHAR", "MET_USHORT", "MET_DOUBLE", "MET_INT"])
def test_plain_metaimage_header_reads_as_simpleitk_reads_it(tmp_path, kind, etype):
    from voxelstream_itk.header import read_info
    from voxelstream_itk.metaimage import plain_info

    size = (6, 5, 4)
    (tmp_path / "a.raw").write_bytes(b"\0" * (int(np.prod(size)) * 8))
    path = tmp_path / "a.mhd"
    path.write_text("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
                    f"{_HEADERS[kind]}DimSize = {' '.join(map(str, size))}\nElementType = {etype}\n"
                    "ElementDataFile = a.raw\n")
    mine = plain_info(str(path))
    assert mine is not None and read_info(str(path)) == mine  # read_info takes the plain path
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    r.ReadImageInformation()
    assert mine.size_xyz == r.GetSize() and mine.spacing_xyz == r.GetSpacing()
    assert mine.origin_xyz == r.GetOrigin() and mine.direction == r.GetDirection()
    assert mine.dtype == sitk.GetArrayViewFromImage(sitk.Image([1, 1], r.GetPixelID())).dtype.name
    assert mine.components == r.GetNumberOfComponents()
    assert mine.meta("Modality") == r.GetMetaData("Modality")


def test_less_plain_metaimage_headers_go_to_simpleitk(tmp_path):
    from voxelstream_itk.metaimage import plain_info

    base = "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementSpacing = 1 1 1\nElementDataFile = a.raw\n"
    for extra in ["ElementType = MET_LONG\n",  # size follows the writer's C long
                  "ElementType = MET_SHORT\nElementNumberOfChannels = 3\n",
                  "ElementType = MET_SHORT\nTransformMatrix = 1 0 0 0 2 0 0 0 1\n",  # not orthonormal
                  "ElementType = MET_SHORT\nOffset = 1 2 3\nPosition = 1 2 4\n",  # two aliases
                  "ElementType = MET_SHORT\nModality = CT\n"]:
        (tmp_path / "a.mhd").write_text(extra + base)
        assert plain_info(str(tmp_path / "a.mhd")) is None, extra


@pytest.mark.parametrize("lines", [
    "Offset: 5 6 7\n",  # MetaIO also takes ':'
    "offset = 1 2 3\n",  # MetaIO's keys are case-sensitive: SimpleITK ignores this line
    "elementspacing = 2 3 4\nElementSpacing = 1 1 1\n",
    "Offset = \n",  # SimpleITK refuses an empty value
    "Offset = 1 2 3 4\n",  # SimpleITK takes the first three; our header gate refuses it (allowed)
    "BinaryData = False\n",  # ASCII voxels: SimpleITK refuses our binary file
    "BinaryData = no\n",
    "BinaryData = \n",  # MetaIO reads it as False: SimpleITK fails inside the data read
    "HeaderSize = 0\nheadersize = 16\n",
    "Offset = 1 2 3\n",  # plain: read by us, must agree
])
def test_unusual_metaimage_headers_read_as_simpleitk_reads_them(tmp_path, lines):
    """Whatever path a header takes, the geometry and voxels are SimpleITK's, or the file is
    refused with an error (always where SimpleITK refuses it); never a different image."""
    arr = RNG.integers(-2000, 2000, size=(4, 5, 6)).astype("<i2")
    arr.tofile(tmp_path / "a.raw")
    path = tmp_path / "a.mhd"
    path.write_text("ObjectType = Image\nNDims = 3\n" + lines + "DimSize = 6 5 4\nElementType = MET_SHORT\n"
                    "ElementDataFile = a.raw\n")
    try:
        want = sitk.ReadImage(str(path))
    except RuntimeError:
        want = None
    if want is None:
        with pytest.raises(voxelstream.VoxelstreamError):
            np.asarray(voxelstream.read(path).data)
        return
    try:
        vol = voxelstream.read(path)
    except voxelstream.VoxelstreamError:
        assert "1 2 3 4" in lines, "only the over-long Offset may be refused where SimpleITK reads the file"
        return
    np.testing.assert_array_equal(np.asarray(vol.data)[0], sitk.GetArrayFromImage(want))
    assert tuple(vol.spacing[::-1]) == want.GetSpacing()
    np.testing.assert_allclose(vol.index_to_world(np.zeros((1, 3)))[0], want.GetOrigin())


# -- the direct path: regions read straight from the file, written without a dask graph ------------


@pytest.mark.parametrize("kind", ["mhd", "mhd-msb", "mha", "vector", "nii", "nrrd"])
def test_direct_regions_and_stored_volume_equal_simpleitk(tmp_path, kind):
    """Every uncompressed layout gives a BlockSource whose regions (and the store written from
    it, without dask) equal SimpleITK's array; big-endian and multi-component included."""
    if kind == "mhd-msb":
        arr = RNG.integers(-2000, 2000, size=(9, 14, 11)).astype(np.int16)
        path = hand_written_mhd(tmp_path, arr, msb=True, header_size=0, prefix=b"")
    else:
        vector = kind == "vector"
        data = RNG.integers(-2000, 2000, size=(9, 14, 11, 3) if vector else (9, 14, 11)).astype(np.int16)
        img = sitk.GetImageFromArray(data, isVector=vector)
        img.SetSpacing((0.7, 0.8, 2.5))
        path = tmp_path / f"scan.{ {'mhd': 'mhd', 'mha': 'mha', 'vector': 'mhd', 'nii': 'nii', 'nrrd': 'nrrd'}[kind] }"
        sitk.WriteImage(img, str(path), False)
    want = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    want = np.moveaxis(want, -1, 0) if want.ndim == 4 else want[None]
    vol = voxelstream.read(path)
    assert vol.source is not None, "uncompressed data should be read directly"
    region = (slice(0, vol.shape[0]), slice(2, 7), slice(3, 14), slice(1, 10))
    np.testing.assert_array_equal(np.asarray(vol.source.read(region)), want[region])
    store = voxelstream.open_store(tmp_path / "s.zarr", create=True)
    store.write(vol, "v", chunks=4)
    np.testing.assert_array_equal(store.read_region("v", "image", (slice(None),) * 4), want)
