"""LUNA16 FROC evaluation against hand-computed cases (and the real LUNA16 tables)."""

from __future__ import annotations

import argparse
import json
from fractions import Fraction as F
from pathlib import Path

import numpy as np
import pytest

from voxelstream.errors import VoxelstreamError
from voxelstream_nodules.annotations import Annotation
from voxelstream_nodules.detection import Detection
from voxelstream_nodules.detect_evaluate_cmd import EVALUATE
from voxelstream_nodules.froc import FP_RATES, evaluate_froc, match_scan

# -- the hand-computed case ----------------------------------------------------------------------
# Scan A: nodule N1 at (0,0,0) d=10 (r^2=25); nodule N2 at (100,0,0) d=6;
#         excluded E1 at (0,100,0) d=-1 (-> 10 mm, r^2=25); excluded E2 at (50,50,0) d=4 (r^2=4).
# Scan B: nodule N3 at (10,10,10) d=8 (r^2=16).
# Scan C: no nodule, no detection (only in the series list).
NODULES = [
    Annotation("A", (0.0, 0.0, 0.0), 10.0),
    Annotation("A", (100.0, 0.0, 0.0), 6.0),
    Annotation("B", (10.0, 10.0, 10.0), 8.0),
]
EXCLUDED = [
    Annotation("A", (0.0, 100.0, 0.0), -1.0),
    Annotation("A", (50.0, 50.0, 0.0), 4.0),
]
DETECTIONS = [
    Detection("A", (3.0, 4.0, 0.0), 0.6),    # d^2 = 25 == r^2 of N1: a miss -> FP
    Detection("A", (1.0, 0.0, 0.0), 0.9),    # d^2 = 1 < 25: hits N1
    Detection("A", (0.0, 2.0, 0.0), 0.3),    # hits N1 too, worse than 0.9: dropped, not an FP
    Detection("A", (0.0, 104.0, 0.0), 0.8),  # d^2 = 16 < 25 on E1 (-1 -> 10 mm): ignored
    Detection("A", (50.0, 53.0, 0.0), 0.7),  # d^2 = 9 >= 4 of E2 (its own 4 mm): FP
    Detection("B", (10.0, 10.0, 13.0), 0.4),  # d^2 = 9 < 16: hits N3
    Detection("B", (200.0, 0.0, 0.0), 0.5),  # FP
    Detection("B", (-50.0, 0.0, 0.0), 0.2),  # FP
]
# N2 is never hit. 3 scans (A, B, C), 3 nodules.
# Sweep, probabilities descending (H = nodule hit, F = false positive):
#   0.9 H, 0.7 F, 0.6 F, 0.5 F, 0.4 H, 0.2 F
# FROC points (FPs/scan = #F/3, sensitivity = #H/3):
#   (0,0) (0,1/3) (1/3,1/3) (2/3,1/3) (1,1/3) (1,2/3) (4/3,2/3)
# At 1/8, 1/4, 1/2: on the flat part -> 1/3.
# At 1: a vertical step from 1/3 to 2/3; np.interp (the script's) takes the top -> 2/3.
# At 2, 4, 8: past the last point (4/3) -> the final sensitivity 2/3.
HAND_SENS = [F(1, 3)] * 3 + [F(2, 3)] * 4
HAND_CPM = sum(HAND_SENS) / 7  # = 11/21


def test_hand_computed_case():
    r = evaluate_froc(DETECTIONS, NODULES, EXCLUDED, series=["A", "B", "C"])
    assert r.n_scans == 3 and r.n_nodules == 3
    assert (r.n_nodules_hit, r.n_false_positives, r.n_on_excluded, r.n_extra_on_nodules) == (2, 4, 1, 1)
    np.testing.assert_allclose(r.sensitivity, [float(s) for s in HAND_SENS], atol=1e-12)
    assert r.cpm == pytest.approx(float(F(11, 21)))
    assert r.cpm == pytest.approx(float(HAND_CPM))
    assert r.fps_per_scan == FP_RATES == (1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8)


