"""Per-output locks that work across processes and die with their holder.

``fcntl.flock`` on ``<store>/.locks/<volume>/<output>.lock``: the kernel releases the lock
when the holding process exits however it exits (crash, ``kill -9``), so a dead writer never
blocks the output. Locks are re-entrant within one thread (``Store.write`` inside a runner
that already holds the output's lock) and exclusive between threads and processes. On NFS,
Linux maps ``flock`` onto NFS byte-range locks (NFSv4: works across hosts).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import StoreError

__all__ = ["output_lock", "try_lock"]

_local = threading.local()


def _held() -> dict[str, list[int]]:
    if not hasattr(_local, "held"):
        _local.held = {}
    return _local.held


@contextlib.contextmanager
def output_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """Hold the lock file ``path`` for the block; yields ``True`` when another holder had to
    be waited for first (its work may have made ours unnecessary). ``on_wait`` is called
    once before waiting."""
    key = str(path)
    held = _held()
    if key in held:  # re-entrant within this thread
        held[key][1] += 1
        try:
            yield False
        finally:
            held[key][1] -= 1
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise StoreError(f"{path.parent.parent.parent}: cannot take the lock {path.name} ({exc.strerror}); "
                         "is the store read-only or full?") from None
    waited = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks until the holder finishes or dies
            waited = True
        held[key] = [fd, 1]
        try:
            yield waited
        finally:
            del held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """Take the lock file ``path`` only if nobody holds it; yields whether it was taken."""
    key = str(path)
    if key in _held() or not path.exists():
        yield False
        return
    try:
        fd = os.open(key, os.O_RDWR)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        _held()[key] = [fd, 1]
        try:
            yield True
        finally:
            del _held()[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
