"""LUNA16 annotation tables: ``seriesuid,coordX,coordY,coordZ,diameter_mm`` in world LPS mm."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from voxelstream.errors import ReadError

__all__ = ["Annotation", "read_annotations", "read_luna_table", "read_numeric_rows", "by_series", "UNKNOWN_DIAMETER_MM"]

COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")

# The excluded table gives -1 for findings without a measured diameter; LUNA16 excluded
# mostly nodules under 3 mm, so such a finding is kept clear of as if it were 3 mm wide.
UNKNOWN_DIAMETER_MM = 3.0


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


def read_luna_table(path: str | Path, columns: Sequence[str], what: str) -> Iterator[tuple[int, list[str]]]:
    """Rows of a LUNA16-style CSV (header required, CRLF or LF) as ``(line_no, values)``
    with ``values`` in the order of ``columns``; ``what`` names the table in errors."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ReadError(f"{p}: cannot read {what} ({exc.strerror}); check the path") from None
    rows = csv.reader(text.splitlines())
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


def read_numeric_rows(path: str | Path, columns: Sequence[str], what: str) -> Iterator[tuple[str, list[float]]]:
    """``(seriesuid, numbers)`` per row of a LUNA16 table whose first column is the series
    uid and whose other ``columns`` are numbers (a row that is not is a one-line error)."""
    for line_no, (uid, *values) in read_luna_table(path, columns, what):
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            raise ReadError(f"{path}:{line_no}: malformed row {uid},{','.join(values)}; fix or delete it") from None
        yield uid, numbers


def read_annotations(path: str | Path) -> list[Annotation]:
    """Read a LUNA16-style annotation CSV (CRLF or LF line endings, header row required)."""
    return [Annotation(uid, (x, y, z), d) for uid, (x, y, z, d) in read_numeric_rows(path, COLUMNS, "annotations")]


def by_series(annotations: list[Annotation]) -> dict[str, list[Annotation]]:
    """Annotations grouped by series uid, in file order."""
    groups: dict[str, list[Annotation]] = defaultdict(list)
    for a in annotations:
        groups[a.series_uid].append(a)
    return dict(groups)
