"""What a dask.distributed worker loads once, when it joins, rather than inside its first volume.

Imported only where a distributed client exists (it imports ``distributed``).
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["WarmUp", "warm_up_workers"]


class WarmUp(WorkerPlugin):
    """Imports the engine (runner, store, direct writer) and builds the plugin manager from the
    worker's entry points, on every worker of the cluster and on every worker that joins later.

    Why: a cold worker spent about 0.1 s of its first volume on this (benchmarks/RESULTS.md,
    "Volumes in flight, warm workers"), on every worker at once, so a run of small volumes on two
    workers paid it as fully as a run on one.
    """

    name = "voxelstream-warm-up"
    idempotent = True

    def setup(self, worker: Any) -> None:
        try:
            _import_engine()
            from voxelstream.plugins import get_plugin_manager, stages

            get_plugin_manager()
            stages()  # the stages' specs (light by contract: no dask, no JAX)
        except Exception:  # noqa: BLE001 - only a head start: the first volume reports the same error
            pass


#: What a volume task runs whatever the command: the runner, the store's read and write paths,
#: the stage machinery.
_ENGINE = ("voxelstream.runner", "voxelstream.pipeline", "voxelstream.stages", "voxelstream.scheduler",
           "voxelstream.limits", "voxelstream.store.direct", "voxelstream.store.reading",
           "voxelstream.store.chunkio", "voxelstream.store.planning", "voxelstream.store.cleanup")


def _import_engine() -> None:
    import importlib

    for module in _ENGINE:
        importlib.import_module(module)


def warm_up_workers(client: Any) -> None:
    """Register :class:`WarmUp` with ``client``'s cluster (returns once the current workers ran
    it), and import the engine on its scheduler: the scheduler unpickles each task it is given,
    so the first volume task of a run waited about 40 ms while it imported the runner and the
    store. A cluster whose workers cannot load voxelstream still runs: each volume then reports
    the cause."""
    try:
        client.register_plugin(WarmUp())
    except Exception:  # noqa: BLE001 - see the docstring
        pass
    try:
        client.run_on_scheduler(_import_engine)
    except Exception:  # noqa: BLE001 - a scheduler without voxelstream: it imports nothing then
        pass
