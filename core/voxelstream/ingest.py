"""Ingest: read every volume under some inputs and stream it into a store."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

from .batch import BatchReport, Outcome, run_batch
from .discovery import ReadOptions, discover
from .progress import task_progress
from .specs import Source, SourceError
from .store import Store

__all__ = ["ingest"]


def _fail(err: SourceError) -> Callable[[], Outcome]:
    def job() -> Outcome:
        from .errors import ReadError

        raise ReadError(err.reason)

    return job


def ingest(
    inputs: Sequence[str],
    store: Store,
    *,
    chunks: int | None = None,
    keep_phi: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    force: bool = False,
) -> BatchReport:
    """Stream every volume found under ``inputs`` into ``store`` as ``<id>/image``.

    Prints ``<id>\\t<shape>`` per stored volume on ``out``; failures go to ``err`` as
    ``error: INPUT: reason`` and the others go on. Volumes already stored completely from
    the same source with the same parameters are skipped (``force`` redoes them).
    """
    out = out or sys.stdout
    options = ReadOptions(keep_phi=keep_phi)
    seen: dict[str, str] = {}

    def jobs() -> Iterator[tuple[str, Callable[[], Outcome | None]]]:
        for item in discover(inputs, options):
            if isinstance(item, SourceError):
                yield item.location, _fail(item)
            else:
                yield item.location, _job(item)

    def _job(src: Source) -> Callable[[], Outcome]:
        def job() -> Outcome:
            from .errors import ReadError

            if src.volume_id in seen:
                raise ReadError(
                    f"volume id {src.volume_id!r} was already ingested from {seen[src.volume_id]}; "
                    "ids must be unique in a store"
                )
            seen[src.volume_id] = src.location
            params = {"reader": src.reader, "source": src.location, "chunks": chunks, "keep_phi": keep_phi}
            if not force and store.is_complete(src.volume_id, "image", params):
                shape = store.open(src.volume_id).shape
                print(f"{src.volume_id}\t{'x'.join(map(str, shape))}\t(already stored)", file=out, flush=True)
                return Outcome(src.location, "skipped", info={"id": src.volume_id})
            vol = src.open()
            with task_progress(f"ingest {src.volume_id[-24:]}"):
                store.write(
                    vol,
                    src.volume_id,
                    "image",
                    chunks=chunks,
                    params=params,
                    provenance={"stage": "ingest", "reader": src.reader, "source": src.location},
                    keep_phi=keep_phi,
                )
            print(f"{src.volume_id}\t{'x'.join(map(str, vol.shape))}", file=out, flush=True)
            return Outcome(src.location, "done", info={"id": src.volume_id, "shape": list(vol.shape)})

        return job

    report = run_batch(jobs(), err=err)
    store.write_manifest("ingest", {"inputs": list(inputs), "chunks": chunks, **report.as_record()})
    return report
