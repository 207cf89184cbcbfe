"""HU window presets and output dtypes of the ``hu_window`` stage (see :mod:`.windowing`).

Here, in a module that imports nothing, because ``voxelstream ct preprocess --help`` builds
its choices from them and must not import numpy or dask to do so.
"""

from __future__ import annotations

__all__ = ["PRESETS", "DEFAULT_PRESET", "DTYPES"]

PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-1000.0, 400.0),
    "mediastinum": (-160.0, 240.0),
    "bone": (-450.0, 1050.0),
}
DEFAULT_PRESET = "lung"
DTYPES = ("float32", "float16", "uint8")
