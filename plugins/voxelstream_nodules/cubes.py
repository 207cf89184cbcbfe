"""Building a cube set from a store and LUNA16 tables (the work of ``voxelstream nodules cubes``)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxelstream.errors import VoxelstreamError
from voxelstream.store import Store
from voxelstream.volume import Volume

from .annotations import Annotation, by_series
from .cubeset import CubeRecord, CubeSet
from .extract import cube_edge, read_cubes
from .outputs import ISO_OUTPUT
from .sampling import augment, clear_of_findings, draw_augmentations, inside_body, volume_rng

__all__ = ["CubesReport", "build_cubes", "window_range", "DEFAULT_CUBE_MM", "DEFAULT_NEGATIVES"]

DEFAULT_CUBE_MM = 48.0
DEFAULT_NEGATIVES = 10
MAX_NEGATIVE_ROUNDS = 12
DEFAULT_WINDOW = (0.0, 1.0)  # HU [-1000, 400] -> [0, 1], the reference preprocessing


class CubesError(VoxelstreamError):
    """The store's volumes cannot make one cube set."""


@dataclass
class CubesReport:
    """What ``build_cubes`` did: counts, and the rows it skipped (one-line reasons)."""

    volumes: int = 0
    positives: int = 0
    augmented: int = 0
    negatives: int = 0
    rows_unknown_series: int = 0
    rows_outside: list[str] = field(default_factory=list)
    short_of_negatives: list[str] = field(default_factory=list)


def window_range(volume: Volume) -> tuple[float, float]:
    """The value range of a windowed volume: ``[0, 255]`` when the windowing stage recorded a
    ``uint8`` output in ``meta["window"]``, else the reference ``[0, 1]``."""
    window = volume.meta.get("window") or {}
    if isinstance(window, dict) and window.get("dtype") == "uint8":
        return 0.0, 255.0
    return DEFAULT_WINDOW


def _series_of(volume_id: str, volume: Volume) -> str:
    return str(volume.meta.get("series_uid") or volume_id)


def _centres(volume: Volume, rows: Sequence[Annotation]) -> np.ndarray:
    if not rows:
        return np.zeros((0, 3))
    return volume.world_to_index(np.array([a.world_xyz for a in rows], dtype=float)).reshape(-1, 3)


