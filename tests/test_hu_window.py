"""The ``hu_window`` stage: presets, explicit bounds, output dtypes and their documented error."""

import dask.array as da
import numpy as np
import pytest

import voxelstream as vs
from voxelstream.testing import check_stage, sample_volume


def _hu_volume(values: np.ndarray) -> vs.Volume:
    return vs.Volume.from_itk_geometry(da.from_array(values, chunks=7), spacing=(2.5, 0.7, 0.7),
                                       meta={"modality": "CT", "units": "HU"})


@pytest.fixture(scope="module")
def ramp() -> np.ndarray:
    """Every integer HU from -1500 to 2000 (beyond every preset on both sides)."""
    return np.arange(-1500, 2000, dtype=np.int16)[:3500].reshape(14, 10, 25)


def _expected(hu: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The window by hand, channel-first like the stage's output."""
    return ((np.minimum(np.maximum(hu.astype(np.float64), lo), hi) - lo) / (hi - lo))[None]


@pytest.mark.parametrize(("preset", "lo", "hi"), [
    ("lung", -1000, 400),       # LUNA16
    ("mediastinum", -160, 240), # W400 / L40
    ("bone", -450, 1050),       # W1500 / L300
])
def test_presets_clip_and_scale_to_unit_range(ramp, preset, lo, hi):
    out = vs.get_stage("hu_window")(_hu_volume(ramp), preset=preset)
    got = out.data.compute()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, _expected(ramp, lo, hi), rtol=0, atol=1e-7)
    assert got.min() == 0.0 and got.max() == 1.0
    assert out.meta["units"] == "window" and out.meta["window"]["lo"] == lo


def test_default_is_the_lung_window_and_explicit_bounds_work(ramp):
    stage = vs.get_stage("hu_window")
    default = stage(_hu_volume(ramp)).data.compute()
    explicit = stage(_hu_volume(ramp), lo=-1000, hi=400).data.compute()
    np.testing.assert_array_equal(default, explicit)
    np.testing.assert_allclose(stage(_hu_volume(ramp), lo=0, hi=100).data.compute(), _expected(ramp, 0, 100), atol=1e-7)


def test_float16_error_is_within_the_documented_bound(ramp):
    got = vs.get_stage("hu_window")(_hu_volume(ramp), preset="lung", dtype="float16").data.compute()
    assert got.dtype == np.float16
    assert np.abs(got.astype(np.float64) - _expected(ramp, -1000, 400)).max() <= 2.0**-12


def test_uint8_quantises_to_0_255_within_half_a_step(ramp):
    got = vs.get_stage("hu_window")(_hu_volume(ramp), preset="lung", dtype="uint8").data.compute()
    assert got.dtype == np.uint8 and got.min() == 0 and got.max() == 255
    err = np.abs(got / 255.0 - _expected(ramp, -1000, 400))
    assert err.max() <= 0.5 / 255 + 1e-6
    # in HU, the documented (hi - lo) / 510
    assert err.max() * 1400 <= 1400 / 510 + 1e-3


def test_records_itself_and_conforms():
    check_stage("hu_window", sample_volume((20, 22, 18)), params={"preset": "bone"})
    out = vs.get_stage("hu_window")(sample_volume((8, 8, 8)), preset="mediastinum")
    assert out.meta["history"][-1]["stage"] == "hu_window"
    assert out.meta["history"][-1]["params"]["preset"] == "mediastinum"


@pytest.mark.parametrize(("params", "match"), [
    ({"preset": "brain"}, "unknown preset"),
    ({"lo": -1000}, "both lo and hi"),
    ({"lo": 400, "hi": -1000}, "greater than lo"),
    ({"preset": "lung", "lo": -1, "hi": 1}, "not both"),
    ({"dtype": "int32"}, "dtype"),
])
def test_bad_parameters_are_user_errors(params, match):
    with pytest.raises(vs.VoxelstreamError, match=match):
        vs.get_stage("hu_window")(sample_volume((8, 8, 8)), **params)


@pytest.mark.parametrize("dtype", ["float32", "float16", "uint8"])
def test_direct_regions_equal_the_graph(tmp_path, dtype):
    """A stored input (a BlockSource): the window is applied region by region, no graph."""
    rng = np.random.default_rng(7)
    hu = rng.integers(-1500, 2000, (13, 20, 17)).astype(np.int16)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(_hu_volume(hu), "v", chunks=8)
    out = vs.get_stage("hu_window")(store.open("v"), preset="lung", dtype=dtype)
    assert out.source is not None and out.dtype == np.dtype(dtype)
    region = (slice(0, 1), slice(2, 11), slice(5, 20), slice(0, 9))
    want = vs.get_stage("hu_window")(_hu_volume(hu), preset="lung", dtype=dtype).data.compute()
    np.testing.assert_array_equal(out.source.read(region), want[region])
    np.testing.assert_array_equal(out.data.compute(), want)
