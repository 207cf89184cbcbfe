"""LUNA16 annotation tables: ``seriesuid,coordX,coordY,coordZ,diameter_mm`` in world LPS mm.

Every value is checked where it is read, so that a bad row cannot silently change a FROC:
coordinates must be finite numbers, diameters positive (only the excluded table may say
``-1``, its documented "not measured"), probabilities in ``[0, 1]``. A violation is a
``ReadError`` naming the file and line. Tables should be UTF-8; one that is not is read as
Latin-1 (every byte is a Latin-1 character) with a one-line note on stderr.
"""

from __future__ import annotations

import csv
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from voxelstream.errors import ReadError

__all__ = [
    "Annotation",
    "UNKNOWN_DIAMETER_MM",
    "by_series",
    "finite_number",
    "read_annotations",
    "read_excluded",
    "read_luna_table",
    "read_numeric_rows",
    "read_table_text",
]

COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")

# The excluded table gives -1 for findings without a measured diameter; LUNA16 excluded
# mostly nodules under 3 mm, so such a finding is kept clear of as if it were 3 mm wide.
UNKNOWN_DIAMETER_MM = 3.0
_NOT_MEASURED = -1.0  # the excluded table's documented value for "no diameter"


@dataclass(frozen=True)
class Annotation:
    """One finding: its series, world centre ``(x, y, z)`` LPS mm and diameter in mm."""

    series_uid: str
    world_xyz: tuple[float, float, float]
    diameter_mm: float

    @property
    def clearance_diameter_mm(self) -> float:
        """The diameter to keep clear of (unknown diameters count as UNKNOWN_DIAMETER_MM)."""
        return self.diameter_mm if self.diameter_mm > 0 else UNKNOWN_DIAMETER_MM


_NOTED_LATIN1: set[str] = set()


def read_table_text(path: str | Path, what: str) -> str:
    """The text of a CSV table: UTF-8 (a BOM is dropped); anything else is decoded as
    Latin-1 with a note on stderr naming the first byte that is not UTF-8.

    Latin-1 rather than an error because spreadsheet exports often are Latin-1 and the
    columns that matter (uids, numbers) are ASCII either way."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ReadError(f"{p}: cannot read {what} ({exc.strerror}); check the path") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        if str(p) in _NOTED_LATIN1:  # a table read twice (header, then rows) is noted once
            return raw.decode("latin-1")
        _NOTED_LATIN1.add(str(p))
        print(f"note: {p}:{line}: {what} table is not UTF-8 (byte 0x{raw[exc.start]:02x}); "
              "read as Latin-1", file=sys.stderr)
        return raw.decode("latin-1")


def read_luna_table(path: str | Path, columns: Sequence[str], what: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of a LUNA16-style CSV (header required, CRLF or LF) as ``(line_no, values)``
    with ``values`` in the order of ``columns``; ``what`` names the table in errors."""
    p = Path(path)
    rows = csv.reader(read_table_text(p, what).splitlines())
    header = [h.strip() for h in next(rows, [])]
    missing = [c for c in columns if c not in header]
    if missing:
        raise ReadError(
            f"{p}: not a LUNA16 {what} table (missing column(s) {', '.join(missing)}); "
            f"expected the header {','.join(columns)}"
        )
    col = [header.index(c) for c in columns]
    for line_no, row in enumerate(rows, start=2):
        if not "".join(row).strip():
            continue
        if len(row) < len(header):
            raise ReadError(f"{p}:{line_no}: malformed row {','.join(row)!r}; fix or delete it")
        yield line_no, [row[c].strip() for c in col]


def finite_number(text: str, where: str, column: str) -> float:
    """``float(text)``, or a ``ReadError`` at ``where`` (``file:line``) when it is not a
    finite number (``nan``, ``inf`` and ``1e999`` parse as floats but are no coordinates)."""
    try:
        value = float(text)
    except ValueError:
        raise ReadError(f"{where}: {column} {text!r} is not a number; fix or delete the row") from None
    if not math.isfinite(value):
        raise ReadError(f"{where}: {column} is {text!r}, not a finite number; fix or delete the row")
    return value


# a check of one row's numbers: returns None when they are fine, else what is wrong
RowCheck = Callable[[list[float]], "str | None"]


def read_numeric_rows(path: str | Path, columns: Sequence[str], what: str,
                      check: RowCheck | None = None) -> Iterator[tuple[str, list[float]]]:
    """``(seriesuid, numbers)`` per row of a LUNA16 table whose first column is the series
    uid and whose other ``columns`` are finite numbers; ``check`` adds a rule of the table
    (its message becomes the row's error). A bad row is a one-line ``ReadError``."""
    for line_no, (uid, *values) in read_luna_table(path, columns, what):
        where = f"{path}:{line_no}"
        numbers = [finite_number(v, where, c) for v, c in zip(values, columns[1:])]
        problem = check(numbers) if check is not None else None
        if problem:
            raise ReadError(f"{where}: {problem}; fix or delete the row")
        if not uid:
            raise ReadError(f"{where}: the seriesuid is empty; fix or delete the row")
        yield uid, numbers


def _diameter_rule(allow_not_measured: bool) -> RowCheck:
    def check(numbers: list[float]) -> str | None:
        d = numbers[3]
        if d > 0 or (allow_not_measured and d == _NOT_MEASURED):
            return None
        allowed = " (or -1, not measured)" if allow_not_measured else ""
        return f"diameter_mm {d:g} must be > 0{allowed}"
    return check


def read_annotations(path: str | Path, *, excluded: bool | None = None) -> list[Annotation]:
    """Read a LUNA16-style annotation CSV (CRLF or LF line endings, header row required).

    ``excluded=False``: the nodules table, every diameter > 0. ``excluded=True`` (or
    :func:`read_excluded`): the excluded-findings table, where ``-1`` (not measured) is
    also allowed. ``None`` (the default, for callers that read either table) allows ``-1``
    as well; any other diameter <= 0 is an error in every mode."""
    rule = _diameter_rule(allow_not_measured=excluded is not False)
    what = "excluded findings" if excluded else "annotations"
    return [Annotation(uid, (x, y, z), d)
            for uid, (x, y, z, d) in read_numeric_rows(path, COLUMNS, what, rule)]


def read_excluded(path: str | Path) -> list[Annotation]:
    """Read LUNA16's ``annotations_excluded.csv`` (diameter ``-1`` = not measured)."""
    return read_annotations(path, excluded=True)


def by_series(annotations: list[Annotation]) -> dict[str, list[Annotation]]:
    """Annotations grouped by series uid, in file order."""
    groups: dict[str, list[Annotation]] = defaultdict(list)
    for a in annotations:
        groups[a.series_uid].append(a)
    return dict(groups)
