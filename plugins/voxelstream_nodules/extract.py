"""Cutting cubes out of a stored volume, reading each chunk region once.

A cube of edge ``e`` (voxels, per axis) centred at voxel ``c`` covers the indices
``[c - e // 2, c - e // 2 + e)``; for an even edge the centre voxel is the first of the two
middle ones. Parts of a cube outside the volume are filled with ``pad_value`` (the cube is
never shifted to fit), so the centre voxel always sits at index ``e // 2`` inside the cube.

Cubes are grouped by the chunk-aligned region they touch; one dask task per group reads that
region once (only those chunks are decompressed) and cuts all of the group's cubes from it.
Stored outputs are channel-first ``(1, Z, Y, X)``; the tasks read them through the store's
public :class:`~voxelstream.store.reading.OutputReader` (picklable) and cubes are spatial
``(D, H, W)``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np

from voxelstream.store import Store

__all__ = ["cube_edge", "cube_starts", "cut_cube", "read_cubes", "read_spatial", "chunk_groups"]


def cube_edge(cube_mm: float, spacing_zyx: Sequence[float]) -> tuple[int, int, int]:
    """Cube edge in voxels per axis: ``round(cube_mm / spacing)`` (at least 1)."""
    return tuple(max(1, int(round(cube_mm / float(s)))) for s in spacing_zyx)  # type: ignore[return-value]


def cube_starts(centres_zyx: np.ndarray, edge: Sequence[int]) -> np.ndarray:
    """First index (z, y, x) of each cube centred at the integer ``centres_zyx`` (n, 3)."""
    return np.asarray(centres_zyx, dtype=np.int64).reshape(-1, 3) - np.asarray(edge, dtype=np.int64) // 2


def cut_cube(
    region: np.ndarray, region_start: Sequence[int], start: Sequence[int], edge: Sequence[int], pad_value: float
) -> np.ndarray:
    """The cube ``[start, start + edge)`` from ``region`` (which holds the volume's voxels from
    ``region_start``); voxels ``region`` does not hold are ``pad_value``."""
    out = np.full(tuple(edge), pad_value, dtype=region.dtype)
    src, dst = [], []
    for s, e, r0, n in zip(start, edge, region_start, region.shape):
        lo, hi = max(s, r0), min(s + e, r0 + n)
        if hi <= lo:
            return out
        src.append(slice(lo - r0, hi - r0))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = region[tuple(src)]
    return out


def chunk_groups(
    starts: np.ndarray, edge: Sequence[int], shape: Sequence[int], chunks: Sequence[int]
) -> dict[tuple[int, ...], list[int]]:
    """Cube numbers grouped by the chunk-aligned region they touch: key ``(z0, z1, y0, y1,
    x0, x1)`` in voxels (clipped to the volume). Cubes wholly outside get the key ``()``."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, st in enumerate(np.asarray(starts).reshape(-1, 3)):
        key: list[int] = []
        for s, e, n, c in zip(st, edge, shape, chunks):
            lo, hi = max(int(s), 0), min(int(s) + int(e), int(n))
            if hi <= lo:
                key = []
                break
            key += [lo // c * c, min(-(-hi // c) * c, int(n))]
        groups[tuple(key)].append(i)
    return dict(groups)


def read_spatial(reader: Any, region: Sequence[slice], channel: int = 0) -> np.ndarray:
    """The spatial ``region`` (one slice per spatial axis) of one channel of a stored output,
    read through its :meth:`Store.reader <voxelstream.store.Store.reader>` handle."""
    return np.asarray(reader[(slice(channel, channel + 1), *region)])[0]


def _read_group(reader: Any, key: tuple[int, ...], starts: np.ndarray,
                edge: tuple[int, ...], pad_value: float, dtype: str) -> np.ndarray:
    if not key:
        return np.full((len(starts), *edge), pad_value, dtype=dtype)
    region_start = key[0::2]
    region = read_spatial(reader, [slice(a, b) for a, b in zip(key[0::2], key[1::2])])
    return np.stack([cut_cube(region, region_start, st, edge, pad_value) for st in starts])


def read_cubes(
    store: Store, volume_id: str, name: str, centres_zyx: np.ndarray, edge: Sequence[int], pad_value: float
) -> np.ndarray:
    """The cubes centred at the integer voxels ``centres_zyx`` (n, 3) of output ``name`` of
    ``volume_id`` (channel 0), as (n, *edge), computed on the current dask scheduler."""
    reader = store.reader(volume_id, name)
    edge = tuple(int(e) for e in edge)
    starts = cube_starts(centres_zyx, edge)
    out = np.empty((len(starts), *edge), dtype=reader.dtype)
    if not len(starts):
        return out
    groups = chunk_groups(starts, edge, reader.shape[1:], reader.chunks[1:])
    tasks = [
        dask.delayed(_read_group, pure=True)(reader, key, starts[members], edge, float(pad_value), str(reader.dtype))
        for key, members in groups.items()
    ]
    for members, cubes in zip(groups.values(), dask.compute(*tasks)):
        out[members] = cubes
    return out
