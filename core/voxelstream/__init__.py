"""voxelstream: stream medical volumes through pluggable, chunk-wise stages.

The public API::

    vol = voxelstream.read("scan.mhd")                 # lazy Volume (dask array + geometry)
    vol.to_zarr("data.zarr", "scan")                   # OME-Zarr group, streamed chunk by chunk
    store = voxelstream.open_store("data.zarr")
    iso = voxelstream.get_stage("resample")(store.open("scan"), spacing=(1, 1, 1))

Plugins implement the hooks in :mod:`voxelstream.hookspecs` with ``@voxelstream.hookimpl``.

``import voxelstream`` is cheap: the names below that need dask, zarr or numpy are imported
on first use (module ``__getattr__``), so a plugin's registration module and
``voxelstream --help`` do not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# light: needed by every plugin's registration module
from .errors import (
    PluginConflictError,
    PluginError,
    ReadError,
    StoreError,
    UnknownNameError,
    VoxelstreamError,
)
from .hookspecs import hookimpl
from .specs import CommandSpec, LazySpec, ModelSpec, ReaderSpec, Source, SourceError, StageSpec, TaskSpec

# public name -> the submodule that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "Volume": ".volume",
    "read": ".discovery",
    "discover": ".discovery",
    "ReadOptions": ".discovery",
    "open_store": ".store",
    "Store": ".store",
    "get_stage": ".plugins",
    "get_task": ".plugins",
    "plugin_report": ".plugins",
    "blockwise_stage": ".stages",
    "load_model": ".models",
    "save_model": ".models",
    "lazy_callable": ".lazy",
    "BlockSource": ".lazy",
    "run_per_volume": ".runner",
    "stored_jobs": ".runner",
    "VolumeJob": ".runner",
    "Accepts": ".runner",
    "add_store_option": ".cli.options",
    "add_scheduler_option": ".cli.options",
    "add_progress_option": ".cli.options",
    "add_common_options": ".cli.options",
    "prefetch": ".prefetch",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs: the same names, eagerly
    from .cli.options import add_common_options, add_progress_option, add_scheduler_option, add_store_option
    from .discovery import ReadOptions, discover, read
    from .lazy import BlockSource, lazy_callable
    from .models import load_model, save_model
    from .plugins import get_stage, get_task, plugin_report
    from .prefetch import prefetch
    from .runner import Accepts, VolumeJob, run_per_volume, stored_jobs
    from .stages import blockwise_stage
    from .store import Store, open_store
    from .volume import Volume


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module 'voxelstream' has no attribute {name!r}")
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voxelstream")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


__all__ = [
    "Volume",
    "read",
    "discover",
    "ReadOptions",
    "open_store",
    "Store",
    "hookimpl",
    "get_stage",
    "get_task",
    "blockwise_stage",
    "load_model",
    "save_model",
    "plugin_report",
    "lazy_callable",
    "BlockSource",
    "run_per_volume",
    "stored_jobs",
    "VolumeJob",
    "Accepts",
    "add_store_option",
    "add_scheduler_option",
    "add_progress_option",
    "add_common_options",
    "prefetch",
    "ReaderSpec",
    "StageSpec",
    "ModelSpec",
    "TaskSpec",
    "CommandSpec",
    "LazySpec",
    "Source",
    "SourceError",
    "VoxelstreamError",
    "ReadError",
    "StoreError",
    "PluginError",
    "PluginConflictError",
    "UnknownNameError",
    "__version__",
]
