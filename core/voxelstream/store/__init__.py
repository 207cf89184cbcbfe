"""The Zarr v3 store: one OME-Zarr image group per volume and output (layout: ``layout.py``).

Plugins read through :meth:`Store.open` (a lazy Volume), :meth:`Store.array` (a lazy dask
array), :meth:`Store.read_region` (numpy for a region) and :meth:`Store.reader` (a picklable
handle for dask tasks); they never build store paths themselves.
"""

from .chunkio import ChunkError
from .ids import safe_id
from .planning import DEFAULT_CHUNK, default_chunks, default_compressor
from .reading import OutputReader
from .store import Store, open_store

__all__ = ["Store", "open_store", "OutputReader", "ChunkError", "safe_id", "DEFAULT_CHUNK", "default_chunks",
           "default_compressor"]
