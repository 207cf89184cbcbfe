"""Mapping a function over many small inputs (file headers) in parallel.

Discovery reads one header per file, and an archive holds thousands. Two costs: waiting for
the file (dominant on network or cold storage; threads overlap it, the GIL is released while
reading) and parsing it (Python holding the GIL; only processes overlap it). By default
thousands of inputs go to threads: measured on warm local files they cost nothing against
the serial loop, while worker processes were 2x *slower* on this shared 2-core machine
(start-up, pickling, one CPU share per session; benchmarks/RESULTS.md). Worker processes
are used when asked (``VOXELSTREAM_DISCOVERY_WORKERS=N``, e.g. on a dedicated many-core
machine). Small inputs stay in the calling thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["parallel_map", "map_in_processes", "PARALLEL_MIN_ITEMS", "IO_THREADS", "discovery_workers"]

T = TypeVar("T")

#: Below this many inputs everything runs in the calling process.
PARALLEL_MIN_ITEMS = 1000
#: Inputs per task sent to a worker process (amortises the round trip).
BATCH = 250
#: Threads overlapping file reads (I/O waits, not CPU: more than the cores is right).
IO_THREADS = 8


def _main_is_ours() -> bool:
    """True when ``__main__`` is the ``voxelstream`` command (console script or ``python -m
    voxelstream...``). Worker processes re-import ``__main__``: a user's script without an
    ``if __name__ == "__main__"`` guard would run again in each of them, so only the command
    line uses worker processes."""
    import sys

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and str(getattr(spec, "name", "")).startswith("voxelstream"):
        return True
    return os.path.basename(str(getattr(main, "__file__", ""))) == "voxelstream"


def discovery_workers() -> int:
    """Worker processes for header scans: ``VOXELSTREAM_DISCOVERY_WORKERS`` when set and this
    is the ``voxelstream`` command (see :func:`_main_is_ours`), else 1 (threads only; see the
    module docstring)."""
    env = os.environ.get("VOXELSTREAM_DISCOVERY_WORKERS", "")
    return max(1, int(env)) if env.strip().isdigit() and _main_is_ours() else 1


def parallel_map(fn: Callable[[Any], T], items: Sequence[Any], *, min_items: int = PARALLEL_MIN_ITEMS) -> list[T]:
    """``[fn(x) for x in items]`` in order: on worker processes when
    :func:`discovery_workers` asks for more than one, else on :data:`IO_THREADS` threads
    (from ``min_items`` inputs on; fewer run in the calling thread). ``fn`` must not raise
    (return errors as values) and, for processes, be picklable."""
    if len(items) < min_items:
        return [fn(x) for x in items]
    if discovery_workers() > 1:
        return map_in_processes(fn, items, min_items=min_items)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(IO_THREADS, thread_name_prefix="voxelstream-scan") as pool:
        return list(pool.map(fn, items))


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
