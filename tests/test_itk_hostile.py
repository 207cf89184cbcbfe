"""The itk reader on hostile files: data files outside the header's folder, values that
crashed SimpleITK, declared sizes past the output limit, compressed data inflated once per
volume, huge slices read in row bands, NIfTI scaling as SimpleITK applies it."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import voxelstream
from voxelstream_itk import rawdata, stream
from voxelstream_itk.slabs import SLAB_BYTES, block_plan, slab_array

RNG = np.random.default_rng(7)


def mhd(folder: Path, name: str, data_file: str, dims=(5, 4, 3), extra: str = "") -> Path:
    x, y, z = dims
    text = (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            f"CompressedData = False\nElementSpacing = 1 1 2\nDimSize = {x} {y} {z}\n{extra}"
            f"ElementType = MET_SHORT\nElementDataFile = {data_file}\n")
    (folder / name).write_text(text)
    return folder / name


def read_error(path: Path, **kw) -> str:
    with pytest.raises(voxelstream.ReadError) as err:
        voxelstream.read(path, **kw)
    return str(err.value)


# -- data files stay in the header's folder -------------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    other = tmp_path / "other_patient"
    other.mkdir()
    arr = np.arange(60, dtype="<i2").reshape(3, 4, 5)
    (other / "secret.raw").write_bytes(arr.tobytes())
    return other / "secret.raw"


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_mhd_data_file_outside_its_folder_is_refused(tmp_path: Path, secret: Path, how: str) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    if how == "absolute":
        target = str(secret)
    elif how == "dotdot":
        target = "../other_patient/secret.raw"
    else:
        os.symlink(secret, scans / "link.raw")
        target = "link.raw"
    path = mhd(scans, "evil.mhd", target)
    msg = read_error(path)
    assert "evil.mhd" in msg and "outside the header's folder" in msg and "--allow-outside-data" in msg
    # the explicit opt-in reads it, and the values are the data file's
    vol = voxelstream.read(path, allow_outside_data=True)
    np.testing.assert_array_equal(vol.data[0].compute(), np.fromfile(secret, "<i2").reshape(3, 4, 5))


def test_mhd_list_and_nhdr_data_outside_are_refused(tmp_path: Path, secret: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    lst = scans / "list.mhd"
    lst.write_text("ObjectType = Image\nNDims = 3\nBinaryData = True\nDimSize = 5 4 1\nElementType = MET_SHORT\n"
                   "ElementSpacing = 1 1 1\nElementDataFile = LIST 2D\n../other_patient/secret.raw\n")
    assert "outside the header's folder" in read_error(lst)
    nhdr = scans / "n.nhdr"
    nhdr.write_text(f"NRRD0004\ntype: short\ndimension: 3\nsizes: 5 4 3\nspacings: 1 1 2\nendian: little\n"
                    f"encoding: raw\ndata file: {secret}\n\n")
    assert "outside the header's folder" in read_error(nhdr)


def test_data_file_inside_a_subfolder_is_fine(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    arr = RNG.integers(-100, 100, size=(3, 4, 5)).astype("<i2")
    (tmp_path / "data" / "v.raw").write_bytes(arr.tobytes())
    vol = voxelstream.read(mhd(tmp_path, "v.mhd", "data/v.raw"))
    np.testing.assert_array_equal(vol.data[0].compute(), arr)


def test_ingest_cli_refuses_outside_data_and_goes_on(tmp_path: Path, secret: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    mhd(scans, "evil.mhd", str(secret))
    good = RNG.integers(-100, 100, size=(3, 4, 5)).astype("<i2")
    (scans / "good.raw").write_bytes(good.tobytes())
    mhd(scans, "good.mhd", "good.raw")
    store = tmp_path / "s.zarr"
    proc = subprocess.run([sys.executable, "-m", "voxelstream.cli.main", "ingest", str(scans), "--store", str(store)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "evil.mhd" in errors[0] and "outside the header's folder" in errors[0]
    st = voxelstream.open_store(store)
    assert st.volume_ids() == ["good"]
    np.testing.assert_array_equal(np.asarray(st.open("good").data[0]), good)


# -- header values SimpleITK would act on ------------------------------------------------------------


@pytest.mark.parametrize("field,value", [("NDims", "1e308"), ("NDims", "-3"), ("DimSize", "5 4 -3"),
                                         ("DimSize", "99999999999 4 3"), ("ElementSpacing", "nan 1 1"),
                                         ("ElementSpacing", "0 1 1"), ("ElementType", "MET_BOGUS"),
                                         ("HeaderSize", "-7"), ("TransformMatrix", "1 0 0 0 1 0 0 0")])
def test_nonsense_metaimage_values_are_one_error_not_a_crash(tmp_path: Path, field: str, value: str) -> None:
    (tmp_path / "v.raw").write_bytes(np.zeros(60, "<i2").tobytes())
    path = mhd(tmp_path, "v.mhd", "v.raw", extra="TransformMatrix = 1 0 0 0 1 0 0 0 1\nHeaderSize = 0\n")
    assert any(ln.startswith(field + " ") for ln in path.read_text().splitlines())
    lines = [ln if not ln.startswith(field + " ") else f"{field} = {value}" for ln in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    # in a child process: SimpleITK ends the process (SIGSEGV) on NDims = 1e308 if it ever sees it
    code = ("import voxelstream, sys\ntry:\n    voxelstream.read(sys.argv[1])\nexcept voxelstream.ReadError as e:\n"
            "    print('ERR', e)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.startswith("ERR ") and "v.mhd" in proc.stdout and proc.stdout.count("\n") == 1


def _nifti_bytes(arr: np.ndarray, slope: float = 0.0, inter: float = 0.0) -> bytes:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.75, 2.0))
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"vx-nifti-{os.getpid()}.nii"
    sitk.WriteImage(img, str(tmp))
    raw = bytearray(tmp.read_bytes())
    tmp.unlink()
    struct.pack_into("<2f", raw, 112, slope, inter)
    return bytes(raw)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("slope,inter", [(0.0, 0.0), (1.0, 0.0), (0.5, -1024.0), (2.5, 3.25)])
def test_nifti_scaling_matches_simpleitk(tmp_path: Path, gz: bool, slope: float, inter: float) -> None:
    arr = RNG.integers(-2000, 3000, size=(7, 6, 5)).astype(np.int16)
    raw = _nifti_bytes(arr, slope, inter)
    path = tmp_path / ("s.nii.gz" if gz else "s.nii")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    got = voxelstream.read(path).data[0].compute()
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


def test_nifti_header_nonsense_is_refused(tmp_path: Path) -> None:
    raw = bytearray(_nifti_bytes(np.zeros((3, 4, 5), np.int16)))
    bad = []
    for off, fmt, value in [(40, "<h", 99), (42, "<h", -4), (70, "<h", 77), (72, "<h", 9), (108, "<f", float("nan"))]:
        r = bytearray(raw)
        struct.pack_into(fmt, r, off, value)
        p = tmp_path / f"b{off}.nii"
        p.write_bytes(bytes(r))
        bad.append(p)
    for p in bad:
        msg = read_error(p)
        assert p.name in msg and "header field" in msg


# -- declared sizes ----------------------------------------------------------------------------------


def test_declared_size_past_the_limit_is_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    # a sparse .raw behind a huge DimSize: the file is as long as the header says, but the
    # volume (here 80 GB) is beyond the configured limit
    raw = tmp_path / "huge.raw"
    with open(raw, "wb") as f:
        f.truncate(200000 * 200000 * 1 * 2)
    path = mhd(tmp_path, "huge.mhd", "huge.raw", dims=(200000, 200000, 1))
    monkeypatch.setenv("VOXELSTREAM_MAX_OUTPUT_BYTES", "50GB")
    msg = read_error(path)
    assert "huge.mhd" in msg and "would write 80 GB" in msg and "VOXELSTREAM_MAX_OUTPUT_BYTES" in msg


def test_huge_slices_are_read_in_row_bands() -> None:
    z, band = block_plan((1, 20000, 20000), 2)
    assert z == 1 and band * 20000 * 2 <= SLAB_BYTES and band == SLAB_BYTES // (20000 * 2)
    assert block_plan((300, 512, 512), 2) == (64, 512)
    assert block_plan((10, 4000, 4000), 4) == (1, 4000)  # 64 MB slice: whole
    # random access (memory maps): the store's 64-slice depth, bands of rows in multiples of 64
    assert block_plan((128, 4096, 4096), 2, deep=True) == (64, 128)
    assert block_plan((1, 20000, 20000), 1, deep=True) == (1, 3328)
    assert block_plan((300, 512, 512), 2, deep=True) == (64, 512)


def test_sparse_raw_slice_values_and_blocks(tmp_path: Path) -> None:
    ny, nx = 3000, 6000  # 36 MB slice of int16; bands forced small
    raw = tmp_path / "wide.raw"
    with open(raw, "wb") as f:
        f.truncate(ny * nx * 2)
        f.seek((1234 * nx + 5678) * 2)
        f.write(np.int16(4321).tobytes())
    path = mhd(tmp_path, "wide.mhd", "wide.raw", dims=(nx, ny, 1))
    band_bytes = 2 * 2**20
    layout_vol = voxelstream.read(path)
    assert layout_vol.data.numblocks[2] == 1  # 36 MB fits one block at the default size
    from voxelstream_itk.reader import inspect_file, raw_layout_of
    arr = rawdata.raw_array(raw_layout_of(inspect_file(str(path))))
    small = slab_array(rawdata.read_raw_block, arr.shape, "int16", None, path=str(raw), offset=0,
                       dtype="<i2", shape=arr.shape, max_bytes=band_bytes)
    assert small.numblocks[1] == -(-ny // (band_bytes // (nx * 2)))
    got = small.compute()
    assert got[0, 1234, 5678] == 4321 and int(np.count_nonzero(got)) == 1


# -- compressed data: inflated once per volume -----------------------------------------------------


def test_gzip_nifti_is_inflated_about_once_whatever_the_block_order(tmp_path: Path, monkeypatch) -> None:
    arr = RNG.integers(-1000, 1000, size=(200, 30, 40)).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    path = tmp_path / "g.nii.gz"
    sitk.WriteImage(img, str(path), True)
    monkeypatch.setattr(stream, "SNAPSHOT_EVERY", 64 * 1024)
    vol = voxelstream.read(path, volume_id=None)
    data = vol.data[0]
    blocks = [data.blocks[i] for i in range(data.numblocks[0])]
    order = [2, 0, 3, 1] + list(range(4, len(blocks)))[::-1]  # out of order, as threads run them
    got = {i: blocks[i].compute(scheduler="sync") for i in order}
    np.testing.assert_array_equal(np.concatenate([got[i] for i in range(len(blocks))]), arr)
    cur = stream.cursor_for(str(path), 31)
    raw_bytes = arr.nbytes + 352
    # restarts come from snapshots, never from the stream's start: decompressed bytes stay
    # close to one pass (at most one snapshot interval extra per restart)
    assert cur.inflations <= len(blocks) + 1
    assert cur.inflations * stream.SNAPSHOT_EVERY < raw_bytes
