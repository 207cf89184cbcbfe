"""The nodule CNN: its convolution, dense == per-cube evaluation, saving and loading."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import voxelstream
from voxelstream.models import save_model
from voxelstream_nodules.model import MODEL_NAME, DepthSlicedConv, NetConfig, apply, build, layer_sizes


@pytest.mark.parametrize("kernel", [3, 5])
def test_depth_sliced_conv_equals_3d_convolution(kernel):
    conv = DepthSlicedConv(3, 4, kernel, init=np.random.default_rng(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 10, 11, 3)).astype(np.float32))
    ref = jax.lax.conv_general_dilated(x, conv.kernel[...], (1, 1, 1), "VALID",
                                       dimension_numbers=("NDHWC", "DHWIO", "NDHWC")) + conv.bias[...]
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_layer_sizes_and_geometry():
    cfg = NetConfig(cube=48, channels=(8, 16))
    assert layer_sizes(cfg) == [22, 9]  # 48-4=44 -> 22; 22-4=18 -> 9: the head is 9^3
    assert cfg.to_dict()["receptive_field"] == 48 and cfg.to_dict()["stride"] == 4
    with pytest.raises(ValueError, match="must be even"):
        layer_sizes(NetConfig(cube=46, channels=(8, 16)))  # 46-4 = 42 -> 21; 21-4 = 17 odd


def test_dense_evaluation_equals_cube_by_cube():
    cfg = NetConfig(cube=16, channels=(4, 8), head_channels=8)
    model = build(cfg, seed=1)
    # give the batch norms non-trivial running statistics, then switch to eval mode
    model.train()
    apply(model, jnp.asarray(np.random.default_rng(2).random((4, 16, 16, 16), np.float32)))
    model.eval()
    vol = np.random.default_rng(3).random((16 + 2 * 4, 16 + 3 * 4, 16 + 1 * 4), np.float32)
    assert model.receptive_field == 16 and model.stride == 4
    dense = np.asarray(apply(model, jnp.asarray(vol[None])))[0]
    assert dense.shape == (3, 4, 2)
    s = model.stride
    starts = list(np.ndindex(*dense.shape))
    cubes = np.stack([vol[i * s : i * s + 16, j * s : j * s + 16, k * s : k * s + 16] for i, j, k in starts])
    each = np.asarray(apply(model, jnp.asarray(cubes))).reshape(-1)  # eval mode: no batch coupling
    np.testing.assert_allclose(dense.reshape(-1), each, rtol=1e-4, atol=1e-5)


def test_save_and_load_model_by_name(tmp_path):
    cfg = NetConfig(cube=16, channels=(4, 8), head_channels=8)
    model = build(cfg, seed=4)
    model.train()
    x = jnp.asarray(np.random.default_rng(5).random((3, 16, 16, 16), np.float32))
    apply(model, x)  # updates batch statistics, which must be saved too
    model.eval()
    save_model(tmp_path / "m", MODEL_NAME, cfg.to_dict(), model)
    loaded = voxelstream.load_model(tmp_path / "m")
    np.testing.assert_array_equal(np.asarray(apply(loaded, x)), np.asarray(apply(model, x)))
    fresh = build(cfg, seed=4)
    fresh.eval()
    assert not np.array_equal(np.asarray(apply(fresh, x)), np.asarray(apply(model, x)))


def test_load_model_errors_name_the_problem(tmp_path):
    with pytest.raises(voxelstream.VoxelstreamError, match="model.json: missing"):
        voxelstream.load_model(tmp_path)
    (tmp_path / "model.json").write_text('{"model": "no-such-model", "config": {}}')
    with pytest.raises(voxelstream.UnknownNameError, match="no-such-model"):
        voxelstream.load_model(tmp_path)
    cfg = NetConfig(cube=16, channels=(4, 8), head_channels=8)
    save_model(tmp_path, MODEL_NAME, cfg.to_dict(), build(cfg))
    (tmp_path / "model.json").write_text(
        '{"model": "%s", "config": {"cube": 16, "channels": [4, 8], "head_channels": 4}}' % MODEL_NAME)
    with pytest.raises(voxelstream.VoxelstreamError, match="has shape"):
        voxelstream.load_model(tmp_path)
