"""The read API plugins use on stored outputs: :class:`OutputReader`, a small picklable
handle (store root, array path, completion token) that dask tasks carry instead of rebuilding
store paths or keeping their own ``zarr.open_array`` caches."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StoreError
from . import chunkmap
from .chunkio import ChunkReader, plain_codec
from .direct import plain_array

__all__ = ["OutputReader"]


@functools.lru_cache(maxsize=64)
def _source(root: str, path: str, token: str, label: str, stored: str = "") -> Any:
    # token: an output rewritten at the same path is a new key, never a stale handle
    plain = plain_array(root, path)  # the store's own layout: its document suffices, no zarr
    if plain is not None:
        arr, codec = plain
    else:
        import zarr

        try:
            arr = zarr.open_array(store=root, path=path, mode="r")
        except (FileNotFoundError, zarr.errors.NodeTypeValidationError, ValueError, KeyError) as exc:
            raise StoreError(f"{label}: its array cannot be opened ({exc}); run 'voxelstream verify'") from None
        codec = plain_codec(arr)
        if codec is None:
            return arr
    grid = tuple(-(-s // c) for s, c in zip(arr.shape, arr.chunks))
    return ChunkReader(arr, codec, label, stored=chunkmap.decode(stored, grid))


@dataclass(frozen=True)
class OutputReader:
    """A complete stored output, read region by region (see :meth:`Store.reader`).

    ``shape``/``chunks`` are channel-first ``(C, *spatial)``; ``reader[slices]`` returns
    numpy (every chunk touched is checksum-verified; a damaged one, or a missing one that the
    output was completed with, raises :class:`~voxelstream.errors.StoreError` naming volume,
    output and chunk). ``stored`` is the map of stored chunks (:mod:`.chunkmap`).
    """

    root: str
    path: str
    token: str
    label: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    channel_added: bool = False  # layout-1 stores kept single-channel volumes without the axis
    stored: str = ""

    @classmethod
    def create(cls, root: str, path: str, token: str, label: str, spatial_ndim: int,
               expected_shape: Any = None, stored: str = "") -> OutputReader:
        src = _source(root, path, token, label, stored)
        shape, chunks = tuple(src.shape), tuple(src.arr.chunks if isinstance(src, ChunkReader) else src.chunks)
        added = len(shape) == spatial_ndim
        if added:
            shape, chunks = (1, *shape), (1, *chunks)
        if expected_shape is not None and tuple(expected_shape) != shape:
            raise StoreError(f"{label}: its array has shape {shape} but its metadata says {tuple(expected_shape)} "
                             "(damaged); run 'voxelstream verify --repair' and re-run the command that makes it")
        return cls(root, path, token, label, shape, np.dtype(src.dtype), chunks, added, stored)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        src = _source(self.root, self.path, self.token, self.label, self.stored)
        if not self.channel_added:
            return src[key]
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        return np.asarray(src[key[1:]])[None][key[0]] if isinstance(key[0], slice) else src[key[1:]]
