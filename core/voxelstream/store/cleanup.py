"""Deleting replaced outputs off the critical path.

When an output is written again (``--force``, a changed input), the old one is first moved
aside under ``.staging`` (one rename: readers then see the new output) and deleted here, by one
background thread per process, while the next volume computes. Why: deleting a folder of
chunk files costs a metadata operation per file, and on a filesystem mounted with ``discard``
(common on cloud disks) every freed file waits for the device (92 % of a ``--force``
rerun's off-CPU time here; benchmarks/RESULTS.md, "Volumes in flight, warm workers").

Nothing is lost if the process dies first: what is left under ``.staging`` is removed by the
next writer of that output (``Store._clear_staging``) or by ``Store.sweep``. At exit the
process finishes the deletions it was given. At most :data:`PENDING` folders wait: a writer
faster than the deletions then waits too, so a ``--force`` over a whole store never holds more
than that many old copies besides the new ones.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import threading
from pathlib import Path

__all__ = ["remove_later", "wait_removed"]

#: Folders given to :func:`remove_later` and not yet deleted, at most.
PENDING = 8

_pending: queue.Queue[Path] = queue.Queue(maxsize=PENDING)
_started: list[threading.Thread] = []
_registered: list[bool] = []
_lock = threading.Lock()


def _forget_after_fork() -> None:
    # a forked child has no deleting thread: it starts its own (and never waits for the parent's)
    global _pending, _lock
    _pending, _lock = queue.Queue(maxsize=PENDING), threading.Lock()
    _started.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _remove_forever() -> None:
    pending = _pending  # this process's queue (a fork makes the child a new one)
    while True:
        path = pending.get()
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            pending.task_done()


def remove_later(path: Path) -> None:
    """Delete the folder ``path`` (already moved where nothing reads it) in the background."""
    with _lock:
        if not _started:
            thread = threading.Thread(target=_remove_forever, name="voxelstream-cleanup", daemon=True)
            thread.start()
            _started.append(thread)
            if not _registered:
                atexit.register(wait_removed)
                _registered.append(True)
    _pending.put(path)  # waits while PENDING folders are still to delete


def wait_removed() -> None:
    """Return once every folder given to :func:`remove_later` so far is deleted."""
    if _started:
        _pending.join()
