"""Shift-and-stitch (issue 12, a finer detection grid): the stitched map equals the classifier
slid cube by cube at the finer stride, and ``infer --stitch`` writes that map with the right
geometry, equal to scoring the cubes one by one."""

from __future__ import annotations

import numpy as np
import pytest

from test_nodule_support import model_with_random_statistics
import voxelstream
from voxelstream.models import save_model

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from voxelstream_nodules.inference import evaluator, infer_store  # noqa: E402
from voxelstream_nodules.model import MODEL_NAME, NetConfig, apply  # noqa: E402
from voxelstream_nodules.scoring import Point, score_points  # noqa: E402
from voxelstream_nodules.stitch import (  # noqa: E402
    dense_logits, grid_stride, stitched_input_edge, stitched_output_edge,
)

CFG = NetConfig(cube=16, channels=(4, 6), head_channels=8)  # receptive field 16, stride 4


def _model(seed: int, cfg: NetConfig = CFG):
    return model_with_random_statistics(cfg, seed)


def _slide(model, x: np.ndarray, step: int) -> np.ndarray:
    """The classifier on every cube starting at multiples of ``step``: the definition."""
    r = model.receptive_field
    n = [(s - r) // step + 1 for s in x.shape[1:]]
    cubes = np.stack([x[:, z:z + r, y:y + r, w:w + r] for z, y, w in
                      (tuple(i * step for i in idx) for idx in np.ndindex(*n))], axis=1)  # (B, N, r, r, r)
    logits = np.asarray(apply(model, jnp.asarray(cubes.reshape(-1, r, r, r))))[:, 0, 0, 0]
    return logits.reshape(x.shape[0], *n)


@pytest.mark.parametrize("levels", [0, 1, 2])
@pytest.mark.parametrize("shape", [(23, 24, 26), (31, 20, 17)])
def test_stitched_logits_equal_the_classifier_slid_at_the_finer_stride(levels, shape):
    model = _model(3)
    x = np.random.default_rng(levels).normal(size=(2, *shape)).astype(np.float32)
    got = np.asarray(dense_logits(model, jnp.asarray(x), levels))
    step = grid_stride(model, levels)
    assert step == 4 // 2 ** levels
    ref = _slide(model, x, step)
    # the phases are cropped to the shortest one: a prefix of the slid outputs, never another order
    assert got.shape[1:] == tuple(stitched_output_edge(model, s, levels) for s in shape)
    assert all(g <= r for g, r in zip(got.shape[1:], ref.shape[1:]))
    np.testing.assert_allclose(got, ref[:, : got.shape[1], : got.shape[2], : got.shape[3]], atol=2e-5)


def test_level_zero_is_the_plain_network_and_bad_levels_are_refused():
    model = _model(4)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 28, 28, 28)).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(dense_logits(model, x, 0)), np.asarray(model(x)))
    with pytest.raises(ValueError, match="0..2"):
        grid_stride(model, 3)


def test_input_edge_is_the_smallest_that_gives_the_points():
    model = _model(5, NetConfig(cube=20, channels=(4, 6), head_channels=8))  # head kernel 2
    for levels in (0, 1, 2):
        for points in (1, 5, 24):
            edge = stitched_input_edge(model, points, levels)
            assert stitched_output_edge(model, edge, levels) >= points
            assert stitched_output_edge(model, edge - 1, levels) < points
        # the formula agrees with what the network really returns
        for edge in (20, 23, 26):
            x = jnp.zeros((1, edge, 20, 20), jnp.float32)
            assert np.asarray(dense_logits(model, x, levels)).shape[1] == stitched_output_edge(model, edge, levels)


def test_infer_with_stitch_equals_scoring_each_grid_point(tmp_path):
    """The stitched map through the real runner (several tiles, padding at the borders): at
    every grid point's world position it equals the cube scored on its own, and its grid has
    the finer spacing."""
    model = _model(6)
    model_dir = save_model(tmp_path / "model", MODEL_NAME, CFG.to_dict(), model)
    rng = np.random.default_rng(2)
    shape = (21, 26, 19)
    data = rng.uniform(0, 1, shape).astype(np.float32)
    iso = voxelstream.Volume.from_itk_geometry(data, spacing=(1.5, 1.5, 1.5), origin_xyz=(-40.0, 12.5, 3.0),
                                               meta={"series_uid": "1.9"})
    store = voxelstream.open_store(tmp_path / "s.zarr", create=True)
    store.write(iso, "scan", "iso", chunks=(16, 16, 16))
    report = infer_store(store, model_dir, out_name="fine", tile=7, stitch=2)
    assert [o.status for o in report.outcomes] == ["done"]
    prob = store.open("scan", "fine")
    assert prob.spatial_shape == shape  # stride 1: one probability per voxel
    np.testing.assert_allclose(prob.spacing, iso.spacing)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1).reshape(-1, 3)
    pick = grid[rng.choice(len(grid), 60, replace=False)]
    world = prob.index_to_world(pick)
    scored = score_points(store, model_dir, [Point("1.9", tuple(w)) for w in world], batch_size=8)
    np.testing.assert_allclose(np.asarray(prob.data[0])[tuple(pick.T)], scored, atol=1e-5)
    # the same map with stitch 1 is every other voxel of it
    infer_store(store, model_dir, out_name="half", tile=7, stitch=1)
    half = store.open("scan", "half")
    np.testing.assert_allclose(half.spacing, np.multiply(iso.spacing, 2))
    hw = half.index_to_world(np.argwhere(np.ones(half.spatial_shape, bool)))
    at = np.rint(prob.world_to_index(hw)).astype(int)
    np.testing.assert_allclose(np.asarray(half.data[0]).reshape(-1), np.asarray(prob.data[0])[tuple(at.T)], atol=1e-5)
    assert evaluator(model_dir, None, 2).stride == 1
