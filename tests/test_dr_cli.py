"""The ``voxelstream dr`` commands through the CLI: evaluate against hand-computed metrics and
scikit-learn, unmatched ids reported, bad input as one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from voxelstream.cli.main import main


def _csv(path, header, rows):
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def test_evaluate_hand_computed(tmp_path, capsys):
    # 6 matched photos; one prediction and one label without a partner
    true = {"1_left": 0, "1_right": 0, "2_left": 2, "2_right": 4, "3_left": 1, "3_right": 3, "9_left": 4}
    pred = {"1_left": 0, "1_right": 1, "2_left": 2, "2_right": 3, "3_left": 1, "3_right": 3, "8_left": 0}
    labels = _csv(tmp_path / "trainLabels.csv", "image,level", true.items())
    predictions = tmp_path / "pred.csv"
    predictions.write_text("image,level,value,score_0,score_1,score_2,score_3,score_4\n"
                           + "".join(f"{i},{g},{g}.0,0,0,0,0,1\n" for i, g in pred.items()))
    assert main(["dr", "evaluate", "--predictions", str(predictions), "--labels", str(labels),
                 "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    both = sorted(set(true) & set(pred))
    t, p = [true[i] for i in both], [pred[i] for i in both]
    # by hand: 4 of 6 right; row 0 = [1, 1, 0, 0, 0]; row 4 = [0, 0, 0, 1, 0]
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"][0] == [1, 1, 0, 0, 0] and m["confusion"][4] == [0, 0, 0, 1, 0]
    assert m["recall"]["0"] == 0.5 and m["recall"]["4"] == 0.0 and m["recall"]["2"] == 1.0
    assert m["kappa"] == pytest.approx(cohen_kappa_score(t, p, weights="quadratic", labels=list(range(5))))
    np.testing.assert_array_equal(m["confusion"], confusion_matrix(t, p, labels=list(range(5))))
    assert m["unmatched"] == {"labels_without_prediction": 1, "predictions_without_label": 1}
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000
    cap = capsys.readouterr()
    assert "quadratic weighted kappa" in cap.out and cap.err.count("note: ") == 2


def test_evaluate_bad_row_is_one_error_line(tmp_path, capsys):
    labels = _csv(tmp_path / "l.csv", "image,level", [("1_left", 0)])
    predictions = _csv(tmp_path / "p.csv", "image,level", [("1_left", 7)])
    assert main(["dr", "evaluate", "--predictions", str(predictions), "--labels", str(labels), "--out",
                 str(tmp_path / "ev")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {predictions}:2: level '7' of '1_left' is not a grade 0-4; fix or delete the row"]


def test_train_reports_unmatched_ids(tmp_path, capsys):
    from voxelstream_dr.phantoms import draw_fundus

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(draw_fundus(i, np.random.default_rng(i), width=120)[0]).save(photos / f"{i}_left.png")
    assert main(["ingest", str(photos), "--store", str(tmp_path / "s.zarr")]) == 0
    labels = _csv(tmp_path / "labels.csv", "id_code,diagnosis", [("0_left", 0), ("1_left", 2), ("7_left", 1)])
    code = main(["dr", "train", "--store", str(tmp_path / "s.zarr"), "--labels", str(labels), "--out",
                 str(tmp_path / "m"), "--radius", "8"])
    err = capsys.readouterr().err
    assert "note: 1 of the grades have no photograph (7_left)" in err
    assert "note: 1 of the photographs have no grade (2_left)" in err
    assert code == 1 and "too few" in err  # two photographs cannot be split and trained on
