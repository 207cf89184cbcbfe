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
    """Options every reader honours.

    ``keep_phi``: keep identifying header fields (under ``meta["phi"]``) and the source
    path (``meta["source"]``); off by default, when the origin is a salted hash only.
    ``allow_outside_data``: a header may point at data files outside its own folder
    (MetaImage ``ElementDataFile``, NRRD ``data file``); off by default, so that a crafted
    header cannot pull another file of the machine into a store."""

    keep_phi: bool = False
    allow_outside_data: bool = False


def _files_under(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return out


def _claims(reader: ReaderSpec, f: Path) -> bool:
    try:
        return bool(reader.claims(f))
    except Exception:  # a reader's cheap test failing on one odd file is "not mine", not a crash
        return False


def _claim(files: Sequence[Path], specs: Sequence[ReaderSpec]) -> tuple[dict[str, list[Path]], list[Path]]:
    claimed: dict[str, list[Path]] = {}
    unclaimed: list[Path] = []
    companions = tuple(s for r in specs for s in r.companions)
    for f in files:
        for r in specs:
            if _claims(r, f):
                claimed.setdefault(r.name, []).append(f)
                break
        else:
            if not f.name.lower().endswith(companions):
                unclaimed.append(f)
    return claimed, unclaimed


def _reader_items(reader: ReaderSpec, files: Sequence[Path], options: ReadOptions
                  ) -> Iterator[Source | SourceError]:
    """What ``reader`` finds among ``files``. Readers report bad files themselves (one
    :class:`SourceError` each); a reader that raises all the same (a bug, or an input it
    did not foresee) costs only what it had not reported yet: one error line for those
    files, and discovery goes on with the other readers and inputs."""
    try:
        yield from reader.discover(files, options)
    except Exception as exc:
        where = str(files[0]) if len(files) == 1 else os.path.commonpath([str(f.parent) for f in files])
        yield SourceError(where, _crash_reason(reader, exc))


def _crash_reason(reader: ReaderSpec, exc: BaseException) -> str:
    plugin = f" (plugin {reader.plugin})" if reader.plugin else ""
    return (f"reader {reader.name}{plugin} failed on this file ({type(exc).__name__}: {exc}); "
            "check the file, or report it with the file to the reader's authors")


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
            for item in _reader_items(r, claimed[r.name], options) if r.name in claimed else ():
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


def read(path: str | os.PathLike[str], volume_id: str | None = None, *, keep_phi: bool = False,
         allow_outside_data: bool = False) -> Volume:
    """Open the volume at ``path`` (a file, or a folder holding one DICOM series) lazily.

    A folder holding several volumes needs ``volume_id`` (e.g. the SeriesInstanceUID) to
    choose one; the error lists the ids found. Raises :class:`ReadError` for bad input.
    """
    sources: list[Source] = []
    errors: list[SourceError] = []
    for item in discover([path], ReadOptions(keep_phi=keep_phi, allow_outside_data=allow_outside_data)):
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
