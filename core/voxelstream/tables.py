"""CSV tables that users give to commands (annotations, detections, grade labels, ...).

One reader for all of them, so that every table is decoded, checked and reported the same way:

* **Text.** UTF-8, with or without a BOM. A table that is not UTF-8 is read as Latin-1
  (every byte is a Latin-1 character; spreadsheet exports often are Latin-1, and the columns
  that matter, ids and numbers, are ASCII either way) with a one-line note on stderr naming
  the file, the line and the first byte that is not UTF-8, once per file.
* **Header.** The first row; names are stripped. It must hold the required columns, or one
  of several named sets of them (e.g. Kaggle's ``image,level`` or APTOS's
  ``id_code,diagnosis``); other columns are allowed and kept.
* **Rows.** ``(line number, values)`` with the values stripped, CRLF or LF endings, quoted
  fields as Python's :mod:`csv` reads them; blank rows are skipped; a row with fewer fields
  than the header is an error. Rows are parsed as they are iterated, so a large table (LUNA16's
  ``candidates.csv``) is not held as lists in memory.

Everything wrong is a :class:`~voxelstream.errors.ReadError` of one line,
``FILE:LINE: what is wrong; what to do`` (``FILE: ...`` when the file cannot be read at all),
which the CLI prints without a traceback.

Example::

    table = read_table("annotations.csv", "LUNA16 annotations", ("seriesuid", "coordX"))
    for line_no, row in table.rows():
        uid, x = table.pick(row)
        x_mm = finite_number(x, table.where(line_no), "coordX")
"""

from __future__ import annotations

import csv
import io
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from voxelstream.errors import ReadError

__all__ = ["Table", "finite_number", "read_table", "read_text"]

_NOTED_LATIN1: set[str] = set()  # files already noted, so a table read twice is noted once


def read_text(path: str | Path, what: str) -> str:
    """The text of the ``what`` table at ``path``: UTF-8 (a BOM is dropped), else Latin-1
    with a note on stderr (once per file) naming the first byte that is not UTF-8.

    Raises :class:`ReadError` ``FILE: cannot read the WHAT table (reason); check the path``
    when the file cannot be read."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ReadError(f"{p}: cannot read the {what} table ({exc.strerror or exc}); check the path") from None
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM, whatever the rest is encoded in
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if str(p) not in _NOTED_LATIN1:
            _NOTED_LATIN1.add(str(p))
            line = raw.count(b"\n", 0, exc.start) + 1
            print(f"note: {p}:{line}: {what} table is not UTF-8 (byte 0x{raw[exc.start]:02x}); "
                  "read as Latin-1", file=sys.stderr)
        return raw.decode("latin-1")


@dataclass(frozen=True)
class Table:
    """A table whose header has been checked; iterate :meth:`rows` for its data."""

    path: Path
    header: tuple[str, ...]
    columns: tuple[str, ...]  # the required columns, of the set the header matched
    text: str = field(repr=False)

    def where(self, line_no: int) -> str:
        """``FILE:LINE``, to start a message about that line."""
        return f"{self.path}:{line_no}"

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """``(line number, values)`` of each data row, every field stripped, in header order
        (fields beyond the header are kept too); blank rows are skipped. A row with fewer
        fields than the header raises :class:`ReadError` ``FILE:LINE``."""
        reader = csv.reader(io.StringIO(self.text, newline=""))
        next(reader, None)
        while True:
            line_no = reader.line_num + 1  # a quoted field may span lines: name the first
            row = next(reader, None)
            if row is None:
                return
            if not "".join(row).strip():
                continue
            if len(row) < len(self.header):
                raise ReadError(f"{self.where(line_no)}: {len(row)} field(s) where the header has "
                                f"{len(self.header)} ({','.join(row)!r}); fix or delete the row")
            yield line_no, [v.strip() for v in row]

    def pick(self, row: Sequence[str], names: Sequence[str] | None = None) -> list[str]:
        """The values of the columns ``names`` (default: :attr:`columns`) in that order."""
        return [row[self.header.index(n)] for n in (self.columns if names is None else names)]


def read_table(path: str | Path, what: str,
               columns: Sequence[str] | Mapping[str, Sequence[str]]) -> Table:
    """Read the ``what`` table at ``path`` and check that its header has ``columns``: one
    sequence of names, or ``{layout name: names}`` of which the first one the header holds
    wins (its names become :attr:`Table.columns`).

    Raises :class:`ReadError` when the file cannot be read (see :func:`read_text`) or
    ``FILE:1: not a WHAT table (...); expected ...`` when the header lacks the columns."""
    p = Path(path)
    text = read_text(p, what)
    first = next(csv.reader(io.StringIO(text, newline="")), [])
    header = tuple(h.strip() for h in first)
    layouts = columns.values() if isinstance(columns, Mapping) else [columns]
    found = next((tuple(c) for c in layouts if set(c) <= set(header)), None)
    if found is None:
        if isinstance(columns, Mapping):
            problem = f"header {','.join(header)!r}"
            expected = "the columns of " + "; ".join(f"{name}: {','.join(c)}" for name, c in columns.items())
        else:
            problem = "missing column(s) " + ", ".join(c for c in columns if c not in header)
            expected = "the columns " + ",".join(columns)
        raise ReadError(f"{p}:1: not a {what} table ({problem}); expected {expected} in its first line")
    return Table(p, header, found, text)


def finite_number(text: str, where: str, column: str) -> float:
    """``float(text)``, or a :class:`ReadError` at ``where`` (``FILE:LINE``) naming
    ``column`` when it is not a finite number (``nan``, ``inf`` and ``1e999`` parse as
    floats but are no coordinates, sizes or probabilities)."""
    try:
        value = float(text)
    except ValueError:
        raise ReadError(f"{where}: {column} {text!r} is not a number; fix or delete the row") from None
    if not math.isfinite(value):
        raise ReadError(f"{where}: {column} is {text!r}, not a finite number; fix or delete the row")
    return value
