"""Turning numpy block functions into lazy, chunk-wise stages."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .specs import StageSpec
from .volume import Volume

__all__ = ["blockwise_stage", "apply_stage"]

BlockFn = Callable[..., np.ndarray]


Halo = int | Sequence[int] | Callable[..., int | Sequence[int]]


def _depth(halo: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    h = (int(halo),) * 3 if np.isscalar(halo) else tuple(int(v) for v in halo)  # type: ignore[arg-type]
    if len(h) != 3 or min(h) < 0:
        raise ValueError(f"halo must be a non-negative int or three of them (z, y, x), got {halo!r}")
    return (0,) * (ndim - 3) + h


def _default_params(fn: BlockFn) -> dict[str, Any]:
    sig = inspect.signature(fn)
    return {
        k: p.default
        for k, p in list(sig.parameters.items())[1:]
        if p.default is not inspect.Parameter.empty
    }


def blockwise_stage(
    name: str,
    fn: BlockFn,
    halo: Halo = 0,
    *,
    dtype: Any = None,
    description: str = "",
    boundary: str = "nearest",
) -> StageSpec:
    """Make a lazy chunk-wise stage from ``fn(block, **params) -> block``.

    ``fn`` receives a numpy block (axes ``(z, y, x)``, or ``(c, z, y, x)``) extended by
    ``halo`` voxels on every side (edge values repeated past the volume's border,
    ``boundary="nearest"``), and must return an array of the same shape; the engine trims
    the halo. ``halo`` is an int, three ints ``(z, y, x)``, or a function of the stage's
    parameters returning one (e.g. ``lambda sigma=1.0: ceil(4 * sigma)``). Geometry and ``meta`` are carried over and the call is recorded in
    ``meta["history"]``. ``dtype`` is the output dtype (default: found by calling ``fn`` on
    a tiny block of the input dtype).

    Return the result from a plugin's ``voxelstream_stages()`` hook; users then get it
    with ``voxelstream.get_stage(name)``.
    """

    def run(volume: Volume, **params: Any) -> Volume:
        data = volume.data
        depth = _depth(halo(**params) if callable(halo) else halo, data.ndim)
        out_dtype = dtype
        if out_dtype is None:
            probe = np.zeros(tuple(2 * d + 2 for d in depth), dtype=data.dtype)
            out_dtype = np.asarray(fn(probe, **params)).dtype
        if any(depth):
            out = data.map_overlap(
                fn, depth=depth, boundary=boundary, dtype=out_dtype, trim=True, **params
            )
        else:
            out = data.map_blocks(fn, dtype=out_dtype, **params)
        return volume.replace(data=out)

    run.__name__ = f"{name}_stage"
    run.__doc__ = fn.__doc__
    return StageSpec(
        name=name,
        fn=run,
        description=description or (inspect.getdoc(fn) or "").split("\n")[0],
        params=_default_params(fn),
    )


def apply_stage(spec: StageSpec, volume: Volume, params: Mapping[str, Any]) -> Volume:
    """Run ``spec`` on ``volume`` and record it in the output's ``meta["history"]``."""
    from .plugins import plugin_version

    merged = {**spec.params, **params}
    out = spec.fn(volume, **params)
    if not isinstance(out, Volume):
        raise TypeError(f"stage {spec.name!r} returned {type(out).__name__}, expected Volume")
    entry = {
        "stage": spec.name,
        "params": merged,
        "plugin": spec.plugin,
        "version": plugin_version(spec.plugin),
    }
    return out.with_history(entry)
