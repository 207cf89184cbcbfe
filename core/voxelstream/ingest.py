"""Ingest: read every volume under some inputs and stream it into a store."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from .batch import BatchReport
from .discovery import ReadOptions, discover
from .runner import VolumeJob, run_per_volume
from .specs import Source, SourceError
from .store import Store

__all__ = ["ingest", "source_fingerprint"]


def _files_of(location: str) -> list[Path]:
    """The files a source was read from, when its reader does not list them: the file and
    its companions (same name, other suffix: ``scan.mhd`` + ``scan.raw``), or every file
    under its folder (a DICOM series: a new slice changes the folder)."""
    p = Path(location)
    if p.is_dir():
        out = []
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            out.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
        return out
    stem = p.name.split(".", 1)[0]
    try:
        # the name first: a stat per entry of a folder of 3,000 scans, for each of them, was quadratic
        return [q for q in p.parent.iterdir() if q.name.split(".", 1)[0] == stem and q.is_file()]
    except OSError:
        return [p]


def source_fingerprint(src: Source) -> dict[str, Any]:
    """What an ingested volume was made from: a digest of its files' names, sizes and
    modification times (a salted-free hash: no path reaches the store). A series that gains
    a slice, or a file rewritten in place, gets a new fingerprint, so a plain rerun redoes it."""
    h = hashlib.sha256()
    n = 0
    for f, st in _stats(src):
        h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        n += 1
    return {"reader": src.reader, "files": n, "sha256": h.hexdigest()}


def _stats(src: Source) -> Iterator[tuple[Path, os.stat_result]]:
    """The files a volume is read from (sorted) with their stat results; vanished ones left out."""
    files = [Path(f) for f in getattr(src, "files", ()) or ()] or _files_of(src.location)
    for f in sorted(files):
        try:
            yield f, f.stat()
        except OSError:
            continue


def source_bytes(src: Source) -> int:
    """The bytes of a volume's files: the size that decides, on dask.distributed, whether
    small volumes share a task (:attr:`VolumeJob.nbytes`; a compressed file counts as its size
    on disk, which only lets more of them share one: they are still computed one at a time)."""
    return sum(st.st_size for _, st in _stats(src))


def _jobs(inputs: Sequence[str], options: ReadOptions) -> Iterator[VolumeJob]:
    import functools

    seen: dict[str, str] = {}
    for item in discover(inputs, options):
        if isinstance(item, SourceError):
            yield VolumeJob(item.location, label=item.location, error=item.reason)
            continue
        if item.volume_id in seen:
            yield VolumeJob(item.volume_id, label=item.location, error=(
                f"volume id {item.volume_id!r} was already ingested from {seen[item.volume_id]}; "
                "ids must be unique in a store"))
            continue
        seen[item.volume_id] = item.location
        yield VolumeJob(item.volume_id, build=functools.partial(_counted, item.open),
                        fingerprint=functools.partial(source_fingerprint, item),
                        info={"reader": item.reader}, nbytes=source_bytes(item))


def _counted(open_volume: Any) -> Any:
    """The source volume, counting its NaN/inf voxels as it is written (see :mod:`.nonfinite`).
    Integer volumes cannot hold any: they are passed on untouched, so a reader's direct block
    source stays direct (no dask graph, see :class:`~voxelstream.lazy.BlockSource`)."""
    volume = open_volume()
    if volume.dtype.kind not in "fc":
        return volume
    from .nonfinite import counting_non_finite

    return counting_non_finite(volume)


def _describe(volume: Any) -> str:
    """The done line's note on non-finite voxels (none for integer volumes: nothing counted)."""
    if volume.dtype.kind not in "fc":
        return ""
    from .nonfinite import describe_non_finite

    return describe_non_finite(volume)


def ingest(
    inputs: Sequence[str],
    store: Store,
    *,
    chunks: int | None = None,
    keep_phi: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    force: bool = False,
    in_flight: int | None = None,
    allow_outside_data: bool = False,
) -> BatchReport:
    """Stream every volume found under ``inputs`` into ``store`` as ``<id>/image``.

    Prints ``<id>\\t<shape>`` per stored volume on ``out``; failures go to ``err`` as
    ``error: INPUT: reason`` and the others go on. Volumes already stored completely from
    the same files (names, sizes, modification times) with the same parameters are skipped
    (``force`` redoes them); a changed series is ingested again. The manifest records the
    inputs as salted hashes unless ``keep_phi`` (see :mod:`voxelstream.privacy`);
    ``allow_outside_data`` lets headers point at data files outside their folder.
    """
    from .privacy import redactor, salted_hash

    options = ReadOptions(keep_phi=keep_phi, allow_outside_data=allow_outside_data)
    inputs_record = [str(i) if keep_phi else salted_hash(os.path.abspath(i)) for i in inputs]
    params = {"chunks": chunks, "keep_phi": keep_phi}
    return run_per_volume(
        store, _jobs(inputs, options), output="image", command="ingest", params=params, chunks=chunks,
        force=force, keep_phi=keep_phi, provenance={"stage": "ingest"}, in_flight=in_flight,
        record={"inputs": inputs_record, "chunks": chunks}, numbered=False,
        skipped_text="already stored", out=out, err=err, describe=_describe,
        redact=None if keep_phi else redactor([*map(str, inputs), *(os.path.abspath(i) for i in inputs)]),
    )