def _inside(idx: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    return ((idx >= 0) & (idx < np.asarray(shape))).all(axis=1)


def _negatives(
    store: Store, vid: str, name: str, volume: Volume, findings: tuple[np.ndarray, np.ndarray],
    n: int, edge: tuple[int, ...], cube_mm: float, window: tuple[float, float], seed: int, series: str,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` negative centres and their cubes, drawn in rounds of candidates (deterministic)."""
    rng = volume_rng(seed, series, "negatives")
    shape = np.asarray(volume.spatial_shape)
    centres, cubes = [], []
    for _ in range(MAX_NEGATIVE_ROUNDS):
        if len(centres) >= n:
            break
        # about half of a chest scan is body: draw twice what is missing, read only those
        cand = rng.integers(0, shape, size=(max(2 * (n - len(centres)), 8), 3))
        cand = cand[clear_of_findings(cand, findings[0], findings[1], volume.spacing, cube_mm)]
        got = read_cubes(store, vid, name, cand, edge, pad_value=window[0])
        for c, cube in zip(cand, got):
            if len(centres) < n and inside_body(cube, *window):
                centres.append(c)
                cubes.append(cube)
    return np.array(centres, dtype=np.int64).reshape(-1, 3), np.array(cubes).reshape(-1, *edge)


def build_cubes(
    store: Store,
    annotations: Sequence[Annotation],
    out: str | Path,
    *,
    name: str = ISO_OUTPUT,
    cube_mm: float = DEFAULT_CUBE_MM,
    negatives_per_volume: int = DEFAULT_NEGATIVES,
    augment_copies: int = 0,
    excluded: Sequence[Annotation] = (),
    seed: int = 0,
    on_volume: Callable[[str, int], Any] | None = None,
) -> CubesReport:
    """Write a cube set at ``out`` from every volume of ``store`` with a complete ``name``
    output: positives at each annotation, ``augment_copies`` augmented copies of each, and
    ``negatives_per_volume`` negatives per volume (see :mod:`.sampling` for the rules).
    Reads run on the current dask scheduler; ``on_volume(volume_id, n_cubes)`` is called
    after each volume."""
    report = CubesReport()
    ids = store.volume_ids(name=name)
    if not ids:
        raise CubesError(f"{store.path}: no volume has a complete {name!r} output; run 'voxelstream ct preprocess' first")
    rows, skipped = by_series(list(annotations)), by_series(list(excluded))
    volumes = {vid: store.open(vid, name) for vid in ids}
    series = {vid: _series_of(vid, v) for vid, v in volumes.items()}
    report.rows_unknown_series = sum(len(r) for uid, r in rows.items() if uid not in set(series.values()))
    first = volumes[ids[0]]
    edge = cube_edge(cube_mm, first.spacing)
    window = window_range(first)
    cubeset = CubeSet.create(out, edge, first.data.dtype, attrs={
        "cube_mm": cube_mm, "spacing": list(first.spacing), "pad_value": window[0],
        "window": list(window), "source": {"store": str(store.path), "name": name}, "seed": seed,
    })
    for vid in ids:
        volume, uid = volumes[vid], series[vid]
        if cube_edge(cube_mm, volume.spacing) != edge:
            raise CubesError(
                f"{store.path}: volume {vid!r} has spacing {volume.spacing}, unlike {ids[0]!r} "
                f"{first.spacing}; resample every volume to one spacing ('voxelstream ct preprocess')"
            )
        mine = rows.get(uid, [])
        idx = _centres(volume, mine)
        centre = np.rint(idx).astype(np.int64)
        inside = _inside(centre, volume.spatial_shape)
        for a in (a for a, ok in zip(mine, inside) if not ok):
            msg = f"{uid}: annotation at world {a.world_xyz} lies outside the volume; skipped"
            warnings.warn(msg, stacklevel=2)
            report.rows_outside.append(msg)
        pos_rows = [a for a, ok in zip(mine, inside) if ok]
        pos_centres = centre[inside]
        records: list[CubeRecord] = [CubeRecord(uid, 1, "positive", *a.world_xyz) for a in pos_rows]
        batches = [read_cubes(store, vid, name, pos_centres, edge, pad_value=window[0])]

        augs = draw_augmentations(volume_rng(seed, uid, "augment"), len(pos_rows) * augment_copies,
                                  volume.spacing, edge)
        if augs:
            shifted = np.repeat(pos_centres, augment_copies, axis=0) + np.array([a.shift for a in augs])
            raw = read_cubes(store, vid, name, shifted, edge, pad_value=window[0])
            batches.append(np.array([augment(c, a) for c, a in zip(raw, augs)]).reshape(-1, *edge))
            records += [CubeRecord(uid, 1, "augmented", *w) for w in volume.index_to_world(shifted).reshape(-1, 3)]

        # the overlap test uses every finding of the series, also those outside the volume
        all_findings = list(mine) + list(skipped.get(uid, []))
        findings = (_centres(volume, all_findings), np.array([a.clearance_diameter_mm for a in all_findings]))
        neg_centres, neg_cubes = _negatives(store, vid, name, volume, findings, negatives_per_volume,
                                            edge, cube_mm, window, seed, uid)
        if len(neg_centres) < negatives_per_volume:
            report.short_of_negatives.append(
                f"{uid}: found {len(neg_centres)} of {negatives_per_volume} negatives inside the body"
            )
        batches.append(neg_cubes)
        records += [CubeRecord(uid, 0, "negative", *w) for w in volume.index_to_world(neg_centres).reshape(-1, 3)]

        cubeset.append(np.concatenate(batches), records)
        report.volumes += 1
        report.positives += len(pos_rows)
        report.augmented += len(augs)
        report.negatives += len(neg_centres)
        if on_volume is not None:
            on_volume(vid, len(records))
    return report
