"""From user inputs (files, folders) to :class:`Source` s, through the readers' claims."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ReadError
from .plugins import readers
from .specs import ReaderSpec, Source, SourceError
from .volume import Volume

__all__ = ["ReadOptions", "discover", "read"]


@dataclass(frozen=True)
class ReadOptions:
    """Options every reader honours. ``keep_phi``: keep patient-identifying header fields
    (under ``meta["phi"]``); off by default, and the store drops them unless told."""

    keep_phi: bool = False


def _files_under(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return out


def _claim(files: Sequence[Path], specs: Sequence[ReaderSpec]) -> tuple[dict[str, list[Path]], list[Path]]:
    claimed: dict[str, list[Path]] = {}
    unclaimed: list[Path] = []
    companions = tuple(s for r in specs for s in r.companions)
    for f in files:
        for r in specs:
            if r.claims(f):
                claimed.setdefault(r.name, []).append(f)
                break
        else:
            if not f.name.lower().endswith(companions):
                unclaimed.append(f)
    return claimed, unclaimed


def discover(inputs: Iterable[str | os.PathLike[str]], options: ReadOptions | None = None) -> Iterator[Source | SourceError]:
    """Yield one :class:`Source` per volume found under ``inputs`` and one
    :class:`SourceError` per input (or part of one) that cannot be read. Reads headers only."""
    options = options or ReadOptions()
    specs = readers()
    names = ", ".join(r.name for r in specs) or "none installed"
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            yield SourceError(str(raw), "no such file or folder")
            continue
        files = _files_under(path) if path.is_dir() else [path]
        if not files:
            yield SourceError(str(raw), "folder is empty: no files to read")
            continue
        claimed, unclaimed = _claim(files, specs)
        if path.is_file() and unclaimed:
            yield SourceError(str(raw), f"not an image file any reader recognises (readers: {names})")
            continue
        found = 0
        for r in specs:
            for item in r.discover(claimed.get(r.name, []), options) if r.name in claimed else ():
                found += isinstance(item, Source)
                yield item if not isinstance(item, Source) else _with_reader(item, r.name)
        if path.is_dir() and not claimed:
            yield SourceError(
                str(raw), f"no image found among {len(files)} file(s) in this folder (readers: {names})"
            )


def _with_reader(src: Source, reader: str) -> Source:
    if src.reader:
        return src
    from dataclasses import replace

    return replace(src, reader=reader)


def read(path: str | os.PathLike[str], volume_id: str | None = None, *, keep_phi: bool = False) -> Volume:
    """Open the volume at ``path`` (a file, or a folder holding one DICOM series) lazily.

    A folder holding several volumes needs ``volume_id`` (e.g. the SeriesInstanceUID) to
    choose one; the error lists the ids found. Raises :class:`ReadError` for bad input.
    """
    sources: list[Source] = []
    errors: list[SourceError] = []
    for item in discover([path], ReadOptions(keep_phi=keep_phi)):
        (sources if isinstance(item, Source) else errors).append(item)
    if volume_id is not None:
        sources = [s for s in sources if s.volume_id == volume_id]
        if not sources:
            raise ReadError(f"{path}: no volume with id {volume_id!r}")
    if len(sources) == 1:
        return sources[0].open()
    if errors:
        e = errors[0]
        raise ReadError(f"{e.location}: {e.reason}")
    if not sources:  # pragma: no cover - discover always yields something
        raise ReadError(f"{path}: nothing readable found")
    ids = ", ".join(s.volume_id for s in sources[:6])
    raise ReadError(
        f"{path}: holds {len(sources)} volumes ({ids}); choose one with "
        "read(path, volume_id=...) or ingest them all with 'voxelstream ingest'"
    )
