"""LUNA16 annotation tables: ``seriesuid,coordX,coordY,coordZ,diameter_mm`` in world LPS mm.

Every value is checked where it is read, so that a bad row cannot silently change a FROC:
coordinates must be finite numbers, diameters positive (only the excluded table may say
``-1``, its documented "not measured"), probabilities in ``[0, 1]``. A violation is a
``ReadError`` naming the file and line. The text, header and rows are read by
:mod:`voxelstream.tables` (UTF-8, else Latin-1 with a note; blank rows skipped).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from voxelstream.errors import ReadError
from voxelstream.tables import finite_number, read_table

__all__ = [
    "Annotation",
    "UNKNOWN_DIAMETER_MM",
    "by_series",
    "read_annotations",
    "read_excluded",
    "read_numeric_rows",
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


# a check of one row's numbers: returns None when they are fine, else what is wrong
RowCheck = Callable[[list[float]], "str | None"]


def read_numeric_rows(path: str | Path, columns: Sequence[str], what: str,
                      check: RowCheck | None = None) -> Iterator[tuple[str, list[float]]]:
    """``(seriesuid, numbers)`` per row of a LUNA16 table whose first column is the series
    uid and whose other ``columns`` are finite numbers; ``check`` adds a rule of the table
    (its message becomes the row's error). A bad row is a one-line ``ReadError``."""
    table = read_table(path, f"LUNA16 {what}", columns)
    for line_no, row in table.rows():
        uid, *values = table.pick(row)
        where = table.where(line_no)
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
