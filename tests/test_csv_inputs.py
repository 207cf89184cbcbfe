"""Annotation, detection, points and series CSVs: values that would silently change a FROC
(non-finite coordinates, diameters <= 0, probabilities outside [0, 1]) and non-UTF-8 text.

Every case writes its table by hand; the expected line numbers are counted from that text.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from voxelstream.errors import ReadError
from voxelstream_nodules.annotations import read_annotations, read_excluded
from voxelstream_nodules.detection import read_detections
from voxelstream_nodules.froc import read_series_list
from voxelstream_nodules.infer_score_cmd import read_points_table

ANN = "seriesuid,coordX,coordY,coordZ,diameter_mm\r\n"
DET = "seriesuid,coordX,coordY,coordZ,probability\n"
GOOD = "1.2.3,-10.5,20.25,-150.0,6.5\r\n"


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


@pytest.mark.parametrize("bad_row, what", [
    ("1.2.3,nan,20,-150,6\r\n", "coordX"),
    ("1.2.3,1,inf,-150,6\r\n", "coordY"),
    ("1.2.3,1,2,-1e999,6\r\n", "coordZ"),
    ("1.2.3,1,2,3,NaN\r\n", "diameter_mm"),
    ("1.2.3,1,2,3,0\r\n", "diameter_mm 0 must be > 0"),
    ("1.2.3,1,2,3,-2.5\r\n", "diameter_mm -2.5 must be > 0"),
    ("1.2.3,1,2,3,abc\r\n", "'abc' is not a number"),
])
def test_bad_annotation_rows_name_file_and_line(tmp_path: Path, bad_row: str, what: str) -> None:
    p = _write(tmp_path, "annotations.csv", ANN + GOOD + GOOD + bad_row + GOOD)
    with pytest.raises(ReadError) as err:
        read_annotations(p, excluded=False)
    msg = str(err.value)
    assert msg.startswith(f"{p}:4: ") and what in msg and "\n" not in msg


def test_minus_one_diameter_only_in_the_excluded_table(tmp_path: Path) -> None:
    p = _write(tmp_path, "annotations_excluded.csv", ANN + GOOD + "1.2.3,1,2,3,-1\r\n")
    rows = read_excluded(p)
    assert [a.diameter_mm for a in rows] == [6.5, -1.0]
    assert rows[1].world_xyz == (1.0, 2.0, 3.0)
    with pytest.raises(ReadError, match=r":3: diameter_mm -1 must be > 0"):
        read_annotations(p, excluded=False)
    # the excluded table allows exactly -1, not any other value <= 0
    q = _write(tmp_path, "excl2.csv", ANN + "1.2.3,1,2,3,-3\r\n")
    with pytest.raises(ReadError, match=r"excl2.csv:2: diameter_mm -3 must be > 0 \(or -1"):
        read_excluded(q)


@pytest.mark.parametrize("prob, ok", [("0", True), ("1", True), ("0.5", True), ("1.0001", False),
                                      ("-0.01", False), ("nan", False), ("inf", False)])
def test_detection_probability_must_be_in_unit_range(tmp_path: Path, prob: str, ok: bool) -> None:
    p = _write(tmp_path, "det.csv", DET + "1.2.3,1,2,3,0.25\n" + f"1.2.3,4,5,6,{prob}\n")
    if ok:
        assert [d.probability for d in read_detections(p)] == [0.25, float(prob)]
    else:
        with pytest.raises(ReadError, match=rf"det.csv:3: probability"):
            read_detections(p)


def test_detection_coordinates_must_be_finite(tmp_path: Path) -> None:
    p = _write(tmp_path, "det.csv", DET + "1.2.3,1,2,3,0.25\n1.2.3,1,-inf,3,0.5\n")
    with pytest.raises(ReadError, match=r"det.csv:3: coordY is '-inf', not a finite number"):
        read_detections(p)


def test_points_table_coordinates_must_be_finite(tmp_path: Path) -> None:
    p = _write(tmp_path, "pts.csv", "seriesuid,coordX,coordY,coordZ,class\n1.2.3,1,2,3,a\n1.2.3,nan,2,3,b\n")
    with pytest.raises(ReadError, match=r"pts.csv:3: coordX is 'nan'"):
        read_points_table(p)


def test_latin1_table_is_read_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a spreadsheet export: extra column with an e-acute in Latin-1 (byte 0xe9) on line 3
    text = "seriesuid,coordX,coordY,coordZ,diameter_mm,comment\r\n1.2.3,1,2,3,5,ok\r\n1.2.4,4,5,6,7,r\xe9vis\xe9\r\n"
    p = _write(tmp_path, "ann_latin1.csv", text.encode("latin-1"))
    rows = read_annotations(p)
    assert [(a.series_uid, a.world_xyz, a.diameter_mm) for a in rows] == [
        ("1.2.3", (1.0, 2.0, 3.0), 5.0), ("1.2.4", (4.0, 5.0, 6.0), 7.0)]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{p}:3:" in err and "0xe9" in err and "Latin-1" in err


def test_utf8_bom_and_crlf_are_plain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path, "s.csv", "\ufeffseriesuid\r\n1.2.3\r\n1.2.4\r\n")
    assert read_series_list(p) == ["1.2.3", "1.2.4"]
    assert capsys.readouterr().err == ""


def test_evaluate_cli_reports_one_line_without_traceback(tmp_path: Path) -> None:
    ann = _write(tmp_path, "annotations.csv", ANN + GOOD)
    det = _write(tmp_path, "det.csv", DET + "1.2.3,-10.5,20.25,-150,0.9\n1.2.3,0,0,0,7\n")
    proc = subprocess.run([sys.executable, "-m", "voxelstream.cli.main", "nodules", "evaluate", "--detections", str(det),
                           "--annotations", str(ann), "--out", str(tmp_path / "ev")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {det}:3: probability 7 is outside [0, 1]; fix or delete the row"]


def test_latin1_points_table_noted_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path, "pts1.csv", "seriesuid,coordX,coordY,coordZ,note\n1.2.3,1,2,3,caf\xe9\n".encode("latin-1"))
    header, rows, points = read_points_table(p)
    assert rows == [["1.2.3", "1", "2", "3", "caf\xe9"]] and points == [("1.2.3", (1.0, 2.0, 3.0))]
    assert capsys.readouterr().err.count("note:") == 1
