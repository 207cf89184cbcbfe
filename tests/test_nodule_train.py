"""Training: series split without leakage, AUC, determinism, what MODEL_DIR holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

import voxelstream
from voxelstream.cli.main import main
from voxelstream_nodules.cubeset import CubeRecord, CubeSet
from voxelstream_nodules.train import roc_auc, split_by_series

EDGE = 16


def _toy_cubes(path, n_series=8, seed=0):
    """Positives: a bright ball at the centre; negatives: noise only."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:EDGE, :EDGE, :EDGE] - EDGE // 2
    ball = (z**2 + y**2 + x**2 <= 9).astype(np.float32) * 0.6
    cs = CubeSet.create(path, (EDGE,) * 3, "float32")
    for s in range(n_series):
        kinds = ["positive", "positive", "augmented"] + ["negative"] * 5 + (["hard_negative"] if s % 2 else [])
        cubes = np.stack([rng.normal(0.2, 0.05, (EDGE,) * 3).astype(np.float32) + (ball if k in ("positive", "augmented") else 0)
                          for k in kinds])
        cs.append(cubes, [CubeRecord(f"series{s}", int(k in ("positive", "augmented")), k, s, i, 0) for i, k in enumerate(kinds)])
    return cs


def test_split_by_series_has_no_leakage():
    recs = [CubeRecord(f"s{i}", lab, kind, 0, 0, 0) for i in range(20)
            for lab, kind in ((1, "positive"), (1, "augmented"), (0, "negative"))
            if lab == 0 or i % 3 == 0]
    train, val = split_by_series(recs, 0.25, seed=7)
    assert not set(train) & set(val)
    assert set(train) | set(val) == {r.series_uid for r in recs}
    pos_series = {r.series_uid for r in recs if r.label}
    assert set(val) & pos_series and set(train) & pos_series  # both sides see positives
    assert split_by_series(recs, 0.25, seed=7) == (train, val)


def test_roc_auc_against_pairwise_count():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # ties on purpose
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, s) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert np.isnan(roc_auc(np.ones(3), np.arange(3)))


def _train(cubes, out, seed):
    return main(["nodules", "train", "--cubes", str(cubes), "--out", str(out), "--epochs", "2", "--batch-size", "8",
                 "--val-fraction", "0.25", "--seed", str(seed), "--channels", "4,8"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two runs with the same seed on one toy cube set."""
    tmp = tmp_path_factory.mktemp("train")
    _toy_cubes(tmp / "cubes.zarr")
    assert _train(tmp / "cubes.zarr", tmp / "a", seed=3) == 0
    assert _train(tmp / "cubes.zarr", tmp / "b", seed=3) == 0
    return tmp


def test_train_writes_model_split_metrics_and_is_deterministic(trained):
    tmp_path = trained
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"]) and len(split["val"]) == 2
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all({"train_loss", "val_loss", "val_auc"} <= set(m) for m in metrics)
    assert (tmp_path / "a" / "training_curve.png").read_bytes()[:4] == b"\x89PNG"

    wa, wb = np.load(tmp_path / "a" / "weights.npz"), np.load(tmp_path / "b" / "weights.npz")
    assert wa.files == wb.files
    for k in wa.files:
        np.testing.assert_array_equal(wa[k], wb[k])
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert [(m["train_loss"], m["val_loss"]) for m in metrics] == [(m["train_loss"], m["val_loss"]) for m in mb]

    model = voxelstream.load_model(tmp_path / "a")
    assert model.receptive_field == EDGE and model.stride == 4
    doc = json.loads((tmp_path / "a" / "model.json").read_text())
    assert doc["model"] == "nodule-vgg3d" and doc["config"]["cube"] == EDGE


def test_train_init_continues_from_a_model(trained, capsys):
    rc = main(["nodules", "train", "--cubes", str(trained / "cubes.zarr"), "--out", str(trained / "c"), "--epochs", "1",
               "--batch-size", "8", "--val-fraction", "0.25", "--seed", "3", "--init", str(trained / "a")])
    out = capsys.readouterr().out
    assert rc == 0 and "epoch 1:" in out and "val AUC" in out
    first = json.loads((trained / "a" / "metrics.json").read_text())[0]
    resumed = json.loads((trained / "c" / "metrics.json").read_text())[0]
    # starting from trained weights, the first epoch does not start from scratch
    assert resumed["train_loss"] != first["train_loss"]


def test_random_orientations_keep_the_centre_voxel_and_are_flips_or_turns():
    from voxelstream_nodules.train import random_orientations

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 6, 6)).astype(np.float32)
    out = random_orientations(x, np.random.default_rng(1))
    c = 3  # the centre voxel n // 2, where the cube's annotation sits
    np.testing.assert_array_equal(out[:, c, c, c], x[:, c, c, c])
    # by index arithmetic: voxel c + d goes to c + d' with d' = d flipped and/or (y, x) swapped
    idx = np.stack(np.meshgrid(*(np.arange(6),) * 3, indexing="ij"), -1) - c
    seen = set()
    for i in range(len(x)):
        matches = []
        for fz, fy, fx, turn in np.ndindex(2, 2, 2, 2):
            d = idx * np.array([-1 if fz else 1, -1 if fy else 1, -1 if fx else 1])
            if turn:
                d = d[..., [0, 2, 1]]
            ref = np.empty_like(x[i])
            ref[tuple(np.moveaxis((d + c) % 6, -1, 0))] = x[i]
            if np.array_equal(out[i], ref):
                matches.append((fz, fy, fx, turn))
        assert matches, i
        seen.add(matches[0])
    assert len(seen) > 8  # the draws use many of the 16 orientations
    again = random_orientations(x, np.random.default_rng(1))
    np.testing.assert_array_equal(out, again)  # seeded


def test_label_smoothing_is_cross_entropy_against_softened_targets():
    import jax.numpy as jnp

    from voxelstream_nodules.train import weighted_bce

    logits = np.array([2.0, -1.0, 0.5, 8.0])
    labels = np.array([1.0, 0.0, 1.0, 0.0])
    a, w = 0.2, 3.0
    t = labels * (1 - a) + a / 2
    p = 1 / (1 + np.exp(-logits))
    ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    weights = np.where(labels > 0, w, 1.0)
    want = (weights * ce).sum() / weights.sum()
    got = float(weighted_bce(jnp.asarray(logits), jnp.asarray(labels), w, a))
    assert got == pytest.approx(want, rel=1e-5)
    # the smoothed loss is smallest at a finite logit: p = 1 - a/2 for a positive
    best = float(weighted_bce(jnp.asarray([np.log((1 - a / 2) / (a / 2))]), jnp.asarray([1.0]), 1.0, a))
    assert best < float(weighted_bce(jnp.asarray([20.0]), jnp.asarray([1.0]), 1.0, a))


def test_cosine_learning_rate_decays_to_zero_over_the_epochs():
    from voxelstream_nodules.options import TrainOptions
    from voxelstream_nodules.train import learning_rate

    assert learning_rate(TrainOptions(lr=0.01), 7) == 0.01
    sched = learning_rate(TrainOptions(lr=0.01, epochs=4, cosine=True), 5)  # 20 steps
    for step in (0, 5, 10, 15, 20):
        assert float(sched(step)) == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * step / 20)), abs=1e-9)
