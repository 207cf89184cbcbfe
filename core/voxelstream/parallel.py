"""Mapping a function over many small inputs (file headers) on several processes.

Discovery reads one header per file; an archive holds thousands of files, and parsing a
header is Python code holding the GIL, so threads do not help but processes do. Small
inputs stay in this process (starting workers costs more than it saves).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["map_in_processes", "PARALLEL_MIN_ITEMS", "discovery_workers"]

T = TypeVar("T")

#: Below this many inputs everything runs in the calling process.
PARALLEL_MIN_ITEMS = 1000
#: Inputs per task sent to a worker process (amortises the round trip).
BATCH = 250


def _main_is_ours() -> bool:
    """True when ``__main__`` is the ``voxelstream`` command (console script or ``python -m
    voxelstream...``). Worker processes re-import ``__main__``: a user's script without an
    ``if __name__ == "__main__"`` guard would run again in each of them, so only the command
    line uses worker processes unless asked."""
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and str(getattr(spec, "name", "")).startswith("voxelstream"):
        return True
    return os.path.basename(str(getattr(main, "__file__", ""))) == "voxelstream"


def discovery_workers() -> int:
    """Processes for header scans: ``VOXELSTREAM_DISCOVERY_WORKERS`` when set (1 disables
    the pool), else the number of CPUs this process may use when running as the
    ``voxelstream`` command, else 1 (see :func:`_main_is_ours`)."""
    env = os.environ.get("VOXELSTREAM_DISCOVERY_WORKERS", "")
    if env.strip().isdigit():
        return max(1, int(env))
    if not _main_is_ours():
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _batch(fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    return [fn(x) for x in items]


def map_in_processes(fn: Callable[[Any], T], items: Sequence[Any], *, workers: int | None = None,
                     min_items: int = PARALLEL_MIN_ITEMS) -> list[T]:
    """``[fn(x) for x in items]``, in order, spread over worker processes when there are at
    least ``min_items`` inputs. ``fn`` must be picklable (a module-level function or a
    ``functools.partial`` of one) and should not raise (return errors as values): an
    exception escaping it fails the whole map.

    Workers are started with ``forkserver`` (never ``fork``: the caller may have threads, e.g.
    a dask.distributed client, and forking them is unsafe)."""
    n = discovery_workers() if workers is None else max(1, workers)
    if n == 1 or len(items) < min_items:
        return [fn(x) for x in items]
    import functools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    batches = [items[i:i + BATCH] for i in range(0, len(items), BATCH)]
    ctx = multiprocessing.get_context("forkserver")
    # the server imports fn's module once; every worker is forked from it, imports done
    target = getattr(fn, "func", fn)
    ctx.set_forkserver_preload([m for m in (getattr(target, "__module__", None),) if m])
    try:
        with ProcessPoolExecutor(max_workers=min(n, len(batches)), mp_context=ctx) as pool:
            out: list[T] = []
            for part in pool.map(functools.partial(_batch, fn), batches):
                out.extend(part)
        return out
    except (BrokenProcessPool, OSError):  # workers could not start or died: do it here
        return [fn(x) for x in items]
