"""The DR grader: augmentation against numpy's exact flips/rotations, rebalancing, the
network, determinism of training, combining TTA views and models, and the whole CLI job on
a few tiny phantoms."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from voxelstream.models import load_model, save_model
from voxelstream_dr.augment import View, apply_view, augment_batch, tta_views
from voxelstream_dr.model import NetConfig, build
from voxelstream_dr.options import MODEL_NAME, TrainOptions
from voxelstream_dr.photos import Photos
from voxelstream_dr.predict import ModelInfo, combine
from voxelstream_dr.train import epoch_indices, sample_weights, train


def _img(size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


# -- augmentation -----------------------------------------------------------------------------
def test_views_against_numpy():
    img = _img()
    np.testing.assert_array_equal(apply_view(img, View()), img)
    np.testing.assert_array_equal(apply_view(img, View(angle=90.0)), np.rot90(img, k=-1, axes=(0, 1)))
    np.testing.assert_array_equal(apply_view(img, View(angle=180.0)), img[::-1, ::-1])
    np.testing.assert_array_equal(apply_view(img, View(mirror=True)), img[:, ::-1])
    bright = apply_view(np.full((4, 4, 3), 100, np.uint8), View(contrast=1.5, brightness=5))
    assert (bright == round((100 - 128) * 1.5 + 128 + 5)).all()
    # a zoomed-out view brings the 128 background in at the corners
    assert (apply_view(np.zeros((16, 16, 3), np.uint8), View(zoom=0.5))[0, 0] == 128).all()


def test_augment_batch_is_seeded():
    batch = np.stack([_img(seed=i) for i in range(4)])
    a = augment_batch(batch, np.random.default_rng(3))
    assert a.shape == batch.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, augment_batch(batch, np.random.default_rng(3)))
    assert not np.array_equal(a, augment_batch(batch, np.random.default_rng(4)))
    views = tta_views(4)
    assert views[0] == View() and len(set(views)) == 4


# -- rebalancing -------------------------------------------------------------------------------
def test_sample_weights_give_every_grade_the_same_total():
    grades = np.array([0] * 12 + [1] * 3 + [2] * 6 + [4] * 3)
    w = sample_weights(grades)
    totals = [w[grades == g].sum() for g in (0, 1, 2, 4)]
    np.testing.assert_allclose(totals, len(grades) / 5)  # n / (5 n_g) per photo, n_g photos


def test_oversampling_balances_grades():
    grades = np.array([0] * 800 + [1] * 50 + [2] * 100 + [3] * 25 + [4] * 25)
    idx = epoch_indices(grades, "oversample", np.random.default_rng(0))
    share = np.bincount(grades[idx], minlength=5) / len(idx)
    np.testing.assert_allclose(share, 0.2, atol=0.04)
    assert sorted(epoch_indices(grades, "none", np.random.default_rng(0))) == list(range(len(grades)))


# -- network ----------------------------------------------------------------------------------
@pytest.mark.parametrize("target, shape", [("regression", (2,)), ("softmax", (2, 5))])
def test_network_outputs_and_save_load(tmp_path, target, shape):
    cfg = NetConfig(channels=(4, 8), hidden=8, target=target, size=16)
    model = build(cfg, seed=1)
    model.eval()
    x = np.stack([_img(), _img(seed=1)])
    y = np.asarray(model(x))
    assert y.shape == shape
    np.testing.assert_array_equal(np.asarray(build(cfg, seed=1).eval() or build(cfg, seed=1)(x)).shape, shape)
    save_model(tmp_path, MODEL_NAME, cfg.to_dict(), model)
    np.testing.assert_allclose(np.asarray(load_model(tmp_path)(x)), y, rtol=1e-6)
    with pytest.raises(ValueError, match="target"):
        NetConfig(target="ordinal-ish")


def _tiny_photos(n=24, size=16):
    rng = np.random.default_rng(0)
    ids = [f"{i // 2}_{'left' if i % 2 == 0 else 'right'}" for i in range(n)]
    grades = {i: int(g) for i, g in zip(ids, rng.integers(0, 5, n))}
    images = np.stack([np.clip(_img(size, k).astype(int) // 4 + 40 * grades[i], 0, 255).astype(np.uint8)
                       for k, i in enumerate(ids)])
    return Photos.from_array(ids, images), grades


def test_training_is_deterministic_and_writes_its_files(tmp_path):
    photos, grades = _tiny_photos()
    # softmax + weighted loss here; the CLI test below trains regression + oversampling
    opts = TrainOptions(epochs=1, batch_size=8, channels=(4, 8), patience=5, seed=3, target="softmax",
                        balance="weighted")
    m1 = train(photos, grades, tmp_path / "a", opts, log=lambda s: None)
    m2 = train(photos, grades, tmp_path / "b", opts, log=lambda s: None)
    strip = [{k: v for k, v in m.items() if k not in ("seconds", "train_images_per_s")} for m in m1]
    assert strip == [{k: v for k, v in m.items() if k not in ("seconds", "train_images_per_s")} for m in m2]
    for name in ("model.json", "weights.npz", "split.json", "metrics.json", "training_curve.png"):
        assert (tmp_path / "a" / name).is_file()
    wa, wb = np.load(tmp_path / "a" / "weights.npz"), np.load(tmp_path / "b" / "weights.npz")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa.files)
    doc = json.loads((tmp_path / "a" / "model.json").read_text())
    assert doc["config"]["target"] == "softmax" and doc["thresholds"] == [0.5, 1.5, 2.5, 3.5]
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    assert sorted(split["train"] + split["val"]) == sorted(grades)


# -- combining views and models -----------------------------------------------------------------
def test_combine_regression_and_softmax_by_hand():
    a = ModelInfo("a", "regression", 16, (0.5, 1.5, 2.5, 3.5), {})
    b = ModelInfo("b", "regression", 16, (1.0, 2.0, 3.0, 4.0), {})
    out_a = np.array([[0.2, 1.2], [3.9, 3.7]])  # 2 photos x 2 views
    out_b = np.array([[1.1, 0.7], [3.9, 4.1]])
    levels, values, scores = combine([out_a, out_b], [a, b])
    np.testing.assert_allclose(values, [0.8, 3.9])
    # mean thresholds 0.75, 1.75, 2.75, 3.75: 0.8 -> 1, 3.9 -> 4
    assert levels.tolist() == [1, 4]
    # photo 0 votes: a: 0, 1; b: 1, 0 -> half 0, half 1; photo 1: a: 4, 4; b: 3, 4
    np.testing.assert_allclose(scores, [[0.5, 0.5, 0, 0, 0], [0, 0, 0, 0.25, 0.75]])
    s = ModelInfo("s", "softmax", 16, (), {})
    p = np.array([[[0.6, 0.4, 0, 0, 0], [0.2, 0.8, 0, 0, 0]]])
    levels, values, scores = combine([p], [s])
    assert levels.tolist() == [1] and values[0] == pytest.approx(0.6)
    np.testing.assert_allclose(scores, [[0.4, 0.6, 0, 0, 0]])


# -- the CLI job, small ----------------------------------------------------------------------------
def test_cli_end_to_end_on_tiny_phantoms(tmp_path, capsys):
    from voxelstream_dr.demo_cmd import DemoConfig, run_demo

    cfg = DemoConfig(train_photos=20, test_photos=8, width=120, radius=12, epochs=1, tta=2)
    metrics = run_demo(tmp_path, cfg)
    out = capsys.readouterr().out
    assert "$ voxelstream dr train" in out and "quadratic weighted kappa" in out
    for name in ("model.json", "weights.npz", "split.json", "metrics.json", "training_curve.png"):
        assert (tmp_path / "model" / name).is_file()
    with open(tmp_path / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and list(rows[0]) == ["image", "level", "value"] + [f"score_{g}" for g in range(5)]
    assert all(abs(sum(float(r[f"score_{g}"]) for g in range(5)) - 1) < 1e-3 for r in rows)
    with open(tmp_path / "test" / "trainLabels.csv") as fh:
        true = {r["image"]: int(r["level"]) for r in csv.DictReader(fh)}
    t = [true[r["image"]] for r in rows]
    p = [int(r["level"]) for r in rows]
    if len(set(t)) > 1 or len(set(p)) > 1:
        assert metrics["kappa"] == pytest.approx(cohen_kappa_score(t, p, weights="quadratic", labels=list(range(5))))
    assert metrics["n"] == 8 and (tmp_path / "eval" / "confusion.png").is_file()
    # averaging a model with itself changes nothing
    from voxelstream.cli.main import main

    model = str(tmp_path / "model")
    assert main(["dr", "predict", "--store", str(tmp_path / "test.zarr"), "--model", model, "--model", model,
                 "--tta", "2", "--out", str(tmp_path / "twice.csv")]) == 0
    with open(tmp_path / "twice.csv") as fh:
        assert list(csv.DictReader(fh)) == rows


@pytest.mark.slow
def test_demo_reaches_kappa_on_unseen_phantoms(tmp_path, request):
    """What ``make demo`` runs for this task: quadratic kappa >= 0.8 on held-out phantoms."""
    from voxelstream_dr.demo_cmd import run_demo

    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("minutes of training: run with -m slow (make test-all)")

    metrics = run_demo(tmp_path)
    assert metrics["kappa"] >= 0.8 and metrics["n"] == 160
