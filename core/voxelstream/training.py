"""Small pieces every task's training shares: model configs to and from JSON, the training-curve
picture. Imports nothing heavy until used (matplotlib only when a curve is drawn)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["config_from_dict", "config_to_dict", "plot_training_curves"]

C = TypeVar("C")


def config_from_dict(cls: type[C], d: dict[str, Any]) -> C:
    """The frozen dataclass ``cls`` from a ``model.json`` ``config``: unknown keys (derived values
    a newer or older version wrote) are ignored, JSON lists become the tuples the fields hold
    (of ints where the field is declared ``tuple[int, ...]``)."""
    types = {f.name: str(f.type) for f in fields(cls)}  # type: ignore[arg-type]
    known: dict[str, Any] = {}
    for k, v in d.items():
        if k not in types:
            continue
        if isinstance(v, list):
            v = tuple(int(x) for x in v) if types[k].replace(" ", "") == "tuple[int,...]" else tuple(v)
        known[k] = v
    return cls(**known)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """``asdict`` with tuples as lists: what ``model.json`` holds and reads back equal."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def plot_training_curves(
    path: str | Path,
    metrics: Sequence[dict[str, Any]],
    best_epoch: int,
    *,
    score_key: str,
    score_label: str,
    score_title: str,
    score_ylim: tuple[float, float],
    loss_label: str = "loss",
    train_label: str = "train",
    legend_title: str | None = None,
) -> None:
    """Loss (train and validation) and the validation score per epoch, side by side, with the
    kept epoch dotted; written as a PNG to ``path``. ``metrics`` rows hold ``epoch``,
    ``train_loss``, ``val_loss`` and ``score_key`` (``None`` where it was not computed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    ep = [m["epoch"] for m in metrics]
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    loss_ax.plot(ep, [m["train_loss"] for m in metrics], marker=".", label=train_label)
    loss_ax.plot(ep, [m["val_loss"] for m in metrics], marker=".", label="validation")
    loss_ax.set(xlabel="epoch", ylabel=loss_label, title="loss")
    if legend_title is None:
        loss_ax.legend(fontsize="small")
    else:
        loss_ax.legend(title=legend_title, fontsize="small", title_fontsize="small")
    score = [float("nan") if m[score_key] is None else m[score_key] for m in metrics]
    score_ax.plot(ep, score, marker=".", color="tab:green")
    score_ax.set(xlabel="epoch", ylabel=score_label, title=score_title, ylim=score_ylim)
    for ax in (loss_ax, score_ax):
        ax.axvline(best_epoch, color="grey", linestyle=":")  # the epoch whose model is kept
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
