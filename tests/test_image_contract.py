"""The image contract: channel-first images with 2 or 3 spatial axes, from array to store to
stage to store, checked against SimpleITK, ome-zarr-py and hand computations."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import voxelstream as vs
from voxelstream.stages import halo_depths
from voxelstream.testing import check_stage, sample_volume


def _rgb(h: int = 37, w: int = 53, seed: int = 0) -> np.ndarray:
    """A natural (H, W, 3) uint8 photograph-like array."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([yy * 3, xx * 2, (yy + xx)], axis=-1) % 256
    return (base + rng.integers(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)


def test_from_array_moves_the_channel_axis_first_and_keeps_pixels():
    rgb = _rgb()
    vol = vs.Volume.from_array(rgb, channel_axis=-1, units="pixel")
    assert vol.shape == (3, 37, 53) and vol.spatial_ndim == 2 and vol.channels == 3
    assert vol.axes == ("y", "x") and vol.units == ("pixel", "pixel")
    assert vol.affine.shape == (3, 3) and vol.spacing == (1.0, 1.0)
    np.testing.assert_array_equal(vol.data.compute(), np.moveaxis(rgb, -1, 0))
    ct = vs.Volume.from_array(np.zeros((4, 5, 6), np.int16), spacing=(2.5, 0.7, 0.8))
    assert ct.shape == (1, 4, 5, 6) and ct.axes == ("z", "y", "x") and ct.units == ("mm",) * 3


def test_from_array_rejects_what_it_cannot_place():
    with pytest.raises(ValueError, match="2 or 3 spatial axes"):
        vs.Volume.from_array(np.zeros(10))
    with pytest.raises(ValueError, match="2 or 3 spatial axes"):
        vs.Volume.from_array(np.zeros((3, 10)), channel_axis=0)
    with pytest.raises(ValueError, match="spacing must have 3 values"):
        vs.Volume.from_array(np.zeros((4, 5, 6)), spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="origin must have 2 values"):
        vs.Volume.from_array(np.zeros((5, 6)), origin=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="units"):
        vs.Volume.from_array(np.zeros((5, 6)), units="inch")
    # a natural (H, W, 3) photograph is not silently taken as a 3-D volume of H slices
    with pytest.raises(ValueError, match="channel_axis=-1"):
        vs.Volume.from_array(_rgb())


def test_old_style_spatial_only_data_is_refused_with_a_hint():
    with pytest.raises(ValueError, match="channel-first"):
        vs.Volume(da.zeros((4, 5, 6)), np.eye(4))


@pytest.mark.parametrize("seed", range(3))
def test_2d_index_to_world_matches_simpleitk(seed):
    rng = np.random.default_rng(seed)
    spacing = tuple(rng.uniform(0.1, 3.0, 2))  # (y, x)
    origin = tuple(rng.uniform(-50, 50, 2))  # (y, x), array order
    theta = rng.uniform(0, np.pi)
    direction = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    vol = vs.Volume.from_array(np.zeros((7, 9)), spacing=spacing, origin=origin, direction=direction)
    img = sitk.Image(9, 7, sitk.sitkUInt8)
    img.SetSpacing(spacing[::-1])
    img.SetOrigin(origin[::-1])
    img.SetDirection(direction.ravel())
    idx = rng.uniform(-2, 10, (20, 2))  # (y, x)
    expected = np.array([img.TransformContinuousIndexToPhysicalPoint(p[::-1].tolist()) for p in idx])
    np.testing.assert_allclose(vol.index_to_world(idx), expected, atol=1e-9)
    np.testing.assert_allclose(vol.world_to_index(expected), idx, atol=1e-9)
    np.testing.assert_allclose(vol.direction, direction, atol=1e-12)
    assert vol.origin == pytest.approx(origin)


def test_halo_forms_give_one_depth_per_spatial_axis():
    assert halo_depths(2, ("y", "x")) == (2, 2)
    assert halo_depths((1, 2, 3), ("z", "y", "x")) == (1, 2, 3)
    assert halo_depths({"y": 4}, ("z", "y", "x")) == (0, 4, 0)
    with pytest.raises(ValueError, match="2 spatial axes"):
        halo_depths((1, 2, 3), ("y", "x"))
    with pytest.raises(ValueError, match=r"\['z'\]"):
        halo_depths({"z": 1}, ("y", "x"))


def _blur(block: np.ndarray, sigma: float = 1.0, gain: float = 1.0) -> np.ndarray:
    """Gaussian blur of every channel on the spatial axes only."""
    out = ndimage.gaussian_filter(block.astype(np.float32), (0, *(sigma,) * (block.ndim - 1)), mode="nearest", truncate=3.0)
    return out * gain


def _halo(sigma: float = 1.0) -> int:
    # declares only sigma: the stage's other parameter (gain) must not be passed to it
    return int(np.ceil(3.0 * sigma))


BLUR = vs.blockwise_stage("blur", _blur, halo=_halo)


def test_a_colour_stage_on_a_2d_photograph_equals_scipy_on_the_whole_image():
    rgb = _rgb(61, 47)
    vol = vs.Volume.from_array(da.from_array(rgb, chunks=(13, 11, 3)), channel_axis=-1, units="pixel")
    out = BLUR(vol, sigma=1.5, gain=2.0)
    ref = ndimage.gaussian_filter(np.moveaxis(rgb, -1, 0).astype(np.float32), (0, 1.5, 1.5), mode="nearest", truncate=3.0) * 2
    np.testing.assert_allclose(out.data.compute(), ref, rtol=1e-5, atol=1e-4)
    assert out.shape == (3, 61, 47) and out.units == ("pixel", "pixel")


def test_the_dtype_probe_sees_the_real_channel_count():
    def luminance_only_for_rgb(block: np.ndarray) -> np.ndarray:
        assert block.shape[0] == 3, f"a colour stage got {block.shape[0]} channels"
        return block.astype(np.float32)

    vol = vs.Volume.from_array(_rgb(), channel_axis=-1, units="pixel")
    out = vs.blockwise_stage("colour", luminance_only_for_rgb, halo=1)(vol)
    assert out.data.dtype == np.float32
    np.testing.assert_array_equal(out.data.compute(), vol.data.compute().astype(np.float32))


@pytest.mark.parametrize("shape,channels", [((40, 44), 3), ((24, 30, 26), 1), ((20, 22, 18), 2)])
def test_check_stage_passes_correct_stages_in_2d_and_3d(shape, channels):
    vol = sample_volume(shape, channels=channels, dtype=np.float32)
    check_stage(BLUR, vol, params={"sigma": 1.0}, atol=1e-5)


@pytest.mark.parametrize("shape,channels", [((40, 44), 3), ((24, 30, 26), 1)])
def test_check_stage_catches_a_halo_too_small(shape, channels):
    short = vs.blockwise_stage("short-blur", _blur, halo=1)  # sigma 2 needs 6
    with pytest.raises(AssertionError, match="differs from chunks"):
        check_stage(short, sample_volume(shape, channels=channels, dtype=np.float32), params={"sigma": 2.0}, atol=1e-5)


def test_check_stage_reports_a_crashing_stage_as_an_assertion():
    def needs_three_spatial_axes(block: np.ndarray) -> np.ndarray:
        z, y, x = block.shape[1:]  # breaks on 2-D input
        return block

    with pytest.raises(AssertionError, match="raised ValueError"):
        check_stage(vs.blockwise_stage("3d-only", needs_three_spatial_axes, dtype=np.float32),
                    sample_volume((30, 30), channels=3))


@pytest.mark.parametrize("kind", ["rgb-pixels", "ct-mm"])
def test_read_store_stage_store_and_ome_axes(tmp_path, kind):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    if kind == "rgb-pixels":
        from PIL import Image

        rgb = _rgb(300, 410)
        Image.fromarray(rgb).save(tmp_path / "photo.png")
        raw = np.asarray(Image.open(tmp_path / "photo.png"))
        vol = vs.Volume.from_array(raw, channel_axis=-1, units="pixel", meta={"modality": "XC"})
        axes, units = ["c", "y", "x"], [None, None, None]
        expected_pixels = np.moveaxis(rgb, -1, 0)
    else:
        arr = np.random.default_rng(3).integers(-1000, 400, (30, 40, 50)).astype(np.int16)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.8, 0.7, 2.5))
        img.SetOrigin((-10.0, 20.0, -300.0))
        sitk.WriteImage(img, str(tmp_path / "ct.mha"))
        vol = vs.read(str(tmp_path / "ct.mha"))
        axes, units = ["c", "z", "y", "x"], [None, "millimeter", "millimeter", "millimeter"]
        expected_pixels = arr[None]
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(vol, "v", "image")
    back = store.open("v")
    assert back.units == vol.units and back.axes == vol.axes
    np.testing.assert_array_equal(back.data.compute(), expected_pixels)
    blurred = BLUR(back, sigma=1.0)
    store.write(blurred, "v", "blurred")
    again = store.open("v", "blurred")
    np.testing.assert_allclose(again.data.compute(), blurred.data.compute())
    np.testing.assert_allclose(again.affine, vol.affine)
    for name in ("image", "blurred"):
        node = next(iter(Reader(parse_url(str(store.path / store.image_path("v", name))))()))
        assert [a["name"] for a in node.metadata["axes"]] == axes
        assert [a.get("unit") for a in node.metadata["axes"]] == units
        assert node.data[0].shape == vol.shape
    if kind == "rgb-pixels":  # a photograph is a few large tiles, not 64 x 64 ones
        assert back.data.chunksize == (3, 300, 410)
