"""``voxelstream dr evaluate``'s work: predicted grades against reference grades."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from voxelstream.errors import VoxelstreamError

from .labels import match_ids, read_grades
from .metrics import grade_metrics

__all__ = ["evaluate", "plot_confusion"]


def plot_confusion(cm: np.ndarray, path: str | Path, title: str = "") -> None:
    """The confusion matrix as a heat map with counts (rows: true grade)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # colour by share of the true grade
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if rows[i, j] > 0.6 else "black")
    ax.set(xticks=range(cm.shape[1]), yticks=range(cm.shape[0]), xlabel="predicted grade", ylabel="true grade",
           title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(predictions: str | Path, labels: str | Path, out: str | Path) -> tuple[dict[str, Any], list[str]]:
    """Write ``out/metrics.json`` and ``out/confusion.png``; returns the metrics and notes
    about photographs found on one side only (they are left out)."""
    pred, true = read_grades(predictions), read_grades(labels)
    matched = match_ids(true, pred)
    if not matched.both:
        raise VoxelstreamError(f"{predictions}: no image is also in {labels}; are they of the same dataset?")
    t = [true[i] for i in matched.both]
    p = [pred[i] for i in matched.both]
    metrics = grade_metrics(t, p)
    metrics["unmatched"] = {"labels_without_prediction": len(matched.only_labels),
                            "predictions_without_label": len(matched.only_images)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    kappa = metrics["kappa"]
    plot_confusion(np.array(metrics["confusion"]), out / "confusion.png",
                   f"n = {metrics['n']}, kappa = {'n/a' if kappa is None else f'{kappa:.3f}'}")
    return metrics, matched.report("graded images", "predictions")
