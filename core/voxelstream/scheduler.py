"""Choosing where a dask graph runs: threads (default), processes or dask.distributed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import dask

from .constants import DEFAULT_SCHEDULER, SCHEDULER_HELP  # there, so the CLI lists them without dask
from .errors import VoxelstreamError

__all__ = ["use_scheduler", "SCHEDULER_HELP", "worker_threads"]


def _threads() -> Callable[..., Any]:
    import dask.threaded

    return dask.threaded.get


def _processes() -> Callable[..., Any]:
    import dask.multiprocessing

    return dask.multiprocessing.get


def _sync() -> Callable[..., Any]:
    import dask.local

    return dask.local.get_sync


_LOCAL = {"threads": _threads, "processes": _processes, "sync": _sync, "synchronous": _sync}


@contextlib.contextmanager
def use_scheduler(spec: str | None = None) -> Iterator[object | None]:
    """Run the enclosed ``dask.compute`` calls on ``spec``; yields the distributed Client
    when there is one. Workers rebuild the plugin manager from entry points themselves."""
    spec = (spec or DEFAULT_SCHEDULER).strip()
    if spec in _LOCAL:
        # the scheduler function, not its name: dask resolves a name by first importing
        # dask.distributed to look for a client (0.2-0.8 s of every CLI run)
        with dask.config.set(scheduler=_LOCAL[spec]()):
            yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise VoxelstreamError(f"--scheduler {spec}: dask.distributed is not installed ({exc})") from None
    if spec.startswith("local:"):
        try:
            n = int(spec.split(":", 1)[1])
            assert n >= 1
        except (ValueError, AssertionError):
            raise VoxelstreamError(f"--scheduler {spec}: expected local:N with N >= 1 workers") from None
        # dashboard on a free port (":0"): two runs at once must not fight over 8787
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                if client.dashboard_link:
                    import sys

                    print(f"note: dask dashboard at {client.dashboard_link}", file=sys.stderr, flush=True)
                yield client
        return
    if spec.startswith("tcp://"):
        try:
            client = Client(spec, timeout="10s")
        except OSError as exc:
            raise VoxelstreamError(f"--scheduler {spec}: cannot reach the scheduler ({exc})") from None
        with client:
            yield client
        return
    raise VoxelstreamError(f"--scheduler {spec!r}: unknown; {SCHEDULER_HELP}")


def worker_threads() -> int:
    """Threads of the dask.distributed worker running the caller (its ``--nthreads``), or
    the number of CPUs outside a worker: how many chunk tasks one volume may run at once."""
    import os

    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return os.cpu_count() or 1
