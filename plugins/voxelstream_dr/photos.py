"""Preprocessed photographs by id, as channels-last uint8 batches for the network.

Read from a store's ``(3, 2R, 2R)`` outputs one photograph at a time; held in memory when
all of them fit in ``cache_bytes`` (the demo, a few thousand photographs at 512 px), else
read per batch, so memory does not grow with the dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Photos"]


class Photos:
    """``ids`` and a ``load(id) -> (S, S, 3) uint8``; ``batch(indices)`` stacks them."""

    def __init__(self, ids: Sequence[str], load: Callable[[str], np.ndarray], size: int,
                 cache_bytes: int = 2 * 2**30):
        self.ids = list(ids)
        self._load = load
        self.size = int(size)
        self._cache: dict[int, np.ndarray] | None = {} if len(self.ids) * 3 * self.size**2 <= cache_bytes else None

    @classmethod
    def from_array(cls, ids: Sequence[str], images: np.ndarray) -> Photos:
        """From an in-memory ``(N, S, S, 3)`` uint8 array (tests, notebooks)."""
        index = {i: k for k, i in enumerate(ids)}
        return cls(ids, lambda i: images[index[i]], images.shape[1])

    @classmethod
    def from_store(cls, store: Any, ids: Sequence[str], name: str, cache_bytes: int = 2 * 2**30) -> Photos:
        """The ``name`` outputs of ``ids`` in ``store`` (all of one size, checked)."""
        size = int(store.output_attrs(ids[0], name)["shape"][-1]) if ids else 0
        whole = (slice(None),) * 3

        def load(vid: str) -> np.ndarray:
            data = store.read_region(vid, name, whole)  # numpy straight from the chunks, no dask graph
            if data.shape != (3, size, size):
                raise ValueError(f"{vid}: {name} has shape {data.shape}, expected (3, {size}, {size}); re-run preprocess")
            return np.ascontiguousarray(data.transpose(1, 2, 0))

        return cls(ids, load, size, cache_bytes)

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, k: int) -> np.ndarray:
        if self._cache is None:
            return self._load(self.ids[k])
        if k not in self._cache:
            self._cache[k] = self._load(self.ids[k])
        return self._cache[k]

    def batch(self, indices: Sequence[int]) -> np.ndarray:
        return np.stack([self.image(int(k)) for k in indices])
