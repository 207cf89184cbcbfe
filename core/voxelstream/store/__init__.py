"""The Zarr v3 store: one OME-Zarr image group per volume and output name.

Layout::

    <store>/volumes/<volume-id>/<name>/0     the array (chunked, one writer per chunk)
    <store>/volumes/<volume-id>/<name>       OME-Zarr 0.5 multiscales + ``voxelstream`` attrs
    <store>/runs/<timestamp>-<command>.json  one manifest per run
"""

from .ids import safe_id
from .store import DEFAULT_CHUNK, Store, default_compressor, open_store

__all__ = ["Store", "open_store", "safe_id", "DEFAULT_CHUNK", "default_compressor"]
