"""Fundus preprocessing: the stages conform (check_stage), the scaling agrees with Pillow's
bilinear resize, the local average with a hand-built Gaussian, and ``dr preprocess`` acts on
photographs only, skipping what is done."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import voxelstream
from voxelstream import Volume
from voxelstream.testing import check_stage
from voxelstream_dr.fundus import local_average, measure_fundus, preprocess_array, scale_weights, crop_block
from voxelstream_dr.phantoms import draw_fundus
from voxelstream_dr.preprocess import preprocess_store
from voxelstream_dr.stages import BORDER_STAGE, CROP_STAGE, LOCAL_AVERAGE_STAGE, measure_volume


@pytest.fixture(scope="module")
def photo():
    arr, info = draw_fundus(3, np.random.default_rng(1), width=200)
    return Volume.from_array(arr, channel_axis=-1, units="pixel", meta={"modality": "OP"}), info


def test_stages_conform(photo):
    vol, _ = photo
    r, cy, cx = measure_volume(vol)
    geo = {"radius": 24, "fundus_radius": r, "centre": (cy, cx), "chunks": 16}
    check_stage(CROP_STAGE, vol, params=geo)  # bit-identical: taps summed in one order
    cropped = CROP_STAGE(vol, **geo)
    check_stage(LOCAL_AVERAGE_STAGE, cropped.replace(data=cropped.data.compute()), params={"sigma": 2.5})
    check_stage(BORDER_STAGE, vol, params={"fraction": 0.8, "value": 7})


def test_chain_equals_whole_image_recipe_and_keeps_geometry(photo):
    vol, info = photo
    out = BORDER_STAGE(LOCAL_AVERAGE_STAGE(CROP_STAGE(vol, radius=24, chunks=20), sigma=24 / 30))
    np.testing.assert_array_equal(out.data.compute(), preprocess_array(vol.data.compute(), 24))
    assert [h["stage"] for h in out.meta["history"]] == ["fundus_crop", "local_average", "fundus_border"]
    # the output's centre maps back to the fundus centre in the original photograph's pixels
    r, cy, cx = measure_volume(vol)
    np.testing.assert_allclose(out.index_to_world([[23.5, 23.5]])[0], [cx, cy], atol=1e-9)
    assert out.spacing == pytest.approx((r / 24, r / 24)) and out.units == ("pixel", "pixel")
    assert abs(r - info.radius) < 0.04 * info.radius


def test_measure_uses_the_middle_row_only():
    img = np.zeros((3, 50, 80), np.uint8)
    img[:, 25, 10:50] = 200  # 40 bright pixels: radius 20, centre x 29.5
    img[:, 0:10, :] = 255  # cut-off top rows must not matter
    geo = measure_fundus(img[:, 25, :], 50)
    assert (geo.radius, geo.centre_y, geo.centre_x) == (20.0, 24.5, 29.5)


def test_scaling_agrees_with_pillow_bilinear_in_the_interior():
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (1, 90, 120)).astype(np.float32)
    for n_out in (42, 150):  # shrinking (anti-aliased) and enlarging; 4 * n_out / 3 columns whole
        s, w_out = n_out / 90, 4 * n_out // 3
        # our square crop of radius n_out/2 about the image centre is Pillow's resize to
        # (w_out, n_out) without its first and last (w_out - n_out) / 2 columns
        y0, wy = scale_weights(0, n_out, n_out // 2, 90 / 2 - 0.5, s, 90)
        x0, wx = scale_weights(0, n_out, n_out // 2, 120 / 2 - 0.5, s, 120)
        ours = crop_block(img[:, y0:y0 + wy.shape[1], x0:x0 + wx.shape[1]], wy, wx)[0]
        ref = np.asarray(Image.fromarray(img[0], mode="F").resize((w_out, n_out), Image.Resampling.BILINEAR))
        off = (w_out - n_out) // 2
        m = int(np.ceil(1 / s)) + 1  # pixels near the border: Pillow renormalises, we count black
        np.testing.assert_allclose(ours[m:-m, :], ref[m:-m, off:off + n_out], atol=2e-2)


def test_local_average_of_a_dot_matches_a_hand_built_gaussian():
    sigma, v = 1.7, 10.0
    img = np.full((1, 31, 31), 100, np.float32)
    img[0, 15, 15] += v
    out = local_average(img, sigma).astype(float)
    radius = int(4 * sigma + 0.5)
    k = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    k /= k.sum()
    blur = v * np.outer(k, k)  # the blurred dot on top of a flat 100
    expected = np.clip(np.rint(4 * (100 + (np.abs(np.arange(31) - 15)[:, None] == 0) * (np.abs(np.arange(31) - 15) == 0) * v)
                               - 4 * (100 + np.pad(blur, 15 - radius)) + 128), 0, 255)
    np.testing.assert_array_equal(out[0], expected)


def _jpeg(arr: np.ndarray, path) -> None:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue())


def test_preprocess_acts_on_photographs_only_and_skips_what_is_done(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        _jpeg(draw_fundus(i + 2, np.random.default_rng(i), width=160)[0], folder / f"{i}_left.jpeg")
    store = voxelstream.open_store(tmp_path / "s.zarr", create=True)
    from voxelstream.ingest import ingest

    ingest([str(folder)], store)
    ct = Volume.from_array(np.zeros((4, 8, 8), np.int16), meta={"modality": "CT"})
    store.write(ct, "ct1", "image")
    black = Volume.from_array(np.zeros((20, 30, 3), np.uint8), channel_axis=-1, units="pixel", meta={"modality": "OP"})
    store.write(black, "black", "image")
    capsys.readouterr()
    report = preprocess_store(store, radius=16, name="fundus")
    text = capsys.readouterr()
    assert store.volume_ids(name="fundus") == ["0_left", "1_left"]
    assert "note: ct1: modality CT, not OP" in text.err and "error: black: " in text.err
    assert report.exit_code == 1
    got = store.read_region("1_left", "fundus", (slice(None),) * 3)
    src = store.read_region("1_left", "image", (slice(None),) * 3)
    np.testing.assert_array_equal(got, preprocess_array(src, 16))
    preprocess_store(store, radius=16, name="fundus")
    assert capsys.readouterr().out.count("(already done)") == 2


@pytest.mark.parametrize("chunks", [17, 64])
def test_preprocess_is_the_same_for_every_stored_chunking(tmp_path, chunks):
    from voxelstream.ingest import ingest

    folder = tmp_path / "in"
    folder.mkdir()
    _jpeg(draw_fundus(4, np.random.default_rng(7), width=220)[0], folder / "5_right.jpeg")
    results = []
    for name, c in (("whole", None), ("tiled", chunks)):
        store = voxelstream.open_store(tmp_path / f"{name}.zarr", create=True)
        ingest([str(folder)], store, chunks=c)
        preprocess_store(store, radius=40)
        results.append(store.read_region("5_right", "fundus", (slice(None),) * 3))
    np.testing.assert_array_equal(results[0], results[1])
