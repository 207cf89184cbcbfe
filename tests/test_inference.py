"""Dense sliding-window inference (``infer``) against cube-by-cube evaluation (``score``) and
against the model applied by hand to cubes cut with numpy."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest

from test_nodule_support import model_with_random_statistics
import voxelstream
from voxelstream.errors import VoxelstreamError
from voxelstream.models import save_model

jax = pytest.importorskip("jax")

from voxelstream_nodules.inference import dense_grid, infer_store  # noqa: E402
from voxelstream_nodules.infer_score_cmd import INFER, SCORE  # noqa: E402
from voxelstream_nodules.model import MODEL_NAME, NetConfig  # noqa: E402
from voxelstream_nodules.scoring import Point, score_points  # noqa: E402

CFG = NetConfig(cube=16, channels=(4, 8), head_channels=8)  # receptive field 16, stride 4
SHAPE = (60, 70, 50)
PAD = 0.0  # the window minimum of a [0, 1] windowed volume: what cubes are padded with
# an oblique direction (ITK row-major 3x3), so that no axis order or sign can hide
_c, _s = np.cos(0.3), np.sin(0.3)
DIRECTION = np.array([[_c, -_s, 0.0], [_s, _c, 0.0], [0.0, 0.0, -1.0]])


def _model_with_random_statistics(seed: int):
    return model_with_random_statistics(CFG, seed)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("infer")
    model = _model_with_random_statistics(7)
    model_dir = save_model(root / "model", MODEL_NAME, CFG.to_dict(), model)
    rng = np.random.default_rng(1)
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    blob = np.exp(-((zz - 30) ** 2 + (yy - 20) ** 2 + (xx - 35) ** 2) / 40.0)
    data = np.clip(0.3 + 0.6 * blob + rng.normal(0, 0.1, SHAPE), 0, 1).astype(np.float32)
    iso = voxelstream.Volume.from_itk_geometry(data, spacing=(1.0, 1.0, 1.0), origin_xyz=(-120.5, 33.0, 7.25),
                                               direction=DIRECTION.ravel(), meta={"series_uid": "1.2.3"})
    store = voxelstream.open_store(root / "s.zarr", create=True)
    store.write(iso, "scan", "iso", chunks=(32, 24, 20))
    report = infer_store(store, model_dir, tile=5)
    assert [o.status for o in report.outcomes] == ["done"]
    return store, model_dir, model, data


def test_prob_geometry_covers_the_volume(setup):
    store, _, model, _ = setup
    iso, prob = store.open("scan", "iso"), store.open("scan", "prob")
    s = model.stride
    assert prob.shape == (1, 15, 18, 13) and prob.spatial_shape == tuple(-(-n // s) for n in SHAPE)
    assert prob.data.dtype == np.float32
    np.testing.assert_allclose(prob.spacing, np.multiply(iso.spacing, s))
    np.testing.assert_allclose(prob.direction, iso.direction, atol=1e-12)
    # every grid point is a window centre on an input voxel, inside the volume
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in prob.spatial_shape), indexing="ij"), -1).reshape(-1, 3)
    centres = iso.world_to_index(prob.index_to_world(grid))
    np.testing.assert_allclose(centres, np.rint(centres), atol=1e-6)
    np.testing.assert_allclose(np.diff(np.unique(np.rint(centres[:, 0]))), s)
    assert (centres > -0.5).all() and (centres < np.array(SHAPE) - 0.5).all()
    # the origin is the first window centre, and every voxel has a centre within s/2 per axis
    np.testing.assert_allclose(prob.origin[::-1], iso.index_to_world(centres[0]), atol=1e-9)  # origin: array order
    for axis, n in enumerate(SHAPE):
        c = np.unique(np.rint(centres[:, axis]))
        assert np.abs(np.arange(n)[:, None] - c[None]).min(axis=1).max() <= s / 2
    assert store.attrs("scan", "prob")["complete"]


def test_dense_equals_the_model_on_hand_cut_cubes(setup):
    store, _, model, data = setup
    iso, prob = store.open("scan", "iso"), store.open("scan", "prob")
    dense = prob.data.compute()[0]  # channel-first (1, Z, Y, X)
    r = model.receptive_field
    padded = np.pad(data, r, constant_values=PAD)
    rng = np.random.default_rng(3)
    picks = [(0, 0, 0), tuple(n - 1 for n in dense.shape)] + [tuple(rng.integers(0, dense.shape)) for _ in range(10)]
    for g in picks:
        c = np.rint(iso.world_to_index(prob.index_to_world(np.array(g)))).astype(int)
        lo = c - r // 2 + r
        cube = padded[lo[0]:lo[0] + r, lo[1]:lo[1] + r, lo[2]:lo[2] + r]
        want = float(jax.nn.sigmoid(model(cube[None])).reshape(()))
        assert dense[g] == pytest.approx(want, abs=1e-5), g


def test_score_at_grid_points_equals_infer(setup):
    store, model_dir, _, _ = setup
    prob = store.open("scan", "prob")
    dense = prob.data.compute()[0]
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in prob.spatial_shape), indexing="ij"), -1).reshape(-1, 3)
    grid = grid[np.random.default_rng(0).choice(len(grid), 200, replace=False)]
    world = prob.index_to_world(grid)
    got = score_points(store, model_dir, [Point("1.2.3", tuple(w)) for w in world], batch_size=32)
    want = dense[tuple(grid.T)]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.ptp(want) > 0.01  # the map is not flat: the comparison means something


def test_tile_size_does_not_change_the_map(setup, tmp_path):
    store, model_dir, _, _ = setup
    ref = store.open("scan", "prob").data.compute()
    infer_store(store, model_dir, out_name="prob8", tile=8)
    other = store.open("scan", "prob8")
    assert other.data.chunksize == (1, 8, 8, 8)
    np.testing.assert_allclose(other.data.compute(), ref, atol=1e-6, rtol=0)


def test_rerun_skips_and_new_parameters_recompute(setup, capsys):
    store, model_dir, _, _ = setup
    token = store.attrs("scan", "prob")["token"]
    report = infer_store(store, model_dir, tile=5)
    assert [o.status for o in report.outcomes] == ["skipped"]
    assert store.attrs("scan", "prob")["token"] == token
    report = infer_store(store, model_dir, out_name="prob6", tile=6)
    assert [o.status for o in report.outcomes] == ["done"]
    assert infer_store(store, model_dir, out_name="prob6", tile=6).outcomes[0].status == "skipped"
    assert infer_store(store, model_dir, out_name="prob6", tile=6, force=True).outcomes[0].status == "done"


def test_dense_grid_offsets_split_the_remainder():
    g = dense_grid((61, 60, 8), stride=4, receptive_field=16)
    assert g.shape == (16, 15, 2)
    # last centre = offset + 4 * (n - 1) stays inside and within 2 voxels of the far border
    for n, k, o in zip((61, 60, 8), g.shape, g.offset):
        assert 0 <= o <= 2 and n - 1 - 2 <= o + 4 * (k - 1) <= n - 1


def _cli(cmd, argv):
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    return cmd.run(parser.parse_args(argv))


def test_cli_score_keeps_columns_and_matches_the_map(setup, tmp_path):
    store, model_dir, _, _ = setup
    prob = store.open("scan", "prob")
    dense = prob.data.compute()[0]
    grid = np.array([[0, 0, 0], [7, 9, 6], [14, 17, 12]])
    world = prob.index_to_world(grid)
    points = tmp_path / "points.csv"
    lines = ["seriesuid,coordX,coordY,coordZ,note"] + [f"1.2.3,{x!r},{y!r},{z!r},n{i}" for i, (x, y, z) in enumerate(world.tolist())]
    points.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    out = tmp_path / "scored.csv"
    assert _cli(SCORE, ["--store", str(store.path), "--model", str(model_dir), "--points", str(points),
                        "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["note"] for r in rows] == ["n0", "n1", "n2"]
    np.testing.assert_allclose([float(r["probability"]) for r in rows], dense[tuple(grid.T)], atol=1e-4)


def test_cli_infer_and_its_errors(setup, tmp_path, capsys):
    store, model_dir, _, _ = setup
    assert _cli(INFER, ["--store", str(store.path), "--model", str(model_dir), "--tile", "5"]) == 0
    assert "already done" in capsys.readouterr().out
    with pytest.raises(VoxelstreamError, match="model.json"):
        _cli(INFER, ["--store", str(store.path), "--model", str(tmp_path / "nope"), "--out-name", "x"])
    # a volume without the input output is that volume's error line; the command exits 1
    assert _cli(INFER, ["--store", str(store.path), "--model", str(model_dir), "--name", "nothing"]) == 1
    assert "no 'nothing' output" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("seriesuid,coordX,coordY\n1.2.3,1,2\n")
    with pytest.raises(VoxelstreamError, match="coordZ"):
        _cli(SCORE, ["--store", str(store.path), "--model", str(model_dir), "--points", str(bad),
                     "--out", str(tmp_path / "o.csv")])
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("seriesuid,coordX,coordY,coordZ\n9.9,1,2,3\n")
    with pytest.raises(VoxelstreamError, match="9.9"):
        _cli(SCORE, ["--store", str(store.path), "--model", str(model_dir), "--points", str(unknown),
                     "--out", str(tmp_path / "o.csv")])


def test_gpu_resource_annotates_the_inference_tasks(setup):
    from voxelstream_nodules.inference import dense_probabilities

    store, model_dir, _, _ = setup
    plain = dense_probabilities(store, "scan", model_dir, tile=5).data.__dask_graph__()
    gpu = dense_probabilities(store, "scan", model_dir, tile=5, gpu_resource=True).data.__dask_graph__()
    assert all(not (layer.annotations or {}).get("resources") for layer in plain.layers.values())
    assert [layer.annotations["resources"] for layer in gpu.layers.values()] == [{"GPU": 1}]
