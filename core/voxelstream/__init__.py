"""voxelstream: stream medical volumes through pluggable, chunk-wise stages.

The public API::

    vol = voxelstream.read("scan.mhd")                 # lazy Volume (dask array + geometry)
    vol.to_zarr("data.zarr", "scan")                   # OME-Zarr group, streamed chunk by chunk
    store = voxelstream.open_store("data.zarr")
    iso = voxelstream.get_stage("resample")(store.open("scan"), spacing=(1, 1, 1))

Plugins implement the hooks in :mod:`voxelstream.hookspecs` with ``@voxelstream.hookimpl``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .discovery import ReadOptions, discover, read
from .errors import PluginConflictError, ReadError, StoreError, UnknownNameError, VoxelstreamError
from .hookspecs import hookimpl
from .models import load_model
from .plugins import get_stage, plugin_report
from .specs import CommandSpec, ModelSpec, ReaderSpec, Source, SourceError, StageSpec, TaskSpec
from .stages import blockwise_stage
from .store import Store, open_store
from .volume import Volume

try:
    __version__ = version("voxelstream")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Volume",
    "read",
    "discover",
    "ReadOptions",
    "open_store",
    "Store",
    "hookimpl",
    "get_stage",
    "blockwise_stage",
    "load_model",
    "plugin_report",
    "ReaderSpec",
    "StageSpec",
    "ModelSpec",
    "TaskSpec",
    "CommandSpec",
    "Source",
    "SourceError",
    "VoxelstreamError",
    "ReadError",
    "StoreError",
    "PluginConflictError",
    "UnknownNameError",
    "__version__",
]
