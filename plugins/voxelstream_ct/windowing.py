"""The ``hu_window`` stage: clip Hounsfield units to a window and scale it to [0, 1].

Presets (window width / level as radiologists name them):

=============  ================  ===============
preset         [lo, hi] HU       width / level
=============  ================  ===============
``lung``       [-1000, 400]      1400 / -300  (LUNA16 preprocessing; the default)
``mediastinum``  [-160, 240]     400 / 40
``bone``       [-450, 1050]      1500 / 300
=============  ================  ===============

Output dtypes and their error against the exact ``(clip(v, lo, hi) - lo) / (hi - lo)``:

* ``float32`` (default): about 6e-8 (float32 rounding of a value in [0, 1]).
* ``float16``: at most 2**-12 ~ 2.4e-4 (half a unit in the last place just below 1), i.e.
  0.34 HU in the lung window; half the memory and disk of float32.
* ``uint8``: ``round(255 * value)``; at most 0.5 / 255 ~ 2e-3, i.e. ``(hi - lo) / 510`` HU
  (2.7 HU in the lung window). Divide by 255 to get [0, 1] back.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

import voxelstream as vs
from voxelstream.lazy import BlockSource

from .presets import DEFAULT_PRESET, DTYPES, PRESETS  # light, for the CLI; re-exported here

__all__ = ["PRESETS", "DTYPES", "window_bounds", "window_block", "hu_window", "HU_WINDOW_STAGE"]


def window_bounds(preset: str | None = None, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    """``(lo, hi)`` in HU from a preset name or explicit bounds (default: the lung preset)."""
    if (lo is None) != (hi is None):
        raise vs.VoxelstreamError("hu_window: give both lo and hi (or a preset)")
    if lo is not None:
        if preset is not None:
            raise vs.VoxelstreamError("hu_window: give either a preset or lo/hi, not both")
        lo, hi = float(lo), float(hi)  # type: ignore[arg-type]
        if not hi > lo:
            raise vs.VoxelstreamError(f"hu_window: hi ({hi:g}) must be greater than lo ({lo:g})")
        return lo, hi
    name = DEFAULT_PRESET if preset is None else str(preset).lower()
    if name not in PRESETS:
        raise vs.VoxelstreamError(f"hu_window: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def window_block(block: np.ndarray, lo: float, hi: float, out_dtype: str = "float32") -> np.ndarray:
    """Window one numpy block: ``(clip(block, lo, hi) - lo) / (hi - lo)`` as ``out_dtype``."""
    scaled = np.clip(block.astype(np.float32, copy=False), lo, hi)
    scaled -= np.float32(lo)
    scaled *= np.float32(1.0 / (hi - lo))
    if out_dtype == "uint8":
        scaled *= np.float32(255.0)
        return np.rint(scaled).astype(np.uint8)
    return scaled.astype(out_dtype, copy=False)


def hu_window(
    volume: vs.Volume,
    preset: str | None = None,
    lo: float | None = None,
    hi: float | None = None,
    dtype: str = "float32",
) -> vs.Volume:
    """Clip ``volume`` (in HU) to a window and scale it to [0, 1], chunk by chunk.

    Args:
        preset: ``lung`` ([-1000, 400], the default), ``mediastinum`` or ``bone``.
        lo, hi: explicit window in HU instead of a preset.
        dtype: ``float32`` (default), ``float16`` or ``uint8`` (0..255); see the module
            docstring for the error each costs.

    ``meta["units"]`` becomes ``"window"`` and ``meta["window"]`` records the bounds.
    """
    if dtype not in DTYPES:
        raise vs.VoxelstreamError(f"hu_window: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    w_lo, w_hi = window_bounds(preset, lo, hi)
    meta: dict[str, Any] = {**volume.meta, "units": "window", "window": {"lo": w_lo, "hi": w_hi, "dtype": dtype}}
    graph = functools.partial(_window_graph, volume, w_lo, w_hi, dtype)
    if volume.source is None:
        return volume.replace(data=graph(), meta=meta)
    # the input computes its regions directly (e.g. resample): window each as it is made, one
    # function per block and no graph (the dask form is built only if a later stage asks)
    read = functools.partial(_window_region, volume.source.read, w_lo, w_hi, dtype)
    return volume.replace(data=BlockSource(volume.shape, dtype, read, graph, per_chunk=volume.source.per_chunk),
                          meta=meta)


def _window_region(read: Any, lo: float, hi: float, dtype: str, region: tuple[slice, ...]) -> np.ndarray:
    return window_block(read(region), lo, hi, dtype)


def _window_graph(volume: vs.Volume, lo: float, hi: float, dtype: str) -> Any:
    return volume.data.map_blocks(window_block, lo=lo, hi=hi, dtype=np.dtype(dtype), out_dtype=dtype)


HU_WINDOW_STAGE = vs.StageSpec(
    name="hu_window",
    fn=hu_window,
    description="clip HU to a window (lung, mediastinum, bone or lo/hi) and scale to [0, 1]",
    params={"preset": None, "lo": None, "hi": None, "dtype": "float32"},
)