def test_scans_without_detections_count():
    # Without scan C (default series: the union of A and B) FPs/scan are #F/2:
    #   (0,0) (0,1/3) (1/2,1/3) (1,1/3) (3/2,1/3) (3/2,2/3) (2,2/3)
    # -> 1/3 at 1/8..1 (x=1 is a plain point at 1/3), 2/3 at 2, 4, 8: CPM = (4/3 + 2)/7 = 10/21.
    r2 = evaluate_froc(DETECTIONS, NODULES, EXCLUDED)
    assert r2.n_scans == 2
    np.testing.assert_allclose(r2.sensitivity, [1 / 3] * 4 + [2 / 3] * 3, atol=1e-12)
    assert r2.cpm == pytest.approx(10 / 21)
    # More empty scans divide the FP counts further: with 5 scans the step to 2/3 comes at
    # 3/5 FPs/scan, so the sensitivity is 2/3 from 1 FP/scan on.
    r5 = evaluate_froc(DETECTIONS, NODULES, EXCLUDED, series=["A", "B", "C", "D", "E"])
    assert r5.n_scans == 5
    # points: (0,1/3) (1/5,1/3) (2/5,1/3) (3/5,1/3) (3/5,2/3) (4/5,2/3): at 1/2 still 1/3
    np.testing.assert_allclose(r5.sensitivity, [1 / 3] * 3 + [2 / 3] * 4, atol=1e-12)


def test_radius_boundary_is_strict():
    # nodule r = 5 (r^2 = 25); (3,4,0): d^2 = 25 misses; (3,3.99,0) hits
    m = match_scan([[3.0, 4.0, 0.0], [3.0, 3.99, 0.0]], [0.8, 0.6], [[0.0, 0.0, 0.0]], [10.0])
    assert m.nodule_scores.tolist() == [0.6]
    assert m.fp_scores.tolist() == [0.8]


def test_double_detection_keeps_best_and_drops_the_rest():
    m = match_scan([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]], [0.2, 0.7, 0.4], [[0.0, 0.0, 0.0]], [3.0])
    assert m.nodule_scores.tolist() == [0.7]
    assert m.fp_scores.size == 0 and m.n_extra_on_nodules == 2


def test_excluded_findings_unknown_diameter_is_10mm():
    # -1 -> r = 5: d = 4.9 is ignored, d = 5 (d^2 == r^2) is a false positive
    m = match_scan([[4.9, 0, 0], [0, 5.0, 0]], [0.5, 0.6], np.empty((0, 3)), [], [[0.0, 0.0, 0.0]], [-1.0])
    assert m.n_on_excluded == 1
    assert m.fp_scores.tolist() == [0.6]
    # a mark on both an included nodule and an excluded finding is a hit
    m2 = match_scan([[1.0, 0, 0]], [0.9], [[0.0, 0, 0]], [6.0], [[2.0, 0, 0]], [6.0])
    assert m2.nodule_scores.tolist() == [0.9] and m2.n_on_excluded == 0


def test_tied_probabilities_interpolate_on_the_diagonal():
    # 4 scans, 2 nodules. 0.9 hits N1; at 0.5 an FP and the N2 hit tie (one threshold step).
    # Points: (0,0) (0,1/2) (1/4,1): at 1/8 halfway up the diagonal -> 3/4; from 1/4 on -> 1.
    # CPM = (3/4 + 6)/7 = 27/28.
    nods = [Annotation("s1", (0.0, 0, 0), 10.0), Annotation("s2", (0.0, 0, 0), 10.0)]
    dets = [Detection("s1", (0.0, 0, 0), 0.9), Detection("s1", (50.0, 0, 0), 0.5),
            Detection("s2", (1.0, 0, 0), 0.5)]
    r = evaluate_froc(dets, nods, series=["s1", "s2", "s3", "s4"])
    np.testing.assert_allclose(r.sensitivity, [0.75] + [1.0] * 6, atol=1e-12)
    assert r.cpm == pytest.approx(27 / 28)


def test_no_hit_gives_zero_sensitivity_not_nan():
    r = evaluate_froc([Detection("s", (99.0, 0, 0), 0.9)], [Annotation("s", (0.0, 0, 0), 5.0)])
    assert r.sensitivity == (0.0,) * 7 and r.cpm == 0.0


def test_marks_per_scan_cap_follows_the_script():
    # cap 2 of [0.9, 0.8, 0.8]: the script keeps p > the 3rd highest (0.8) -> only 0.9;
    # the two 0.8 FPs are dropped, so there is no false positive at all: sensitivity 1/1.
    nods = [Annotation("s", (0.0, 0, 0), 10.0)]
    dets = [Detection("s", (0.0, 0, 0), 0.9), Detection("s", (50.0, 0, 0), 0.8),
            Detection("s", (90.0, 0, 0), 0.8)]
    capped = evaluate_froc(dets, nods, max_marks_per_scan=2)
    assert capped.n_marks_capped == 2 and capped.n_false_positives == 0
    assert capped.cpm == 1.0
    # uncapped: points (0,0) (0,1) (2,1): still 1.0 everywhere, but 2 FPs counted
    assert evaluate_froc(dets, nods, max_marks_per_scan=0).n_false_positives == 2


