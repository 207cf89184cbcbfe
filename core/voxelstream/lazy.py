"""Naming an implementation now and importing it on first use.

Every ``voxelstream`` start imports every plugin's registration module; if those imported
dask, zarr or JAX, ``voxelstream --help`` would take seconds. They declare names with
targets (``"package.module:attribute"``) instead, resolved only when the name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["import_target", "lazy_callable", "BlockSource"]


def _split(target: str) -> tuple[str, str]:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"target {target!r}: expected 'package.module:attribute'")
    return module, attr


def import_target(target: str) -> Any:
    """The object ``"package.module:attribute"`` names (dots in the attribute part walk
    into it), importing the module now."""
    module, attr = _split(target)
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class _LazyCallable:
    """Calls the target, imported on the first call (then kept)."""

    __slots__ = ("_target", "_obj")

    def __init__(self, target: str) -> None:
        _split(target)  # a malformed target fails where it is written, not where it is called
        self._target = target
        self._obj: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        if self._obj is None:
            self._obj = import_target(self._target)
        return self._obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (e.g. to a dask worker) as the target itself: the worker imports it anyway
        return (import_target, (self._target,))

    def __repr__(self) -> str:
        return f"lazy_callable({self._target!r})"


def lazy_callable(target: str) -> Callable[..., Any]:
    """A stand-in for the function or class ``"package.module:attribute"`` that imports it
    on the first call. For command modules and registration modules that must stay cheap to
    import::

        open_store = voxelstream.lazy_callable("voxelstream.store:open_store")

    Only calling goes through; use the real object (import it where it is needed) for
    ``isinstance`` checks or attribute access.
    """
    return _LazyCallable(target)


class BlockSource:
    """An array known by its shape and dtype whose regions are computed directly, without
    a dask graph, and whose dask form is built only when something asks for it.

    Why: a one-scan command spends as long importing dask.array (0.3 s with the scipy
    modules it pulls in) and building, fusing and scheduling a graph as it spends on the
    voxels. A reader or stage that can compute any region of its output from a region of its
    input gives a :class:`~voxelstream.Volume` a ``BlockSource``; the store then writes the
    volume block by block on a thread pool (:mod:`voxelstream.store.direct`), and
    ``Volume.data`` (dask) is built from ``to_dask`` only when another stage needs it.

    Args:
        shape: channel-first ``(C, *spatial)``.
        dtype: of the arrays ``read`` returns.
        read: ``read(region)`` -> numpy array of that region, for a tuple of ``slice`` (step
            1, bounds inside ``shape``), one per axis, channel axis included. Called from
            several threads at once.
        to_dask: builds the equivalent lazy dask array (same values for every region).
        chunks: the block edges regions are cheapest to read at (a store's chunks), if any:
            a stage reading many overlapping regions caches blocks of this grid.
        per_chunk: regions are computed, not read: a writer asks for one chunk at a time
            (the computation stays in the CPU caches: a 64^3 resample is 2-4x faster per
            voxel than a whole band's). Otherwise it asks for rows of chunks (a file is read
            in long runs).
    """

    __slots__ = ("shape", "dtype", "read", "to_dask", "chunks", "per_chunk")

    def __init__(self, shape: tuple[int, ...], dtype: Any, read: Callable[[tuple[slice, ...]], Any],
                 to_dask: Callable[[], Any], chunks: tuple[int, ...] | None = None, per_chunk: bool = False) -> None:
        import numpy as np

        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.read = read
        self.to_dask = to_dask
        self.chunks = None if chunks is None else tuple(int(c) for c in chunks)
        self.per_chunk = bool(per_chunk)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"BlockSource(shape={self.shape}, dtype={self.dtype})"
