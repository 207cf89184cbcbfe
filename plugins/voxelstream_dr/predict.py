"""Grading photographs with one or more trained models and test-time augmentation.

Every photograph is seen through ``tta`` fixed views (:func:`voxelstream_dr.augment.tta_views`)
by every model. Regression models: the grade value is the mean over views and models, cut at
the models' mean thresholds; the per-grade scores are the share of (view, model) pairs whose
own value falls in each grade. Softmax models: the per-grade scores are the mean
probabilities, the grade the most probable one, the value the expected grade.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxelstream.errors import VoxelstreamError
from voxelstream.models import read_model_json

from .labels import GRADES
from .metrics import DEFAULT_THRESHOLDS, apply_thresholds

__all__ = ["ModelInfo", "model_info", "check_compatible", "Predictions", "predict", "write_predictions",
           "COLUMNS"]

COLUMNS = ["image", "level", "value"] + [f"score_{g}" for g in range(GRADES)]


@dataclass(frozen=True)
class ModelInfo:
    """What predict needs from a model's ``model.json``."""

    path: str
    target: str
    size: int
    thresholds: tuple[float, ...]
    preprocess: dict[str, Any]


def model_info(model_dir: str | Path) -> ModelInfo:
    """Read ``model.json`` of a ``dr train`` model directory."""
    from .options import MODEL_NAME

    doc = read_model_json(model_dir)
    if doc["model"] != MODEL_NAME:
        raise VoxelstreamError(f"{model_dir}: a {doc['model']!r} model, not a DR grader ({MODEL_NAME}); "
                               "give a directory 'voxelstream dr train' wrote")
    cfg = doc.get("config", {})
    return ModelInfo(str(model_dir), cfg.get("target", "regression"), int(cfg.get("size", 0)),
                     tuple(doc.get("thresholds", DEFAULT_THRESHOLDS)), dict(doc.get("preprocess", {})))


def check_compatible(infos: Sequence[ModelInfo]) -> None:
    """Averaged models must share their target and input preprocessing."""
    first = infos[0]
    for other in infos[1:]:
        for what, a, b in (("target", first.target, other.target), ("preprocessing", first.preprocess, other.preprocess),
                           ("input size", first.size, other.size)):
            if a != b:
                raise VoxelstreamError(f"{other.path}: its {what} ({b}) differs from {first.path}'s ({a}); "
                                       "models averaged together must share it")


@dataclass(frozen=True)
class Predictions:
    """Per photograph: ``ids``, grade ``levels``, ``values`` and ``(N, 5)`` ``scores``."""

    ids: list[str]
    levels: np.ndarray
    values: np.ndarray
    scores: np.ndarray


def combine(outputs: Sequence[np.ndarray], infos: Sequence[ModelInfo]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(levels, values, scores)`` from each model's ``view_outputs``."""
    if infos[0].target == "regression":
        values = np.concatenate(outputs, axis=1).mean(axis=1)
        thresholds = np.mean([i.thresholds for i in infos], axis=0)
        votes = np.concatenate([apply_thresholds(o, i.thresholds) for o, i in zip(outputs, infos)], axis=1)
        scores = np.stack([(votes == g).mean(axis=1) for g in range(GRADES)], axis=1)
        return apply_thresholds(values, thresholds), values, scores
    scores = np.concatenate(outputs, axis=1).mean(axis=1)
    return scores.argmax(axis=1), scores @ np.arange(GRADES, dtype=np.float64), scores


def predict(photos: Any, model_dirs: Sequence[str | Path], tta: int = 1, batch_size: int = 32) -> Predictions:
    """Grade every photograph of ``photos`` (a :class:`~voxelstream_dr.photos.Photos`)."""
    from voxelstream.models import load_model

    from .augment import tta_views
    from .train import view_outputs

    infos = [model_info(m) for m in model_dirs]
    check_compatible(infos)
    if infos[0].size and photos.size != infos[0].size:
        raise VoxelstreamError(f"the photographs are {photos.size} px, the model takes {infos[0].size} px; "
                               "preprocess with the model's radius")
    views = tta_views(tta)
    idx = list(range(len(photos)))
    outputs = [view_outputs(load_model(m), photos, idx, views, batch_size) for m in model_dirs]
    levels, values, scores = combine(outputs, infos)
    return Predictions(list(photos.ids), levels, values, scores)


def write_predictions(path: str | Path, pred: Predictions) -> None:
    """``image,level,value,score_0..score_4`` (``level`` as in Kaggle's submissions)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for i, image in enumerate(pred.ids):
            w.writerow([image, int(pred.levels[i]), f"{pred.values[i]:.4f}", *(f"{s:.4f}" for s in pred.scores[i])])
