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
            import voxelstream.pipeline  # noqa: F401 - the stage chains of `voxelstream run`
            import voxelstream.runner  # noqa: F401 - what every volume task runs
            import voxelstream.store.direct  # noqa: F401
            from voxelstream.plugins import get_plugin_manager

            get_plugin_manager()
        except Exception:  # noqa: BLE001 - only a head start: the first volume reports the same error
            pass


def warm_up_workers(client: Any) -> None:
    """Register :class:`WarmUp` with ``client``'s cluster (returns once the current workers ran
    it). A cluster whose workers cannot load voxelstream still runs: each volume then reports
    the cause."""
    try:
        client.register_plugin(WarmUp())
    except Exception:  # noqa: BLE001 - see the docstring
        pass
