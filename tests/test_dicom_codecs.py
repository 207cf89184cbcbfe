"""The dicom reader on the DICOM a hospital archive holds: every transfer syntax pydicom
decodes with its handlers (values equal pydicom's decoding, rescale applied), colour
images, multi-frame objects, images without patient geometry, and one-line reasons for
what stays unsupported. Every file is built here with pydicom and its encoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

import voxelstream
from voxelstream import SourceError
from test_dicom_support import base_dataset, item, place, pydicom_values, save, seq, set_pixels

pytest.importorskip("imagecodecs", reason="the JPEG-family test files are encoded with imagecodecs")
RNG = np.random.default_rng(11)
SHAPE = (64, 72)


def grey_series(folder: Path, encoding: str, *, bits: int = 12, n: int = 3, slope: float = 1.0,
                intercept: float = -1024.0) -> list[Path]:
    uid = generate_uid()
    paths = []
    for k in range(n):
        ds = base_dataset(*SHAPE, series_uid=uid, bits=bits)
        place(ds, (-50.0, -40.0, 100.0 + 2.5 * k))
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.InstanceNumber = k + 1
        dtype = np.uint8 if bits <= 8 else np.uint16
        arr = RNG.integers(0, 2**bits, size=SHAPE).astype(dtype)
        paths.append(save(set_pixels(ds, arr, encoding), folder / f"im{k}.dcm"))
    return paths


ENCODINGS = [
    ("ImplicitVRLittleEndian", 12), ("DeflatedExplicitVRLittleEndian", 12), ("ExplicitVRBigEndian", 16),
    ("RLELossless", 16), ("JPEG2000Lossless", 12), ("JPEG2000", 12), ("JPEGBaseline8Bit", 8),
    ("JPEGExtended12Bit", 12), ("JPEGLosslessSV1", 12), ("JPEGLossless", 16), ("JPEGLSLossless", 16),
    ("JPEGLSNearLossless", 12), ("HTJ2KLossless", 16), ("HTJ2K", 12),
]


@pytest.mark.parametrize("encoding,bits", ENCODINGS, ids=[e for e, _ in ENCODINGS])
def test_every_transfer_syntax_reads_as_pydicom_decodes_it(tmp_path: Path, encoding: str, bits: int) -> None:
    paths = grey_series(tmp_path / "s", encoding, bits=bits, slope=1.0 if bits <= 12 else 0.5)
    vol = voxelstream.read(tmp_path / "s")
    expected = np.stack([pydicom_values(p) for p in paths])
    got = vol.data[0].compute()
    assert vol.shape == (1, 3, *SHAPE)
    np.testing.assert_array_equal(got.astype(np.float64), expected)  # lossless and lossy: pydicom's own values
    assert vol.spacing == pytest.approx((2.5, 0.8, 0.6))
    np.testing.assert_allclose(vol.index_to_world([[2, 10, 20]]), [[-50 + 20 * 0.6, -40 + 10 * 0.8, 105.0]])


def test_lossless_syntaxes_return_the_encoded_values(tmp_path: Path) -> None:
    uid = generate_uid()
    arr = RNG.integers(0, 4096, size=(3, *SHAPE)).astype(np.uint16)
    for k, enc in enumerate(["RLELossless", "JPEGLSLossless", "JPEG2000Lossless"]):
        ds = place(base_dataset(*SHAPE, series_uid=uid, bits=12), (0, 0, 3.0 * k), thickness=3.0)
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        save(set_pixels(ds, arr[k], enc), tmp_path / f"{k}.dcm")
    got = voxelstream.read(tmp_path).data[0].compute()
    np.testing.assert_array_equal(got, arr.astype(np.int32) - 1024)
    assert got.dtype == np.int16


# -- colour ----------------------------------------------------------------------------------------


def colour_image(folder: Path, photometric: str, encoding: str = "ExplicitVRLittleEndian",
                 planar: int = 0) -> Path:
    from pydicom.pixels import convert_color_space

    rgb = RNG.integers(0, 256, size=(*SHAPE, 3)).astype(np.uint8)
    ds = base_dataset(*SHAPE, series_uid=generate_uid(), bits=8, samples=3, photometric=photometric,
                      sop_class=pydicom.uid.SecondaryCaptureImageStorage, modality="OT")
    pixels = rgb if photometric == "RGB" else convert_color_space(rgb, "RGB", "YBR_FULL")
    if photometric == "YBR_FULL_422" and encoding == "ExplicitVRLittleEndian":
        # native 4:2:2: two luma values share one (Cb, Cr) pair: Y1 Y2 Cb Cr per pixel pair
        y, cb, cr = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        packed = np.stack([y[:, 0::2], y[:, 1::2], cb[:, 0::2], cr[:, 0::2]], axis=-1).reshape(SHAPE[0], -1)
        ds.PixelData = packed.tobytes()
        ds["PixelData"].VR = "OB"
        return save(ds, folder / "c.dcm")
    if photometric == "YBR_FULL_422":  # JPEG baseline with 4:2:2 subsampling, as cameras write it
        import imagecodecs

        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
        ds.PixelData = pydicom.encaps.encapsulate([imagecodecs.jpeg8_encode(rgb, level=95, subsampling=(2, 1))])
        ds["PixelData"].VR = "OB"
        return save(ds, folder / "c.dcm")
    if planar:
        ds.PlanarConfiguration = 1
        pixels = np.moveaxis(pixels, -1, 0)
        ds.PixelData = np.ascontiguousarray(pixels).tobytes()
        ds["PixelData"].VR = "OB"
        return save(ds, folder / "c.dcm")
    return save(set_pixels(ds, pixels, encoding), folder / "c.dcm")


@pytest.mark.parametrize("photometric,encoding,planar", [
    ("RGB", "ExplicitVRLittleEndian", 0), ("RGB", "ExplicitVRLittleEndian", 1), ("RGB", "RLELossless", 0),
    ("YBR_FULL", "ExplicitVRLittleEndian", 0), ("YBR_FULL_422", "ExplicitVRLittleEndian", 0),
    ("YBR_FULL_422", "JPEGBaseline8Bit", 0),
])
def test_colour_images_are_three_channel_pixel_images(tmp_path: Path, photometric: str, encoding: str,
                                                       planar: int) -> None:
    path = colour_image(tmp_path, photometric, encoding, planar)
    vol = voxelstream.read(path)
    assert vol.shape == (3, *SHAPE) and vol.units == ("pixel", "pixel") and vol.data.dtype == np.uint8
    np.testing.assert_array_equal(np.moveaxis(vol.data.compute(), 0, -1), pydicom.dcmread(path).pixel_array)
    assert vol.meta["photometric"] == photometric


def test_palette_colour_goes_through_its_lookup_tables(tmp_path: Path) -> None:
    ds = base_dataset(*SHAPE, series_uid=generate_uid(), bits=8, photometric="PALETTE COLOR",
                      sop_class=pydicom.uid.SecondaryCaptureImageStorage, modality="OT")
    lut = [(np.arange(256, dtype=np.int64) * m % 65536).astype(np.uint16) for m in (257, 101, 31)]
    for name, table in zip(("Red", "Green", "Blue"), lut):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", table.astype("<u2").tobytes())
    idx = RNG.integers(0, 256, size=SHAPE).astype(np.uint8)
    path = save(set_pixels(ds, idx, "ExplicitVRLittleEndian"), tmp_path / "p.dcm")
    vol = voxelstream.read(path)
    assert vol.shape == (3, *SHAPE) and vol.data.dtype == np.uint16
    expected = np.stack([t[idx] for t in lut], axis=-1)  # by hand: index -> (R, G, B)
    np.testing.assert_array_equal(np.moveaxis(vol.data.compute(), 0, -1), expected)
    np.testing.assert_array_equal(expected, pydicom_values(path))


def test_colour_series_with_geometry_is_a_three_channel_volume(tmp_path: Path) -> None:
    uid = generate_uid()
    rgb = RNG.integers(0, 256, size=(4, *SHAPE, 3)).astype(np.uint8)
    for k in range(4):
        ds = place(base_dataset(*SHAPE, series_uid=uid, bits=8, samples=3, photometric="RGB", modality="US"),
                   (0, 0, 1.5 * k), thickness=1.5)
        save(set_pixels(ds, rgb[k], "ExplicitVRLittleEndian"), tmp_path / f"{k}.dcm")
    vol = voxelstream.read(tmp_path)
    assert vol.shape == (3, 4, *SHAPE) and vol.units == ("mm",) * 3 and vol.spacing == pytest.approx((1.5, 0.8, 0.6))
    np.testing.assert_array_equal(vol.data.compute(), np.moveaxis(rgb, -1, 0))


# -- multi-frame -------------------------------------------------------------------------------------


def enhanced_ct(path: Path, frames: np.ndarray, positions: list[tuple[float, float, float]],
                encoding: str = "ExplicitVRLittleEndian", slopes=None) -> Path:
    n = len(frames)
    ds = base_dataset(*frames.shape[1:], series_uid=generate_uid(), bits=12,
                      sop_class=pydicom.uid.EnhancedCTImageStorage)
    iop = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]  # sagittal: rows along y, columns along -z
    ds.SharedFunctionalGroupsSequence = seq(item(
        PixelMeasuresSequence=seq(item(PixelSpacing=[0.7, 0.9], SliceThickness=1.25)),
        PlaneOrientationSequence=seq(item(ImageOrientationPatient=iop)),
        PixelValueTransformationSequence=seq(item(RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU")),
    ))
    per = []
    for k in range(n):
        groups = {"PlanePositionSequence": seq(item(ImagePositionPatient=list(positions[k])))}
        if slopes is not None:
            groups["PixelValueTransformationSequence"] = seq(item(RescaleSlope=slopes[k], RescaleIntercept=-1000))
        per.append(item(**groups))
    ds.PerFrameFunctionalGroupsSequence = seq(*per)
    return save(set_pixels(ds, frames, encoding), path)


@pytest.mark.parametrize("encoding", ["ExplicitVRLittleEndian", "JPEG2000Lossless", "RLELossless"])
def test_enhanced_ct_frames_are_placed_by_their_functional_groups(tmp_path: Path, encoding: str) -> None:
    n = 5
    frames = RNG.integers(0, 4096, size=(n, *SHAPE)).astype(np.uint16)
    order = [3, 0, 4, 1, 2]  # frames stored out of spatial order
    # the normal of rows along +y and columns along -z is row x column = -x
    positions = [(10.0 - 1.25 * order[k], -20.0, 30.0) for k in range(n)]
    path = enhanced_ct(tmp_path / "e.dcm", frames, positions, encoding)
    vol = voxelstream.read(path)
    assert vol.shape == (1, n, *SHAPE) and vol.spacing == pytest.approx((1.25, 0.7, 0.9))
    by_position = np.argsort(order)  # frame index at each position along the normal
    np.testing.assert_array_equal(vol.data[0].compute(), frames[by_position].astype(np.int32) - 1024)
    # index (k, i, j) -> IPP of frame at k + i * 0.7 * column cosine + j * 0.9 * row cosine
    idx = np.array([[0, 0, 0], [4, 10, 20], [2, 63, 71]])
    expected = np.array([[10 - 1.25 * k, -20 + 0.9 * j, 30 - 0.7 * i] for k, i, j in idx])
    np.testing.assert_allclose(vol.index_to_world(idx), expected, atol=1e-9)
    assert vol.meta["n_frames"] == n


def test_enhanced_frames_keep_their_own_rescale(tmp_path: Path) -> None:
    frames = RNG.integers(0, 4096, size=(3, *SHAPE)).astype(np.uint16)
    path = enhanced_ct(tmp_path / "e.dcm", frames, [(0, 0, 0), (-1.25, 0, 0), (-2.5, 0, 0)], slopes=[1, 2, 0.5])
    got = voxelstream.read(path).data[0].compute()
    expected = frames * np.array([1, 2, 0.5])[:, None, None] - 1000
    np.testing.assert_array_equal(got, expected.astype(np.float32))


def test_rt_dose_grid_frame_offsets_and_dose_scaling(tmp_path: Path) -> None:
    n = 4
    frames = RNG.integers(0, 60000, size=(n, *SHAPE)).astype(np.uint16)
    ds = base_dataset(*SHAPE, series_uid=generate_uid(), bits=16, sop_class=pydicom.uid.RTDoseStorage,
                      modality="RTDOSE")
    place(ds, (-100.0, -80.0, -30.0), spacing=(2.0, 2.5))
    ds.GridFrameOffsetVector = [-30.0, -27.0, -24.0, -21.0]  # absolute z, as many planning systems write it
    ds.DoseGridScaling = 1.5e-5
    ds.FrameIncrementPointer = 0x3004000C
    path = save(set_pixels(ds, frames, "ExplicitVRLittleEndian"), tmp_path / "dose.dcm")
    vol = voxelstream.read(path)
    assert vol.shape == (1, n, *SHAPE) and vol.spacing == pytest.approx((3.0, 2.0, 2.5))
    np.testing.assert_allclose(vol.data[0].compute(), (frames * 1.5e-5).astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(vol.index_to_world([[3, 1, 2]]), [[-100 + 2 * 2.5, -80 + 1 * 2.0, -21.0]])


def test_multiframe_secondary_capture_without_geometry_is_a_pixel_volume(tmp_path: Path) -> None:
    frames = RNG.integers(0, 256, size=(6, *SHAPE)).astype(np.uint8)
    ds = base_dataset(*SHAPE, series_uid=generate_uid(), bits=8, modality="OT",
                      sop_class=pydicom.uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage)
    path = save(set_pixels(ds, frames, "ExplicitVRLittleEndian"), tmp_path / "sc.dcm")
    vol = voxelstream.read(path)
    assert vol.shape == (1, 6, *SHAPE) and vol.units == ("pixel",) * 3
    np.testing.assert_array_equal(vol.data[0].compute(), frames)


def test_single_image_without_geometry_is_a_2d_pixel_image(tmp_path: Path) -> None:
    arr = RNG.integers(0, 4096, size=SHAPE).astype(np.uint16)
    ds = base_dataset(*SHAPE, series_uid=generate_uid(), bits=12, modality="OT",
                      sop_class=pydicom.uid.SecondaryCaptureImageStorage)
    path = save(set_pixels(ds, arr, "JPEGLSLossless"), tmp_path / "sc.dcm")
    vol = voxelstream.read(path)
    assert vol.shape == (1, *SHAPE) and vol.spatial_ndim == 2 and vol.units == ("pixel", "pixel")
    np.testing.assert_array_equal(vol.data[0].compute(), arr)


def test_multiframe_objects_sharing_a_series_get_their_instance_uids(tmp_path: Path) -> None:
    frames = RNG.integers(0, 4096, size=(2, *SHAPE)).astype(np.uint16)
    a = enhanced_ct(tmp_path / "a.dcm", frames, [(0, 0, 0), (1.25, 0, 0)])
    b = enhanced_ct(tmp_path / "b.dcm", frames, [(0, 0, 0), (1.25, 0, 0)])
    for p in (a, b):  # same series
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = "1.2.3.4"
        ds.save_as(p, enforce_file_format=True)
    found = [s for s in voxelstream.discover([tmp_path]) if not isinstance(s, SourceError)]
    assert sorted(s.volume_id for s in found) == sorted(pydicom.dcmread(p).SOPInstanceUID for p in (a, b))


def _bad_frame_count(raw: bytes) -> bytes:
    tag = b"\x28\x00\x08\x00IS\x02\x00"  # NumberOfFrames, explicit VR little endian, 2 bytes
    assert raw.count(tag + b"3 ") == 1
    return raw.replace(tag + b"3 ", tag + b"ab")


@pytest.mark.parametrize("change,words", [
    (lambda ds: (setattr(ds, "SamplesPerPixel", 4), setattr(ds, "PhotometricInterpretation", "CMYK")), "CMYK"),
    (_bad_frame_count, "NumberOfFrames"),
    (lambda ds: ds.PerFrameFunctionalGroupsSequence.pop(), "PerFrameFunctionalGroupsSequence"),
])
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the malformed value on purpose
def test_unsupported_or_damaged_objects_get_one_line(tmp_path: Path, change, words: str) -> None:
    frames = RNG.integers(0, 4096, size=(3, *SHAPE)).astype(np.uint16)
    path = enhanced_ct(tmp_path / "x" / "e.dcm", frames, [(0, 0, 0), (-1.25, 0, 0), (-2.5, 0, 0)])
    if change is _bad_frame_count:
        path.write_bytes(change(path.read_bytes()))
    else:
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(path, enforce_file_format=True)
    found = list(voxelstream.discover([tmp_path / "x"]))
    assert len(found) == 1 and isinstance(found[0], SourceError)
    assert words in found[0].reason and "\n" not in found[0].reason and "e.dcm" in found[0].reason + found[0].location


def test_colour_image_through_ingest_is_a_2d_rgb_store_image(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = colour_image(tmp_path / "in", "RGB", "RLELossless")
    proc = subprocess.run([sys.executable, "-m", "voxelstream.cli.main", "ingest", str(tmp_path / "in"), "--store",
                           str(tmp_path / "s.zarr")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    store = voxelstream.open_store(tmp_path / "s.zarr")
    (vid,) = store.volume_ids()
    vol = store.open(vid)
    assert vol.shape == (3, *SHAPE) and vol.axes == ("y", "x") and vol.units == ("pixel", "pixel")
    np.testing.assert_array_equal(np.moveaxis(np.asarray(vol.data), 0, -1), pydicom.dcmread(path).pixel_array)


@pytest.mark.parametrize("encoding", ["RLELossless", "JPEG2000Lossless", "ExplicitVRLittleEndian"])
def test_a_file_damaged_after_discovery_fails_naming_it(tmp_path: Path, encoding: str) -> None:
    paths = grey_series(tmp_path / "s", encoding, bits=12)
    vol = voxelstream.read(tmp_path / "s")
    raw = paths[1].read_bytes()
    paths[1].write_bytes(raw[: len(raw) - 3000])  # pixel data cut after the scan
    with pytest.raises(voxelstream.ReadError) as err:
        vol.data.compute()
    assert "im1.dcm" in str(err.value) and "\n" not in str(err.value)
