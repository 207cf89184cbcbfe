"""Choosing where a dask graph runs: threads (default), processes or dask.distributed."""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .constants import DEFAULT_SCHEDULER, SCHEDULER_HELP  # there, so the CLI lists them without dask
from .errors import VoxelstreamError

__all__ = ["use_scheduler", "SCHEDULER_HELP", "worker_threads", "local_threads"]

#: The local scheduler chosen by the innermost use_scheduler (None: none chosen, or distributed).
_CHOSEN: list[str | None] = [None]


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
    when there is one. Workers rebuild the plugin manager from entry points themselves, once
    each, when the client connects (:class:`voxelstream.worker_setup.WarmUp`)."""
    spec = (spec or DEFAULT_SCHEDULER).strip()
    if spec in _LOCAL:
        # the scheduler function, not its name: dask resolves a name by first importing
        # dask.distributed to look for a client (0.2-0.8 s of every CLI run). Set when dask is
        # imported: a command whose volumes are all written directly (voxelstream.store.direct)
        # never imports it (0.1-0.15 s)
        _CHOSEN.append(spec)
        try:
            with _dask_config_when_imported(scheduler=lambda: _LOCAL[spec]()):
                yield None
        finally:
            _CHOSEN.pop()
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
        import dask

        # dashboard on a free port (":0"): two runs at once must not fight over 8787
        with dask.config.set(_local_cluster_settings()), \
                LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
            with Client(cluster) as client:
                _warm_up(client)
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
            _warm_up(client)
            yield client
        return
    raise VoxelstreamError(f"--scheduler {spec!r}: unknown; {SCHEDULER_HELP}")


#: dask settings of the local clusters voxelstream starts (``local:N``): ``key: (dask's default,
#: ours)``. With dask's defaults every server wakes 50 times a second to time its event loop and
#: every worker samples its own stack 100 times a second: an idle 2-worker cluster used about 90 ms
#: of CPU a second, taken from the volumes' share of the cores (150 small volumes on 2 workers ran
#: 6-8 % faster with these and a slower memory check; benchmarks/RESULTS.md, "Volumes in flight on local:N"). The dashboard
#: keeps its profiles (coarser) and system plots (once a second). Memory limits are still checked
#: every 100 ms: a big volume can outgrow its worker quickly.
LOCAL_CLUSTER_SETTINGS: dict[str, tuple[str, str]] = {
    "distributed.admin.tick.interval": ("20ms", "500ms"),
    "distributed.worker.profile.interval": ("10ms", "100ms"),
    "distributed.admin.system-monitor.interval": ("500ms", "1s"),
}


def _local_cluster_settings() -> dict[str, str]:
    """:data:`LOCAL_CLUSTER_SETTINGS` that the user did not set: a value from a dask config file
    or a ``DASK_*`` variable (even dask's default), or one set in this process to another value,
    is kept."""
    import dask

    own = dask.config.collect()  # the user's files and DASK_* variables, without dask's defaults
    unset = object()
    return {key: ours for key, (default, ours) in LOCAL_CLUSTER_SETTINGS.items()
            if dask.config.get(key, unset, config=own) is unset and str(dask.config.get(key, default)) == default}


def _warm_up(client: Any) -> None:
    from .worker_setup import warm_up_workers

    warm_up_workers(client)


def worker_threads() -> int:
    """Threads of the dask.distributed worker running the caller (its ``--nthreads``), or
    the number of CPUs outside a worker: how many chunk tasks one volume may run at once."""
    import os

    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return os.cpu_count() or 1


def local_threads() -> int | None:
    """Threads the chosen local scheduler allows a volume's work (1 for ``sync``), or None
    (threads, processes: every core; or no local scheduler chosen)."""
    return 1 if _CHOSEN[-1] in ("sync", "synchronous") else None


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``then(module)`` right after ``name`` is first imported (and is then removed)."""

    def __init__(self, name: str, then: Callable[[Any], None]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        self.remove()
        spec = None
        for finder in list(sys.meta_path):  # whichever finder would have found it (editable installs, zipapps)
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        loader, then = spec.loader, self.then

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec: Any) -> Any:
                return loader.create_module(spec)

            def exec_module(self, module: Any) -> None:
                loader.exec_module(module)
                then(module)

            def __getattr__(self, name: str) -> Any:  # resource readers, get_source...: the real loader's
                return getattr(loader, name)

        spec.loader = _Loader()
        return spec

    def remove(self) -> None:
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass


_HOOK_LOCK = threading.RLock()
#: The settings of the open use_scheduler blocks that wait for dask, outermost first.
_PENDING: list[Callable[[], None]] = []
_HOOK: list[_AfterImport] = []


def _on_dask_import(_module: Any) -> None:
    with _HOOK_LOCK:
        _HOOK.clear()
        pending = list(_PENDING)
        _PENDING.clear()
    # outside the lock: another thread may hold it while it waits for this import to finish
    for apply in pending:  # outermost first: the innermost block's setting wins
        apply()


@contextlib.contextmanager
def _dask_config_when_imported(**values: Callable[[], Any]) -> Iterator[None]:
    """``dask.config.set(**{k: make() ...})`` for the duration: now if dask is imported,
    otherwise as soon as something imports it (values are made then)."""
    applied: list[Any] = []

    def apply() -> None:
        import dask.config

        applied.append(dask.config.set({k: make() for k, make in values.items()}))

    with _HOOK_LOCK:
        imported = "dask" in sys.modules  # possibly still being imported by another thread
        if not imported:
            _PENDING.append(apply)
            if not _HOOK:
                _HOOK.append(_AfterImport("dask", _on_dask_import))
                sys.meta_path.insert(0, _HOOK[0])
    if imported:
        apply()  # outside the lock: `import dask.config` waits for a half-done import of dask
    try:
        yield
    finally:
        with _HOOK_LOCK:
            if apply in _PENDING:
                _PENDING.remove(apply)
            if not _PENDING and _HOOK:
                _HOOK.pop().remove()
            for cfg in reversed(applied):
                cfg.__exit__(None, None, None)
