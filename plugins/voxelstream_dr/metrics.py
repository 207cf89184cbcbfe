"""Grading metrics: confusion matrix, quadratic weighted kappa (the Kaggle DR metric),
per-grade recall, and the thresholds that turn a regressed grade into a class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["confusion", "quadratic_kappa", "grade_metrics", "apply_thresholds", "fit_thresholds",
           "DEFAULT_THRESHOLDS"]

DEFAULT_THRESHOLDS = (0.5, 1.5, 2.5, 3.5)


def confusion(true: Sequence[int], pred: Sequence[int], n: int = 5) -> np.ndarray:
    """``n x n`` counts: rows the true grade, columns the predicted one."""
    t, p = np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true grades but {p.size} predicted ones")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n):
        raise ValueError(f"grades must be in 0..{n - 1}")
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def quadratic_kappa(true: Sequence[int], pred: Sequence[int], n: int = 5) -> float:
    """Cohen's kappa with quadratic weights ``(i - j)^2 / (n - 1)^2``: 1 for perfect
    agreement, 0 for chance. NaN when it is undefined (both raters constant and equal)."""
    obs = confusion(true, pred, n).astype(np.float64)
    total = obs.sum()
    if not total:
        return float("nan")
    i, j = np.indices((n, n))
    weights = (i - j) ** 2 / (n - 1) ** 2
    expected = np.outer(obs.sum(1), obs.sum(0)) / total
    denom = float((weights * expected).sum())
    return float("nan") if denom == 0 else 1.0 - float((weights * obs).sum()) / denom


def grade_metrics(true: Sequence[int], pred: Sequence[int], n: int = 5) -> dict[str, Any]:
    """What ``evaluate`` writes: kappa, accuracy, the confusion matrix (rows true), recall per
    grade (``None`` for a grade absent from ``true``) and ``n``."""
    cm = confusion(true, pred, n)
    support = cm.sum(1)
    kappa = quadratic_kappa(true, pred, n)
    return {
        "kappa": None if np.isnan(kappa) else kappa,
        "accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else None,
        "confusion": cm.tolist(),
        "recall": {str(g): (float(cm[g, g] / support[g]) if support[g] else None) for g in range(n)},
        "n": int(cm.sum()),
    }


def apply_thresholds(values: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Grade = number of thresholds below the value (thresholds ascending)."""
    return np.searchsorted(np.asarray(thresholds, dtype=np.float64), np.asarray(values, dtype=np.float64),
                           side="left").astype(np.int64)


def fit_thresholds(values: np.ndarray, true: Sequence[int], start: Sequence[float] = DEFAULT_THRESHOLDS,
                   rounds: int = 3, max_candidates: int = 256) -> tuple[float, ...]:
    """Thresholds maximising quadratic kappa of ``apply_thresholds(values)`` against ``true``.

    Coordinate search: each threshold in turn is tried at every midpoint between sorted
    values between its neighbours (at most ``max_candidates`` of them), keeping the best (ties keep the current one, so the
    result does not jump on plateaus); repeated ``rounds`` times. Deterministic."""
    v = np.asarray(values, dtype=np.float64)
    th = list(map(float, start))
    best = quadratic_kappa(true, apply_thresholds(v, th))
    best = -np.inf if np.isnan(best) else best
    uniq = np.unique(v)
    cands = (uniq[:-1] + uniq[1:]) / 2 if uniq.size > 1 else uniq
    if cands.size > max_candidates:  # large validation sets: quantiles keep it O(n) per try
        cands = np.unique(np.quantile(cands, np.linspace(0, 1, max_candidates)))
    for _ in range(rounds):
        changed = False
        for k in range(len(th)):
            lo = th[k - 1] if k else -np.inf
            hi = th[k + 1] if k + 1 < len(th) else np.inf
            for c in cands[(cands > lo) & (cands < hi)]:
                trial = th[:k] + [float(c)] + th[k + 1:]
                score = quadratic_kappa(true, apply_thresholds(v, trial))
                if not np.isnan(score) and score > best + 1e-12:
                    best, th, changed = score, trial, True
        if not changed:
            break
    return tuple(th)
