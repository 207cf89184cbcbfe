"""The Zarr v3 store: one OME-Zarr image group per volume and output (layout: ``layout.py``).

Plugins read through :meth:`Store.open` (a lazy Volume), :meth:`Store.array` (a lazy dask
array), :meth:`Store.read_region` (numpy for a region) and :meth:`Store.reader` (a picklable
handle for dask tasks); they never build store paths themselves.
"""

from typing import Any

from ..constants import DEFAULT_CHUNK
from .ids import safe_id
from .store import Store, open_store

# these need zarr, numcodecs or dask: imported on first use, so that opening a store and
# listing its volumes (every store command's fixed cost) stays cheap
_LAZY = {"ChunkError": ".chunkio", "default_chunks": ".planning", "default_compressor": ".planning",
         "OutputReader": ".reading"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Store", "open_store", "OutputReader", "ChunkError", "safe_id", "DEFAULT_CHUNK", "default_chunks",
           "default_compressor"]
