"""Chains of stages run store to store, chunk-streamed, through the per-volume runner."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .batch import BatchReport
from .errors import VoxelstreamError
from .plugins import get_stage, require
from .runner import Accepts, run_per_volume, stored_jobs
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


def _build(store: Store, input: str, stages: tuple[StageCall, ...], volume_id: str) -> Volume:
    # module level (not a closure): it travels to dask.distributed workers
    return apply_stages(store.open(volume_id, input), stages)


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
    accepts: Accepts | Mapping[str, Any] | str | None = None,
    in_flight: int | None = None,
) -> BatchReport:
    """For every volume with a complete ``input``, write ``stages(input)`` as ``output``.

    Volumes whose ``output`` is already complete with the same stages, made from the same
    ``input`` (its completion token), are skipped (``force`` redoes them); a rewritten input
    is redone. A failing volume is reported and the others go on; a volume whose input is
    missing or incomplete is an error. ``accepts`` (a task's modality, see
    :class:`~voxelstream.runner.Accepts`) skips volumes of other modalities with a note.
    """
    for call in stages:  # fail fast on unknown stage names, before touching any volume
        require("stages", call.name)  # without importing the stage (dask) before there is work
    stages = tuple(stages)
    params = {"input": input, "stages": [c.as_dict() for c in stages], "chunks": chunks}
    jobs = stored_jobs(store, input, functools.partial(_build, store, input, stages), accepts=accepts)
    if not jobs:
        raise VoxelstreamError(f"{store.path}: the store holds no volume; ingest first")
    return run_per_volume(store, jobs, output=output, command=command, params=params, chunks=chunks,
                          force=force, provenance={"stage": command, "input": input}, in_flight=in_flight,
                          record=params, out=out, err=err)


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
