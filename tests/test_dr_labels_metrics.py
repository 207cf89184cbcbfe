"""DR grade tables, the patient split and the grading metrics (against scikit-learn and hand
computation)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from voxelstream.errors import ReadError
from voxelstream_dr.labels import match_ids, patient_of, read_grades, split_by_patient
from voxelstream_dr.metrics import apply_thresholds, confusion, fit_thresholds, grade_metrics, quadratic_kappa


# -- grade tables -------------------------------------------------------------------------
def test_reads_kaggle_and_aptos_layouts(tmp_path):
    kaggle = tmp_path / "trainLabels.csv"
    kaggle.write_text("image,level\r\n10_left,0\r\n10_right,2\r\n13_left.jpeg,4\r\n\r\n")
    aptos = tmp_path / "train.csv"
    aptos.write_text("\ufeffid_code,diagnosis,extra\n000c1434d8d7,2,x\n001639a390f0,0,y\n")
    assert read_grades(kaggle) == {"10_left": 0, "10_right": 2, "13_left": 4}
    assert read_grades(aptos) == {"000c1434d8d7": 2, "001639a390f0": 0}


@pytest.mark.parametrize(
    "body, line, words",
    [
        ("image,level\n1_left,0\n1_right,5\n", 3, "not a grade 0-4"),
        ("image,level\n1_left,0\n1_right,two\n", 3, "not a grade 0-4"),
        ("image,level\n1_left\n", 2, "field(s)"),
        ("image,level\n,1\n", 2, "empty image"),
        ("image,level\n1_left,1\n1_left,2\n", 3, "graded twice"),
        ("name,grade\n1_left,1\n", 1, "not a grade table"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, body, line, words):
    p = tmp_path / "labels.csv"
    p.write_text(body)
    with pytest.raises(ReadError) as exc:
        read_grades(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}:{line}: ") and words in msg and "\n" not in msg


def test_missing_table_is_a_read_error(tmp_path):
    with pytest.raises(ReadError, match="cannot read"):
        read_grades(tmp_path / "nope.csv")


def test_match_counts_both_sides():
    m = match_ids(["a", "b", "c"], ["b", "c", "d", "e"])
    assert (m.both, m.only_labels, m.only_images) == (["b", "c"], ["a"], ["d", "e"])
    lines = m.report()
    assert lines[0].startswith("1 of the grades") and lines[1].startswith("2 of the photographs")


# -- split ----------------------------------------------------------------------------------
def test_patient_of():
    assert patient_of("10_left") == "10" and patient_of("10_RIGHT") == "10"
    assert patient_of("a_b_left") == "a_b" and patient_of("000c1434d8d7") == "000c1434d8d7"


def test_split_keeps_patients_together_and_is_stratified():
    rng = np.random.default_rng(3)
    grades = {}
    for p in range(200):
        g = int(rng.choice(5, p=[0.5, 0.1, 0.2, 0.1, 0.1]))
        grades[f"{p}_left"], grades[f"{p}_right"] = g, max(0, g - int(rng.integers(0, 2)))
    train, val = split_by_patient(grades, 0.25, seed=1)
    assert sorted(train + val) == sorted(grades) and not set(train) & set(val)
    assert {patient_of(i) for i in train}.isdisjoint({patient_of(i) for i in val})
    # per worst grade, a quarter of the patients (rounded) go to validation
    worst = {}
    for i, g in grades.items():
        worst[patient_of(i)] = max(worst.get(patient_of(i), 0), g)
    val_patients = {patient_of(i) for i in val}
    for g in range(5):
        group = [p for p, w in worst.items() if w == g]
        assert sum(p in val_patients for p in group) == round(0.25 * len(group))
    assert split_by_patient(grades, 0.25, seed=1) == (train, val)  # same seed, same split
    assert split_by_patient(grades, 0.25, seed=2) != (train, val)


def test_split_small_strata_get_one_each():
    grades = {"1_left": 0, "1_right": 0, "2_left": 0, "3_left": 4, "4_left": 4}
    train, val = split_by_patient(grades, 0.1, seed=0)
    assert len([i for i in val if grades[i] == 4]) == 1 and any(grades[i] == 0 for i in val)


# -- metrics --------------------------------------------------------------------------------
def test_kappa_hand_computed():
    # true 0,0,1,1 vs pred 0,1,1,1 (n=2 grades): O=[[1,1],[0,2]], E=outer([2,2],[1,3])/4
    # = [[.5,1.5],[.5,1.5]], w=[[0,1],[1,0]]: 1 - (1+0)/(1.5+0.5) = 0.5
    assert quadratic_kappa([0, 0, 1, 1], [0, 1, 1, 1], n=2) == pytest.approx(0.5)
    assert quadratic_kappa([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]) == pytest.approx(1.0)
    # reversed grades: O is the anti-diagonal; sum(w*O) = (16+4+0+4+16)/16 = 2.5,
    # E = 1/5 everywhere: sum(w*E) = (1/5)(1/16) * sum (i-j)^2 = (1/80) * 100 = 1.25 -> 1 - 2 = -1
    assert quadratic_kappa([0, 1, 2, 3, 4], [4, 3, 2, 1, 0]) == pytest.approx(-1.0)
    assert np.isnan(quadratic_kappa([2, 2], [2, 2]))


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 300))
        t = rng.integers(0, 5, n)
        p = np.clip(t + rng.integers(-2, 3, n) * (rng.uniform(size=n) < 0.4), 0, 4)
        if trial % 3 == 0:
            p = rng.integers(0, 5, n)
        ref = cohen_kappa_score(t, p, weights="quadratic", labels=list(range(5)))
        assert quadratic_kappa(t, p) == pytest.approx(ref, abs=1e-12)
        np.testing.assert_array_equal(confusion(t, p), confusion_matrix(t, p, labels=list(range(5))))


def test_grade_metrics_fields():
    m = grade_metrics([0, 0, 1, 3, 3, 3], [0, 1, 1, 3, 2, 3])
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"][3] == [0, 0, 1, 2, 0] and m["confusion"][0] == [1, 1, 0, 0, 0]
    assert m["recall"] == {"0": 0.5, "1": 1.0, "2": None, "3": pytest.approx(2 / 3), "4": None}
    json.dumps(m)


def test_thresholds():
    assert apply_thresholds([-1, 0.5, 0.51, 2.2, 9], (0.5, 1.5, 2.5, 3.5)).tolist() == [0, 0, 1, 2, 4]
    # values biased low by 0.4: the default thresholds misgrade, fitted ones recover them
    rng = np.random.default_rng(1)
    true = rng.integers(0, 5, 400)
    values = true - 0.4 + rng.normal(0, 0.12, 400)
    default = quadratic_kappa(true, apply_thresholds(values, (0.5, 1.5, 2.5, 3.5)))
    fitted = fit_thresholds(values, true)
    assert list(fitted) == sorted(fitted)
    assert quadratic_kappa(true, apply_thresholds(values, fitted)) > max(default, 0.99)
    assert fit_thresholds(values, true) == fitted