# -- the command ---------------------------------------------------------------------------------


def _write_crlf(path: Path, header: str, rows: list[str]) -> Path:
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode())
    return path


def _tables(tmp_path: Path) -> dict[str, Path]:
    ann = _write_crlf(tmp_path / "annotations.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm",
                      [f"{a.series_uid},{a.world_xyz[0]},{a.world_xyz[1]},{a.world_xyz[2]},{a.diameter_mm}"
                       for a in NODULES])
    exc = _write_crlf(tmp_path / "excluded.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm",
                      [f"{a.series_uid},{a.world_xyz[0]},{a.world_xyz[1]},{a.world_xyz[2]},{a.diameter_mm}"
                       for a in EXCLUDED])
    det = _write_crlf(tmp_path / "dets.csv", "seriesuid,coordX,coordY,coordZ,probability",
                      [f"{d.series_uid},{d.world_xyz[0]},{d.world_xyz[1]},{d.world_xyz[2]},{d.probability}"
                       for d in DETECTIONS])
    ser = _write_crlf(tmp_path / "series.csv", "A", ["B", "C"])  # no header, like seriesuids.csv
    return {"ann": ann, "exc": exc, "det": det, "ser": ser}


def _evaluate(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    EVALUATE.add_arguments(p)
    return EVALUATE.run(p.parse_args(argv))


def test_evaluate_command_writes_json_and_png(tmp_path, capsys):
    t = _tables(tmp_path)
    out = tmp_path / "eval"
    assert _evaluate(["--detections", str(t["det"]), "--annotations", str(t["ann"]), "--excluded",
                      str(t["exc"]), "--series", str(t["ser"]), "--out", str(out)]) == 0
    got = json.loads((out / "froc.json").read_text())
    assert set(got) == {"fps_per_scan", "sensitivity", "cpm", "n_scans", "n_nodules"}
    assert got["n_scans"] == 3 and got["n_nodules"] == 3
    np.testing.assert_allclose(got["sensitivity"], [float(s) for s in HAND_SENS], atol=1e-9)
    assert got["cpm"] == pytest.approx(11 / 21)
    assert (out / "froc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "CPM" in capsys.readouterr().out


def test_evaluate_errors_name_file_and_column(tmp_path):
    t = _tables(tmp_path)
    with pytest.raises(VoxelstreamError, match="missing.csv"):
        _evaluate(["--detections", str(tmp_path / "missing.csv"), "--annotations", str(t["ann"]),
                   "--out", str(tmp_path / "o")])
    bad = _write_crlf(tmp_path / "bad.csv", "seriesuid,coordX,coordY,coordZ,score", ["A,0,0,0,0.5"])
    with pytest.raises(VoxelstreamError, match=r"bad\.csv.*probability"):
        _evaluate(["--detections", str(bad), "--annotations", str(t["ann"]), "--out", str(tmp_path / "o")])
    with pytest.raises(VoxelstreamError, match="no annotated nodule"):
        evaluate_froc(DETECTIONS, NODULES, series=["C"])


# -- real LUNA16 tables -------------------------------------------------------------------------


@pytest.mark.realdata
def test_luna16_annotations_as_detections_score_perfectly(shared_data, tmp_path):
    luna = shared_data / "luna16"
    if not (luna / "annotations.csv").exists():
        pytest.skip(f"LUNA16 tables not found in {luna}")
    rows = (luna / "annotations.csv").read_text().splitlines()[1:]
    dets = tmp_path / "dets.csv"
    dets.write_text("seriesuid,coordX,coordY,coordZ,probability\n"
                    + "".join(",".join(r.split(",")[:4]) + ",0.9\n" for r in rows if r.strip()))
    out = tmp_path / "eval"
    assert _evaluate(["--detections", str(dets), "--annotations", str(luna / "annotations.csv"),
                      "--excluded", str(luna / "annotations_excluded.csv"),
                      "--series", str(luna / "seriesuids.csv"), "--out", str(out)]) == 0
    got = json.loads((out / "froc.json").read_text())
    assert got["n_nodules"] == 1186 and got["n_scans"] == 888
    assert got["sensitivity"] == [1.0] * 7 and got["cpm"] == 1.0
