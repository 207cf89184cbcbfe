"""Chains of stages run store to store, one volume at a time, chunk-streamed."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .batch import BatchReport, Outcome, run_batch
from .errors import VoxelstreamError
from .plugins import get_stage
from .progress import task_progress
from .store import Store
from .volume import Volume

__all__ = ["StageCall", "Pipeline", "apply_stages", "run_pipeline", "load_pipeline"]


@dataclass(frozen=True)
class StageCall:
    """One step: a stage name and its parameters."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.name, **dict(self.params)}


@dataclass(frozen=True)
class Pipeline:
    """What ``voxelstream run`` executes; see ``examples/preprocess.toml``."""

    store: str
    stages: tuple[StageCall, ...]
    input: str = "image"
    output: str = "out"
    chunks: int | None = None
    scheduler: str = "threads"


def apply_stages(volume: Volume, stages: Sequence[StageCall]) -> Volume:
    """Chain the stages lazily: nothing is computed, so dask fuses them per chunk."""
    for call in stages:
        volume = get_stage(call.name)(volume, **dict(call.params))
    return volume


def run_pipeline(
    store: Store,
    stages: Sequence[StageCall],
    *,
    input: str = "image",
    output: str,
    chunks: int | None = None,
    force: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    command: str = "run",
) -> BatchReport:
    """For every volume with a complete ``input``, write ``stages(input)`` as ``output``.

    Volumes whose ``output`` is already complete with the same stages are skipped
    (``force`` redoes them); a failing volume is reported and the others go on.
    """
    out = out or sys.stdout
    for call in stages:  # fail fast on unknown stage names, before touching any volume
        get_stage(call.name)
    params = {"input": input, "stages": [c.as_dict() for c in stages], "chunks": chunks}
    ids = store.volume_ids(name=input)
    if not ids:
        raise VoxelstreamError(f"{store.path}: no volume has a complete {input!r} output; ingest first")

    def jobs() -> Iterator[tuple[str, Callable[[], Outcome]]]:
        for n, vid in enumerate(ids, 1):
            yield vid, _job(vid, n)

    def _job(vid: str, n: int) -> Callable[[], Outcome]:
        def job() -> Outcome:
            if not force and store.is_complete(vid, output, params):
                print(f"[{n}/{len(ids)}] {vid}\t(already done)", file=out, flush=True)
                return Outcome(vid, "skipped")
            vol = apply_stages(store.open(vid, input), stages)
            with task_progress(f"{command} {vid[-24:]}"):
                store.write(vol, vid, output, chunks=chunks, params=params,
                            provenance={"stage": command, "input": input})
            shape = "x".join(map(str, vol.shape))
            print(f"[{n}/{len(ids)}] {vid}\t{shape}", file=out, flush=True)
            return Outcome(vid, "done", info={"shape": list(vol.shape)})

        return job

    report = run_batch(jobs(), err=err)
    store.write_manifest(command, {**params, "output": output, **report.as_record()})
    return report


def load_pipeline(path: str | Path) -> Pipeline:
    """Parse a pipeline TOML file (relative store paths are relative to the file)."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise VoxelstreamError(f"{p}: no such pipeline file") from None
    except tomllib.TOMLDecodeError as exc:
        raise VoxelstreamError(f"{p}: not valid TOML ({exc})") from None
    head = doc.get("pipeline", {})
    if "store" not in head:
        raise VoxelstreamError(f"{p}: [pipeline] needs store = \"PATH\"")
    raw = doc.get("stages", [])
    if not raw:
        raise VoxelstreamError(f"{p}: no [[stages]] given")
    calls = []
    for i, s in enumerate(raw, 1):
        s = dict(s)
        name = s.pop("name", None) or s.pop("stage", None)
        if not name:
            raise VoxelstreamError(f"{p}: stage {i} has no name = \"...\"")
        calls.append(StageCall(name, s))
    store = Path(head["store"])
    if not store.is_absolute():
        store = p.parent / store
    return Pipeline(
        store=str(store),
        stages=tuple(calls),
        input=head.get("input", "image"),
        output=head.get("output", "out"),
        chunks=head.get("chunks"),
        scheduler=head.get("scheduler", "threads"),
    )
