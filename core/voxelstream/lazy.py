"""Naming an implementation now and importing it on first use.

Every ``voxelstream`` start imports every plugin's registration module; if those imported
dask, zarr or JAX, ``voxelstream --help`` would take seconds. They declare names with
targets (``"package.module:attribute"``) instead, resolved only when the name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["import_target", "lazy_callable"]


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
