"""Deleting replaced outputs off the critical path.

When an output is written again (``--force``, a changed input), the old one is first moved
aside under ``.staging`` (one rename: readers then see the new output) and deleted here, by one
background thread per process, while the next volume computes. Why: deleting a folder of
chunk files costs a metadata operation per file, and on a filesystem mounted with ``discard``
(common on cloud disks) every freed file waits for the device (measured here: about 1 ms per
small volume, a fifth of its whole write; benchmarks/RESULTS.md, "Volumes in flight, again").

Nothing is lost if the process dies first: what is left under ``.staging`` is removed by the
next writer of that output (``Store._clear_staging``) or by ``Store.sweep``. At exit the
process finishes the deletions it was given.
"""

from __future__ import annotations

import atexit
import queue
import shutil
import threading
from pathlib import Path

__all__ = ["remove_later", "wait_removed"]

_pending: queue.Queue[Path] = queue.Queue()
_started: list[threading.Thread] = []
_lock = threading.Lock()


def _remove_forever() -> None:
    while True:
        path = _pending.get()
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            _pending.task_done()


def remove_later(path: Path) -> None:
    """Delete the folder ``path`` (already moved where nothing reads it) in the background."""
    with _lock:
        if not _started:
            thread = threading.Thread(target=_remove_forever, name="voxelstream-cleanup", daemon=True)
            thread.start()
            _started.append(thread)
            atexit.register(wait_removed)
    _pending.put(path)


def wait_removed() -> None:
    """Return once every folder given to :func:`remove_later` so far is deleted."""
    if _started:
        _pending.join()
