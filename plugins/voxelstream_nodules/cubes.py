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
from .masking import mask_at_index, require_mask, values_at_index
from .outputs import ISO_OUTPUT
from .sampling import augment, clear_of_findings, draw_augmentations, inside_body, near_misses, volume_rng

__all__ = ["CubesReport", "build_cubes", "window_range", "DEFAULT_CUBE_MM", "DEFAULT_NEGATIVES"]

DEFAULT_CUBE_MM = 48.0
DEFAULT_NEGATIVES = 10
MAX_NEGATIVE_ROUNDS = 12
STRUCTURE_HU = -500.0  # structure negatives: the centre voxel is denser than this (vessels, walls)
MAX_SHIFT_MM = 3.0  # augmented positives: shift per axis, at most a quarter of the diameter
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
    near_misses: int = 0
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
    mask: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` negative centres and their cubes, drawn in rounds of candidates (deterministic);
    with ``mask`` only centres where that stored output is nonzero (see :mod:`.masking`)."""
    rng = volume_rng(seed, series, "negatives")
    shape = np.asarray(volume.spatial_shape)
    centres, cubes = [], []
    # about half of a chest scan is body, a third of it lung: draw that many times what is
    # missing, and read cubes only for the candidates that pass
    per_missing = 2 if mask is None else 4
    for _ in range(MAX_NEGATIVE_ROUNDS):
        if len(centres) >= n:
            break
        cand = rng.integers(0, shape, size=(max(per_missing * (n - len(centres)), 8), 3))
        cand = cand[clear_of_findings(cand, findings[0], findings[1], volume.spacing, cube_mm)]
        if mask is not None and len(cand):
            cand = cand[mask_at_index(store, vid, mask, cand)]
        got = read_cubes(store, vid, name, cand, edge, pad_value=window[0])
        for c, cube in zip(cand, got):
            if len(centres) < n and inside_body(cube, *window):
                centres.append(c)
                cubes.append(cube)
    return np.array(centres, dtype=np.int64).reshape(-1, 3), np.array(cubes).reshape(-1, *edge)


def dense_level(volume: Volume, hu: float = STRUCTURE_HU) -> float:
    """``hu`` in the units of a windowed volume (``meta["window"]``), or as is for HU."""
    win = volume.meta.get("window") or {}
    if not isinstance(win, dict) or "lo" not in win or "hi" not in win:
        return float(hu)
    lo, hi = float(win["lo"]), float(win["hi"])
    t = min(max((float(hu) - lo) / (hi - lo), 0.0), 1.0)
    return t * 255.0 if win.get("dtype") == "uint8" else t


def _structure_centres(
    store: Store, vid: str, name: str, volume: Volume, findings: tuple[np.ndarray, np.ndarray],
    n: int, cube_mm: float, seed: int, series: str, mask: str,
) -> np.ndarray:
    """Up to ``n`` centres inside ``mask`` whose voxel is denser than :data:`STRUCTURE_HU`
    (vessels, airway walls, pleura: where a lung-nodule detector's false positives are),
    clear of every finding. Candidates are drawn uniformly in rounds and only their voxel
    values are read; these structures fill a few per cent of the lungs."""
    rng = volume_rng(seed, series, "structures")
    shape = np.asarray(volume.spatial_shape)
    level = dense_level(volume)
    found: list[np.ndarray] = []
    for _ in range(MAX_NEGATIVE_ROUNDS):
        missing = n - sum(len(f) for f in found)
        if missing <= 0:
            break
        cand = rng.integers(0, shape, size=(max(64 * missing, 256), 3))
        cand = cand[clear_of_findings(cand, findings[0], findings[1], volume.spacing, cube_mm)]
        cand = cand[values_at_index(store, vid, name, cand) > level]
        cand = cand[mask_at_index(store, vid, mask, cand)]
        found.append(cand[:missing])
    return np.concatenate(found or [np.zeros((0, 3), np.int64)]).astype(np.int64).reshape(-1, 3)


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
    mask: str | None = None,
    near_misses_per_nodule: int = 0,
    structure_negatives: int = 0,
    on_volume: Callable[[str, int], Any] | None = None,
) -> CubesReport:
    """Write a cube set at ``out`` from every volume of ``store`` with a complete ``name``
    output: positives at each annotation, ``augment_copies`` augmented copies of each, and
    ``negatives_per_volume`` negatives per volume (see :mod:`.sampling` for the rules; with
    ``mask``, the name of a stored mask output such as the lungs, negative centres lie where
    it is nonzero, :mod:`.masking`), and ``near_misses_per_nodule`` negatives next to each
    nodule (:func:`.sampling.near_misses`, kind ``near_miss``). With a mask,
    ``structure_negatives`` more negatives per volume are centred on dense voxels (vessels,
    walls) inside it (:func:`_structure_centres`).
    Reads run on the current dask scheduler; ``on_volume(volume_id, n_cubes)`` is called
    after each volume."""
    report = CubesReport()
    ids = store.volume_ids(name=name)
    if not ids:
        raise CubesError(f"{store.path}: no volume has a complete {name!r} output; run 'voxelstream ct preprocess' first")
    for vid in ids if mask is not None else ():
        require_mask(store, vid, mask)  # before any cube is written
    rows, skipped = by_series(list(annotations)), by_series(list(excluded))
    volumes = {vid: store.open(vid, name) for vid in ids}
    series = {vid: _series_of(vid, v) for vid, v in volumes.items()}
    report.rows_unknown_series = sum(len(r) for uid, r in rows.items() if uid not in set(series.values()))
    first = volumes[ids[0]]
    edge = cube_edge(cube_mm, first.spacing)
    window = window_range(first)
    cubeset = CubeSet.create(out, edge, first.data.dtype, attrs={
        "cube_mm": cube_mm, "spacing": list(first.spacing), "pad_value": window[0],
        "window": list(window), "source": {"store": str(store.path), "name": name}, "seed": seed, "mask": mask,
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
                                  volume.spacing, edge, max_shift_mm=MAX_SHIFT_MM)
        if augs:
            # a shifted copy still shows the nodule at its centre: at most half its radius off
            limit = np.array([[np.floor(min(MAX_SHIFT_MM, a.diameter_mm / 4) / s) for s in volume.spacing]
                              for a in pos_rows]).astype(np.int64)
            shift = np.clip(np.array([a.shift for a in augs]), -np.repeat(limit, augment_copies, axis=0),
                            np.repeat(limit, augment_copies, axis=0))
            shifted = np.repeat(pos_centres, augment_copies, axis=0) + shift
            raw = read_cubes(store, vid, name, shifted, edge, pad_value=window[0])
            batches.append(np.array([augment(c, a) for c, a in zip(raw, augs)]).reshape(-1, *edge))
            records += [CubeRecord(uid, 1, "augmented", *w) for w in volume.index_to_world(shifted).reshape(-1, 3)]

        # the overlap test uses every finding of the series, also those outside the volume
        all_findings = list(mine) + list(skipped.get(uid, []))
        findings = (_centres(volume, all_findings), np.array([a.clearance_diameter_mm for a in all_findings]))
        neg_centres, neg_cubes = _negatives(store, vid, name, volume, findings, negatives_per_volume,
                                            edge, cube_mm, window, seed, uid, mask)
        if len(neg_centres) < negatives_per_volume:
            report.short_of_negatives.append(
                f"{uid}: found {len(neg_centres)} of {negatives_per_volume} negatives inside the body"
            )
        batches.append(neg_cubes)
        records += [CubeRecord(uid, 0, "negative", *w) for w in volume.index_to_world(neg_centres).reshape(-1, 3)]
        if structure_negatives and mask is not None:
            dense = _structure_centres(store, vid, name, volume, findings, structure_negatives, cube_mm, seed, uid,
                                       mask)
            if len(dense):
                batches.append(read_cubes(store, vid, name, dense, edge, pad_value=window[0]))
                records += [CubeRecord(uid, 0, "negative", *w) for w in volume.index_to_world(dense).reshape(-1, 3)]
            report.negatives += len(dense)
        near = near_misses(volume_rng(seed, uid, "near_misses"), pos_centres,
                           np.array([a.diameter_mm for a in pos_rows]), near_misses_per_nodule, volume.spacing,
                           findings[0], findings[1])
        near = near[_inside(near, volume.spatial_shape)]
        if len(near):
            batches.append(read_cubes(store, vid, name, near, edge, pad_value=window[0]))
            records += [CubeRecord(uid, 0, "near_miss", *w) for w in volume.index_to_world(near).reshape(-1, 3)]
        report.near_misses += len(near)

        cubeset.append(np.concatenate(batches), records)
        report.volumes += 1
        report.positives += len(pos_rows)
        report.augmented += len(augs)
        report.negatives += len(neg_centres)
        if on_volume is not None:
            on_volume(vid, len(records))
    return report
