"""Which chunks of a complete output hold a file: recorded when the output is completed, so
that a chunk file deleted later reads as an error instead of as the fill value.

Why a map and not "write every chunk": chunks holding only the fill value are not stored
(zarr's default, and the store's bytes must stay zarr's), and for masks and probability maps
most chunks are such. One bit per chunk, zlib-compressed: 2,400 chunks of a 1.2 GB scan take
a few dozen bytes of the output's metadata.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["record", "from_keys", "decode", "grid"]


def grid(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    """The number of chunks along each axis."""
    return tuple(-(-int(s) // int(c)) for s, c in zip(shape, chunks))


def record(array_dir: Path) -> dict[str, Any]:
    """``{"chunk_files": n, "stored_chunks": map}`` for the array in ``array_dir`` (its
    ``zarr.json`` gives the chunk grid; its ``c/i/j/...`` files are the stored chunks). The
    map is left out for arrays of another key layout (then only the count is known)."""
    keys = []
    base = array_dir / "c"
    for folder, _, files in os.walk(base):
        rel = Path(folder).relative_to(base).parts
        keys.extend((*rel, f) for f in files)
    try:
        doc = json.loads((array_dir / "zarr.json").read_bytes())
        grid_ = grid(doc["shape"], doc["chunk_grid"]["configuration"]["chunk_shape"])
        return from_keys([tuple(int(i) for i in key) for key in keys], grid_)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return {"chunk_files": len(keys)}


def from_keys(keys: Iterable[tuple[int, ...]], grid: tuple[int, ...]) -> dict[str, Any]:
    """What :func:`record` gives, from the chunk indices a writer stored (no walk of the
    array's folders) on a chunk grid ``grid``."""
    stored = np.zeros(grid, dtype=bool)
    n = 0
    for key in keys:
        stored[key] = True
        n += 1
    packed = zlib.compress(np.packbits(stored.ravel()).tobytes(), 6)
    return {"chunk_files": n, "stored_chunks": base64.b64encode(packed).decode("ascii")}


def decode(text: str, grid: tuple[int, ...]) -> np.ndarray | None:
    """The boolean chunk grid ``record`` wrote (``None`` when ``text`` is empty or does not
    fit ``grid``: then nothing is known and a missing chunk reads as the fill value)."""
    if not text:
        return None
    try:
        bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.uint8))
    except (ValueError, zlib.error):
        return None
    n = int(np.prod(grid))
    if not (n <= bits.size < n + 8):
        return None
    return bits[:n].astype(bool).reshape(grid)
