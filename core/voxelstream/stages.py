"""Turning numpy block functions into lazy, chunk-wise stages (2-D or 3-D, any channels)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .specs import StageSpec

if TYPE_CHECKING:  # pragma: no cover
    from .volume import Volume

__all__ = ["blockwise_stage", "apply_stage", "halo_depths", "call_with_declared"]

BlockFn = Callable[..., np.ndarray]
HaloValue = int | Sequence[int] | Mapping[str, int]
Halo = HaloValue | Callable[..., HaloValue]


def halo_depths(halo: HaloValue, axes: Sequence[str]) -> tuple[int, ...]:
    """One non-negative depth per spatial axis from an int (every axis), a sequence (one per
    axis, array order) or a mapping ``{axis name: depth}`` (missing axes get 0)."""
    if isinstance(halo, Mapping):
        unknown = sorted(set(halo) - set(axes))
        if unknown:
            raise ValueError(f"halo names axes {unknown} that this image does not have (its axes: {list(axes)})")
        depths = tuple(int(halo.get(a, 0)) for a in axes)
    elif np.isscalar(halo):
        depths = (int(halo),) * len(axes)  # type: ignore[arg-type]
    else:
        depths = tuple(int(v) for v in halo)  # type: ignore[union-attr]
        if len(depths) != len(axes):
            raise ValueError(
                f"halo {tuple(halo)!r} has {len(depths)} values but the image has "  # type: ignore[arg-type]
                f"{len(axes)} spatial axes {tuple(axes)}; give one per axis, an int or a dict"
            )
    if min(depths, default=0) < 0:
        raise ValueError(f"halo depths must be non-negative, got {depths}")
    return depths


def _default_params(fn: Callable[..., Any], skip_first: bool = True) -> dict[str, Any]:
    params = list(inspect.signature(fn).parameters.items())[1 if skip_first else 0:]
    return {k: p.default for k, p in params if p.default is not inspect.Parameter.empty}


def call_with_declared(fn: Callable[..., Any], params: Mapping[str, Any]) -> Any:
    """Call ``fn`` with the entries of ``params`` it declares (all of them if it takes
    ``**kwargs``): a halo function need not accept every parameter of its stage."""
    sig = inspect.signature(fn)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return fn(**params)
    return fn(**{k: v for k, v in params.items() if k in sig.parameters})


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

    ``fn`` receives a numpy block ``(C, *spatial)`` (every channel; 2 or 3 spatial axes)
    extended by the halo on each spatial axis (edge values repeated past the image border,
    ``boundary="nearest"``; never on the channel axis) and must return an array of the same
    shape; the engine trims the halo. ``halo`` is an int (every spatial axis), one int per
    spatial axis, a dict ``{"z": 0, "y": 3, "x": 3}``, or a function of the stage's parameters
    returning one of those (e.g. ``lambda sigma=1.0: ceil(4 * sigma)``); the function is
    called with the call's parameters merged over ``fn``'s defaults and receives only those it
    declares. Geometry and ``meta`` are carried over and the call is recorded in
    ``meta["history"]``. ``dtype`` is the output dtype (default: found by calling ``fn`` on a
    tiny block with the input's dtype and channel count).

    Return the result from a plugin's ``voxelstream_stages()`` hook; users then get it with
    ``voxelstream.get_stage(name)``.
    """
    defaults = _default_params(fn)

    def run(volume: Volume, **params: Any) -> Volume:
        data = volume.data
        merged = {**defaults, **params}
        value = call_with_declared(halo, merged) if callable(halo) else halo
        depth = (0, *halo_depths(value, volume.axes))
        out_dtype = dtype
        if out_dtype is None:
            probe_shape = (volume.channels, *(2 * d + 2 for d in depth[1:]))
            out_dtype = np.asarray(fn(np.zeros(probe_shape, dtype=data.dtype), **params)).dtype
        if any(depth):
            spatial = {i: s for i, s in enumerate(data.shape) if i > 0}
            # a chunk must be at least as deep as the halo: merge thin chunks first
            need = {i: max(depth[i], 1) for i in spatial}
            if any(min(data.chunks[i]) < need[i] for i in spatial if data.shape[i] >= need[i]):
                data = data.rechunk({i: max(max(data.chunks[i]), need[i]) for i in spatial})
            out = data.map_overlap(fn, depth=depth, boundary=boundary, dtype=out_dtype, trim=True, **params)
        else:
            out = data.map_blocks(fn, dtype=out_dtype, **params)
        return volume.replace(data=out)

    run.__name__ = f"{name}_stage"
    run.__doc__ = fn.__doc__
    return StageSpec(
        name=name,
        fn=run,
        description=description or (inspect.getdoc(fn) or "").split("\n")[0],
        params=defaults,
    )


def apply_stage(spec: StageSpec, volume: Volume, params: Mapping[str, Any]) -> Volume:
    """Run ``spec`` on ``volume`` and record it in the output's ``meta["history"]``."""
    from .plugins import plugin_version
    from .volume import Volume

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
