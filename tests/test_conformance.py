"""voxelstream.testing must catch the faults it promises to catch."""

import dask.array as da
import numpy as np
import pytest

import voxelstream as vs
from voxelstream.specs import StageSpec
from voxelstream.testing import check_stage, sample_volume


def _box_mean(block):
    from scipy import ndimage

    return ndimage.uniform_filter(block.astype(np.float32), 3, mode="nearest")


def test_a_correct_blockwise_stage_conforms():
    check_stage(vs.blockwise_stage("box", _box_mean, halo=1))


def test_missing_halo_is_caught():
    with pytest.raises(AssertionError, match="differs from chunks"):
        check_stage(vs.blockwise_stage("box", _box_mean, halo=0))


def test_eager_stage_is_caught():
    def eager(volume):
        return volume.replace(data=da.from_array(volume.data.compute()))

    with pytest.raises(AssertionError, match="not lazy"):
        check_stage(StageSpec("eager", eager))


def test_whole_volume_stage_is_caught():
    def global_norm(volume):
        d = volume.data.astype(np.float32)
        return volume.replace(data=d / d.max())

    with pytest.raises(AssertionError, match="materialises the whole image"):
        check_stage(StageSpec("norm", global_norm))


def test_nondeterministic_stage_is_caught():
    rng = np.random.default_rng()

    def noisy(block):
        return block + rng.normal(size=block.shape)

    with pytest.raises(AssertionError, match="deterministic|differs"):
        check_stage(vs.blockwise_stage("noisy", noisy, dtype=np.float64))


def test_dropped_meta_and_changed_direction_are_caught():
    def forget(volume):
        return vs.Volume.from_array(volume.data, spacing=volume.spacing, origin=volume.origin, channel_axis=0)

    with pytest.raises(AssertionError, match="direction cosines changed.*meta keys dropped"):
        check_stage(StageSpec("forget", forget))


def test_stage_output_records_history_and_keeps_geometry():
    vol = sample_volume((8, 8, 8))
    out = vs.blockwise_stage("box", _box_mean, halo=1)(vol)
    np.testing.assert_array_equal(out.affine, vol.affine)
    assert out.meta["history"][-1]["stage"] == "box"
    assert "history" not in vol.meta  # the input is untouched
