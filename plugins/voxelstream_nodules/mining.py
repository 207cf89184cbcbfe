"""Hard-negative mining: the classifier's confident mistakes become training cubes.

For each training volume (``MODEL_DIR/split.json``'s ``train`` series; validation series
only when asked, and their cubes stay on the validation side) the probability map is searched for
local maxima (:func:`~.detection.detect_volume`); maxima farther than ``radius + margin``
from every annotated nodule (and excluded finding) are false positives. The ``per_volume``
most confident of them are cut exactly like every other cube (centre voxel
``rint(world_to_index(world))`` of the preprocessed volume) and appended to the cube set with
kind ``hard_negative``, label 0. A false positive closer than ``min_distance_mm`` to a hard
negative already in the set is skipped, so mining twice does not duplicate cubes.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from voxelstream.errors import VoxelstreamError
from voxelstream.store import Store

from .annotations import Annotation, by_series
from .cubes import window_range
from .cubeset import CubeRecord, CubeSet
from .detection import detect_volume
from .extract import read_cubes
from .masking import mask_at_world
from .outputs import ISO_OUTPUT, PROB_OUTPUT
from .scoring import series_volumes

__all__ = ["MiningReport", "false_positives", "mine_hard_negatives", "training_series",
           "DEFAULT_MARGIN_MM", "DEFAULT_PER_VOLUME", "DEFAULT_THRESHOLD"]

DEFAULT_PER_VOLUME = 10
DEFAULT_THRESHOLD = 0.5
DEFAULT_MARGIN_MM = 5.0
DEFAULT_MIN_DISTANCE_MM = 10.0


@dataclass
class MiningReport:
    """Per series: how many false positives were found and how many cubes were appended."""

    found: dict[str, int] = field(default_factory=dict)
    appended: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.appended.values())


def training_series(model_dir: str | Path, validation: bool = False) -> list[str]:
    """The ``train`` series of ``MODEL_DIR/split.json`` (what the model was trained on),
    followed by its ``val`` series with ``validation``."""
    path = Path(model_dir) / "split.json"
    try:
        split = json.loads(path.read_text())
        return list(split["train"]) + (list(split.get("val", [])) if validation else [])
    except FileNotFoundError:
        raise VoxelstreamError(f"{path}: missing; mine with a model directory written by 'voxelstream nodules train'") from None
    except (KeyError, json.JSONDecodeError):
        raise VoxelstreamError(f"{path}: no \"train\" list; re-train or restore the file") from None


def false_positives(
    detections: Sequence[tuple[float, float, float, float]],
    findings: Sequence[Annotation],
    margin_mm: float,
) -> list[tuple[float, float, float, float]]:
    """The detections farther than ``diameter / 2 + margin_mm`` from every finding, in the
    order given (most probable first when they come from :func:`detect_volume`)."""
    if not findings:
        return list(detections)
    centres = np.array([f.world_xyz for f in findings], dtype=float)
    reach = np.array([f.clearance_diameter_mm / 2 + margin_mm for f in findings])
    out = []
    for det in detections:
        d = np.linalg.norm(centres - np.asarray(det[:3]), axis=1)
        if np.all(d > reach):
            out.append(det)
    return out


def _already_mined(cubes: CubeSet) -> dict[str, np.ndarray]:
    seen: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for r in cubes.records():
        if r.kind == "hard_negative":
            seen[r.series_uid].append((r.world_x, r.world_y, r.world_z))
    return {k: np.array(v) for k, v in seen.items()}


def mine_hard_negatives(
    store: Store,
    model_dir: str | Path,
    annotations: Sequence[Annotation],
    cubes_path: str | Path,
    *,
    per_volume: int = DEFAULT_PER_VOLUME,
    threshold: float = DEFAULT_THRESHOLD,
    margin_mm: float = DEFAULT_MARGIN_MM,
    min_distance_mm: float = DEFAULT_MIN_DISTANCE_MM,
    excluded: Sequence[Annotation] = (),
    name: str = ISO_OUTPUT,
    prob_name: str = PROB_OUTPUT,
    mask: str | None = None,
    validation: bool = False,
    out: TextIO | None = None,
) -> MiningReport:
    """Append up to ``per_volume`` hard negatives per training volume to ``cubes_path``.

    The probability maps ``prob_name`` must exist (run inference first; the ``mine`` command
    does it where missing). With ``mask`` (a stored mask output, e.g. the lungs grown by a
    margin) false positives where it is 0 are not mined: no detection is reported there.
    With ``validation`` the validation series are mined too: the split is by series, so
    their hard negatives stay on the validation side, and the fine-tune's early stopping
    then watches the mistakes it is meant to fix (without them its validation set holds
    none, and it stops before it has learnt them).
    Returns what was found and appended per series.
    """
    out = out or sys.stdout
    cubes = CubeSet.open(cubes_path, mode="a")
    volumes = series_volumes(store, name)
    train = training_series(model_dir, validation)
    findings = by_series([*annotations, *excluded])
    seen = _already_mined(cubes)
    report = MiningReport()
    for uid in train:
        vid = volumes.get(uid)
        if vid is None:
            print(f"note: training series {uid} has no {name!r} output in {store.path}; not mined", file=out)
            continue
        if not store.is_complete(vid, prob_name):
            raise VoxelstreamError(f"{store.path}: volume {vid!r} has no complete {prob_name!r} map; run 'voxelstream nodules infer' first")
        dets = detect_volume(store.open(vid, prob_name), threshold, min_distance_mm)
        fps = false_positives(dets, findings.get(uid, []), margin_mm)
        if mask is not None and fps:
            fps = [f for f, ok in zip(fps, mask_at_world(store, vid, mask, [f[:3] for f in fps])) if ok]
        if uid in seen:
            fps = [f for f in fps if np.all(np.linalg.norm(seen[uid] - np.asarray(f[:3]), axis=1) >= min_distance_mm)]
        chosen = fps[:per_volume]
        report.found[uid] = len(fps)
        report.appended[uid] = len(chosen)
        if chosen:
            iso = store.open(vid, name)
            world = np.array([c[:3] for c in chosen])
            centres = np.rint(iso.world_to_index(world)).astype(np.int64)
            block = read_cubes(store, vid, name, centres, cubes.cube_shape, window_range(iso)[0])
            cubes.append(block, [CubeRecord(uid, 0, "hard_negative", *map(float, w)) for w in world])
        print(f"{vid}\t{len(fps)} false positives, {len(chosen)} hard negatives added", file=out, flush=True)
    return report
