"""``voxelstream.tables``: the one reader of users' CSV tables, against hand-written files.

Expected values and line numbers are counted from the text each case writes; quoted fields
are compared with what Python's :mod:`csv` module reads from the same file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from voxelstream.errors import ReadError, VoxelstreamError
from voxelstream.tables import finite_number, read_table, read_text

COLS = ("seriesuid", "coordX")


def _write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def _rows(path: Path, columns=COLS) -> list[tuple[int, list[str]]]:
    return list(read_table(path, "test", columns).rows())


def test_bom_and_crlf_are_plain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path, "bom.csv", "\ufeffseriesuid, coordX \r\n1.2.3,4.5\r\n")
    table = read_table(p, "test", COLS)
    assert table.header == ("seriesuid", "coordX") and table.columns == COLS
    assert list(table.rows()) == [(2, ["1.2.3", "4.5"])]
    assert capsys.readouterr().err == ""


def test_latin1_is_read_with_one_note_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path, "latin1.csv", "seriesuid,coordX,note\n1.2.3,1,ok\n1.2.4,2,caf\xe9\n".encode("latin-1"))
    assert _rows(p) == [(2, ["1.2.3", "1", "ok"]), (3, ["1.2.4", "2", "caf\xe9"])]
    assert read_text(p, "test").endswith("caf\xe9\n")  # a second read of the same file: no second note
    err = capsys.readouterr().err
    assert err == f"note: {p}:3: test table is not UTF-8 (byte 0xe9); read as Latin-1\n"


def test_a_bom_before_latin1_text_is_dropped_and_the_note_names_the_right_byte(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path, "bomlatin1.csv", b"\xef\xbb\xbf" + "seriesuid,coordX\n1.2.3,1\ncaf\xe9,2\n".encode("latin-1"))
    assert _rows(p) == [(2, ["1.2.3", "1"]), (3, ["caf\xe9", "2"])]
    assert capsys.readouterr().err == f"note: {p}:3: test table is not UTF-8 (byte 0xe9); read as Latin-1\n"


def test_missing_file_names_it(tmp_path: Path) -> None:
    p = tmp_path / "nope.csv"
    with pytest.raises(ReadError, match=rf"^{p}: cannot read the test table \(.*\); check the path$"):
        read_table(p, "test", COLS)


def test_missing_column_is_named(tmp_path: Path) -> None:
    p = _write(tmp_path, "m.csv", "seriesuid,coordY\n1.2.3,4\n")
    with pytest.raises(ReadError) as err:
        read_table(p, "test", COLS)
    msg = str(err.value)
    assert msg.startswith(f"{p}:1: not a test table (missing column(s) coordX); expected the columns seriesuid,coordX")
    assert isinstance(err.value, VoxelstreamError) and "\n" not in msg


def test_empty_file_is_not_a_table(tmp_path: Path) -> None:
    p = _write(tmp_path, "empty.csv", "")
    with pytest.raises(ReadError, match=r":1: not a test table \(missing column\(s\) seriesuid, coordX\)"):
        read_table(p, "test", COLS)


def test_alternative_layouts(tmp_path: Path) -> None:
    layouts = {"Kaggle": ("image", "level"), "APTOS": ("id_code", "diagnosis")}
    p = _write(tmp_path, "aptos.csv", "diagnosis,extra,id_code\n2,x,abc\n")
    table = read_table(p, "grade", layouts)
    assert table.columns == ("id_code", "diagnosis")
    assert [(n, table.pick(r)) for n, r in table.rows()] == [(2, ["abc", "2"])]
    q = _write(tmp_path, "other.csv", "name,grade\na,1\n")
    with pytest.raises(ReadError) as err:
        read_table(q, "grade", layouts)
    assert str(err.value) == (f"{q}:1: not a grade table (header 'name,grade'); expected the columns of "
                              "Kaggle: image,level; APTOS: id_code,diagnosis in its first line")


def test_blank_rows_are_skipped_and_lines_counted(tmp_path: Path) -> None:
    p = _write(tmp_path, "blank.csv", "seriesuid,coordX\r\n\r\n1.2.3,1\r\n , \r\n\r\n1.2.4,2\r\n\r\n")
    assert _rows(p) == [(3, ["1.2.3", "1"]), (6, ["1.2.4", "2"])]


def test_short_row_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "short.csv", "seriesuid,coordX,diameter_mm\n1.2.3,1,5\n\n1.2.4,2\n")
    with pytest.raises(ReadError) as err:
        _rows(p)
    assert str(err.value) == f"{p}:4: 2 field(s) where the header has 3 ('1.2.4,2'); fix or delete the row"


def test_quoted_fields_as_the_csv_module_reads_them(tmp_path: Path) -> None:
    text = ('seriesuid,coordX,comment\r\n'
            '"1.2.3",1,"a, b"\r\n'
            '1.2.4,2,"say ""hi"""\r\n'
            '1.2.5,3,"two\r\nlines"\r\n'
            '1.2.6,4,last\r\n')
    p = _write(tmp_path, "quoted.csv", text)
    with p.open(newline="") as fh:
        reference = list(csv.reader(fh))[1:]
    got = _rows(p)
    assert [r for _, r in got] == reference
    assert reference[0][2] == "a, b" and reference[2][2] == "two\r\nlines"
    assert [n for n, _ in got] == [2, 3, 4, 6]  # a row spanning lines is named by its first


def test_pick_and_extra_columns(tmp_path: Path) -> None:
    p = _write(tmp_path, "pick.csv", "coordX,class,seriesuid\n1.5,a,1.2.3,surplus\n")
    table = read_table(p, "test", COLS)
    [(line, row)] = table.rows()
    assert table.pick(row) == ["1.2.3", "1.5"] and table.pick(row, ["class"]) == ["a"]
    assert row == ["1.5", "a", "1.2.3", "surplus"] and table.where(line) == f"{p}:2"


@pytest.mark.parametrize("text, value", [("1.5", 1.5), (" -2e3 ", -2000.0), ("0", 0.0)])
def test_finite_number_reads_numbers(text: str, value: float) -> None:
    assert finite_number(text, "t.csv:2", "coordX") == value


@pytest.mark.parametrize("text, words", [
    ("nan", "coordX is 'nan', not a finite number"),
    ("-inf", "coordX is '-inf', not a finite number"),
    ("1e999", "coordX is '1e999', not a finite number"),
    ("abc", "coordX 'abc' is not a number"),
    ("", "coordX '' is not a number"),
])
def test_finite_number_refuses_naming_file_and_line(tmp_path: Path, text: str, words: str) -> None:
    p = _write(tmp_path, "n.csv", f"seriesuid,coordX\n1.2.3,1\n1.2.4,{text}\n")
    table = read_table(p, "test", COLS)
    with pytest.raises(ReadError) as err:
        for line, row in table.rows():
            finite_number(table.pick(row)[1], table.where(line), "coordX")
    assert str(err.value) == f"{p}:3: {words}; fix or delete the row"
