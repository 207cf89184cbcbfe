"""Progress on long work: a volume counter plus a chunk-task bar for local schedulers."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["progress_enabled", "TaskProgress", "task_progress", "RunProgress", "run_progress"]


def __getattr__(name: str) -> Any:
    # the dask callbacks are defined on first use: with progress off (not a terminal) a command
    # whose volumes are written directly (voxelstream.store.direct) never imports dask
    if name in ("TaskProgress", "_RunTasks"):
        classes = _callbacks()
        globals().update(classes)
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def progress_enabled() -> bool:
    """Progress bars go to stderr when it is a terminal (or ``VOXELSTREAM_PROGRESS=1``)."""
    env = os.environ.get("VOXELSTREAM_PROGRESS")
    if env is not None:
        return env not in ("0", "", "false", "no")
    return sys.stderr.isatty()


@functools.lru_cache(maxsize=None)
def _callbacks() -> dict[str, type]:
    """The dask callback classes (dask imported now, once)."""
    from dask.callbacks import Callback

    class TaskProgress(Callback):
        """Counts finished dask tasks of local (threads/processes) schedulers into a rich bar."""

        def __init__(self, progress, task_id):
            super().__init__()
            self._progress = progress
            self._task = task_id

        def _start_state(self, dsk, state):
            total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
            self._progress.update(self._task, total=total, completed=0)

        def _posttask(self, key, result, dsk, state, worker_id):
            self._progress.advance(self._task)

    class _RunTasks(Callback):
        """Counts the chunk tasks of every local compute of a run into one bar (several volumes
        in flight compute at once: each adds its tasks to the total instead of resetting it)."""

        def __init__(self, progress, task_id):
            super().__init__()
            self._progress = progress
            self._task = task_id
            self._total = 0

        def _start_state(self, dsk, state):
            self._total += sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
            self._progress.update(self._task, total=self._total)

        def _posttask(self, key, result, dsk, state, worker_id):
            self._progress.advance(self._task)

    return {"TaskProgress": TaskProgress, "_RunTasks": _RunTasks}


@contextlib.contextmanager
def task_progress(label: str) -> Iterator[None]:
    """Show a chunk-task bar for the computes inside (no-op when progress is off)."""
    if not progress_enabled():
        yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rich.console import Console

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        tid = prog.add_task(label, total=None)
        with _callbacks()["TaskProgress"](prog, tid):
            yield


class RunProgress:
    """Progress of a per-volume run: volumes done of all, and (local schedulers) chunk tasks.
    ``advance()`` counts one volume; a no-op object when progress is off."""

    def __init__(self, prog=None, vol_task=None):
        self._prog, self._vol = prog, vol_task

    def advance(self) -> None:
        if self._prog is not None:
            self._prog.advance(self._vol)


@contextlib.contextmanager
def run_progress(label: str, volumes: int, *, distributed: bool = False) -> Iterator[RunProgress]:
    """A volumes bar (and a chunk-task bar unless the chunks run on dask.distributed workers,
    whose tasks this process cannot see) for the duration of a run."""
    if not progress_enabled():
        yield RunProgress()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as prog:
        vol_task = prog.add_task(f"{label}: volumes", total=volumes)
        if distributed:
            yield RunProgress(prog, vol_task)
            return
        tasks = prog.add_task(f"{label}: chunk tasks", total=None)
        with _callbacks()["_RunTasks"](prog, tasks):
            yield RunProgress(prog, vol_task)
