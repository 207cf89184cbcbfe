"""Scoring world points cube by cube: the classifier on the cube ``voxelstream nodules cubes`` would cut
at each point (centre voxel ``rint(world_to_index(world))``, edge = the model's receptive
field, the window minimum past the border), evaluated by the same jitted eval-mode network
as dense inference (:func:`.inference.evaluator`) in fixed-size batches (one compilation).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxelstream.errors import VoxelstreamError
from voxelstream.store import Store

from .cubes import window_range
from .extract import read_cubes
from .inference import evaluator
from .outputs import ISO_OUTPUT

__all__ = ["Point", "score_points", "DEFAULT_BATCH", "series_volumes"]

DEFAULT_BATCH = 16


@dataclass(frozen=True)
class Point:
    """A world point ``(x, y, z)`` LPS mm of a series (LUNA16's ``seriesuid``)."""

    series_uid: str
    world_xyz: tuple[float, float, float]


def series_volumes(store: Store, name: str) -> dict[str, str]:
    """Series uid -> volume id for the volumes whose ``name`` output is complete (a volume's
    series uid is ``meta["series_uid"]`` when its reader knew it, else its id)."""
    out: dict[str, str] = {}
    for vid in store.volume_ids(name=name):
        meta = store.attrs(vid, name).get("meta", {})
        out[str(meta.get("series_uid") or vid)] = vid
    return out


def score_points(store: Store, model_dir: str | Path, points: Sequence[Point], *, name: str = ISO_OUTPUT,
                 batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """The classifier's probability at each of ``points`` (float32, in input order). Cubes are
    read on the current dask scheduler. Raises :class:`VoxelstreamError` for a series without
    a complete ``name`` output in the store."""
    ev = evaluator(model_dir)
    volumes = series_volumes(store, name)
    out = np.full(len(points), np.nan, dtype=np.float32)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(points):
        groups[p.series_uid].append(i)
    edge = (ev.receptive_field,) * 3
    for uid, members in groups.items():
        if uid not in volumes:
            raise VoxelstreamError(
                f"{store.path}: series {uid!r} has no complete {name!r} output; preprocess it or drop its rows"
            )
        vol = store.open(volumes[uid], name)
        world = np.array([points[i].world_xyz for i in members], dtype=float)
        centres = np.rint(vol.world_to_index(world).reshape(-1, 3)).astype(np.int64)
        pad = window_range(vol)[0]
        for lo in range(0, len(members), batch_size):
            part = centres[lo : lo + batch_size]
            cubes = read_cubes(store, volumes[uid], name, part, edge, pad_value=pad).astype(np.float32)
            if len(cubes) < batch_size:  # a fixed batch shape: XLA compiles once
                cubes = np.concatenate([cubes, np.full((batch_size - len(cubes), *edge), pad, np.float32)])
            probs = ev.probabilities(cubes).reshape(batch_size)
            out[np.asarray(members[lo : lo + batch_size])] = probs[: len(part)]
    return out
