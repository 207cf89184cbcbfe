"""Progress on long work: a volume counter plus a chunk-task bar for local schedulers."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from dask.callbacks import Callback

__all__ = ["progress_enabled", "TaskProgress", "task_progress"]


def progress_enabled() -> bool:
    """Progress bars go to stderr when it is a terminal (or ``VOXELSTREAM_PROGRESS=1``)."""
    env = os.environ.get("VOXELSTREAM_PROGRESS")
    if env is not None:
        return env not in ("0", "", "false", "no")
    return sys.stderr.isatty()


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
        with TaskProgress(prog, tid):
            yield
