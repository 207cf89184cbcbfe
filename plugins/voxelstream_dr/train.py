"""Training the grader (the work of ``voxelstream dr train``).

* split by patient (both eyes on one side), stratified by grade: ``split.json``;
* rebalancing, selectable: ``oversample`` draws each epoch's photographs with probability
  inversely proportional to their grade's frequency (as many draws as photographs);
  ``weighted`` keeps each photograph once and weights the loss by ``n / (5 * n_grade)``;
  ``none``;
* target: ``regression`` (the grade as a number, squared error; thresholds fitted on the
  validation side afterwards turn values into grades) or ``softmax`` (5 classes,
  cross-entropy);
* augmentation (:mod:`voxelstream_dr.augment`) drawn from ``numpy.random.Generator((seed,
  epoch))``, weights and dropout from the seed: same seed, same numbers on the CPU;
* AdamW with cosine decay; early stopping on validation kappa (regression: at the default
  thresholds 0.5, 1.5, 2.5, 3.5); the best epoch's model is what stays in ``MODEL_DIR``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from voxelstream.models import load_model, save_model
from voxelstream.prefetch import prefetch
from voxelstream.training import plot_training_curves

from .augment import View, apply_view, augment_batch
from .labels import GRADES, split_by_patient, write_split
from .metrics import DEFAULT_THRESHOLDS, apply_thresholds, fit_thresholds, grade_metrics
from .model import MODEL_NAME, GradeNet, NetConfig, build
from .options import TrainError, TrainOptions
from .photos import Photos

__all__ = ["train", "view_outputs", "grades_from_outputs", "epoch_indices", "sample_weights"]


def sample_weights(grades: np.ndarray) -> np.ndarray:
    """``n / (5 * n_grade)`` per photograph (grades absent from the set get no weight)."""
    counts = np.bincount(grades, minlength=GRADES).astype(np.float64)
    return (len(grades) / (GRADES * counts[grades])).astype(np.float32)


def epoch_indices(grades: np.ndarray, balance: str, rng: np.random.Generator) -> np.ndarray:
    """The order of one epoch over positions ``0..n-1``: a permutation, or with
    ``oversample`` ``n`` draws (with replacement) weighted inversely to grade frequency."""
    n = len(grades)
    if balance == "oversample":
        p = sample_weights(grades).astype(np.float64)
        return rng.choice(n, size=n, replace=True, p=p / p.sum())
    return rng.permutation(n)


def _loss(out: jax.Array, y: jax.Array, w: jax.Array, target: str) -> jax.Array:
    if target == "regression":
        per = (out - y) ** 2
    else:
        per = optax.softmax_cross_entropy_with_integer_labels(out, y.astype(jnp.int32))
    return jnp.sum(w * per) / jnp.sum(w)


def _val_loss(outputs: np.ndarray, y: np.ndarray, target: str) -> float:
    """The unweighted training loss of eval-mode outputs (values, or probabilities)."""
    if target == "regression":
        return float(np.mean((outputs - y) ** 2))
    return float(-np.mean(np.log(outputs[np.arange(len(y)), y] + 1e-7)))


@nnx.jit
def _train_step(model: GradeNet, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
    def loss_fn(m: GradeNet) -> jax.Array:
        return _loss(m(x), y, w, m.config.target)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def _forward(model: GradeNet, x: jax.Array) -> jax.Array:
    out = model(x)
    return out if model.config.target == "regression" else jax.nn.softmax(out, axis=-1)


def view_outputs(model: GradeNet, photos: Photos, indices: Sequence[int], views: Sequence[View],
                 batch_size: int = 32) -> np.ndarray:
    """Eval-mode outputs for every photograph and view: ``(N, V)`` values (regression) or
    ``(N, V, 5)`` probabilities (softmax). Batches are padded to one shape (one compile)."""
    model.eval()
    indices = list(indices)

    def batches() -> Iterator[np.ndarray]:
        for start in range(0, len(indices), batch_size):
            imgs = photos.batch(indices[start:start + batch_size])
            yield np.stack([np.stack([apply_view(im, v) for im in imgs]) for v in views])

    outs = []
    for stack in prefetch(batches()):
        n = stack.shape[1]
        per_view = []
        for x in stack:
            if n < batch_size:
                x = np.concatenate([x, np.full((batch_size - n, *x.shape[1:]), 128, x.dtype)])
            per_view.append(np.asarray(_forward(model, jnp.asarray(x)))[:n])
        outs.append(np.stack(per_view, axis=1))
    return np.concatenate(outs) if outs else np.zeros((0, len(views)))


def grades_from_outputs(outputs: np.ndarray, target: str, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> tuple[np.ndarray, np.ndarray]:
    """``(values, grades)`` from :func:`view_outputs` (averaged over views): regression values
    cut at ``thresholds``; softmax: the expected grade and the most probable one."""
    if target == "regression":
        values = outputs.mean(axis=1)
        return values, apply_thresholds(values, thresholds)
    probs = outputs.mean(axis=1)
    return probs @ np.arange(GRADES, dtype=np.float64), probs.argmax(axis=1)


def _plot_curves(metrics: list[dict[str, Any]], best: int, path: Path) -> None:
    plot_training_curves(path, metrics, best, score_key="val_kappa", score_label="quadratic weighted kappa",
                         score_title="validation kappa", score_ylim=(-0.05, 1.02), train_label="train (augmented)")


def _batches(photos: Photos, pos: np.ndarray, order: np.ndarray, y: np.ndarray, w: np.ndarray,
             batch: int, augment: bool, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    for start in range(0, len(order) - batch + 1, batch):
        sel = order[start:start + batch]
        x = photos.batch(pos[sel])
        yield (augment_batch(x, rng) if augment else x), y[sel], w[sel]


def train(photos: Photos, grades: Mapping[str, int], out: str | Path, opts: TrainOptions = TrainOptions(),
          extra: Mapping[str, Any] | None = None, log: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Train on the photographs of ``photos`` that have a grade; write ``split.json``,
    ``metrics.json``, ``training_curve.png`` and the best model (``model.json`` with the
    fitted thresholds and ``extra``, ``weights.npz``) into ``out``; return the per-epoch metrics."""
    if opts.target not in ("regression", "softmax"):
        raise TrainError(f"unknown target {opts.target!r}")
    labelled = {i: g for i, g in grades.items() if i in set(photos.ids)}
    train_ids, val_ids = split_by_patient(labelled, opts.val_fraction, opts.seed)
    if len(train_ids) < 2 or not val_ids:
        raise TrainError(f"{len(train_ids)} photographs to train on and {len(val_ids)} to validate on: "
                         "too few; add graded photographs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_split(out / "split.json", train_ids, val_ids)
    where = {i: k for k, i in enumerate(photos.ids)}
    tr_pos, va_pos = (np.array([where[i] for i in ids]) for ids in (train_ids, val_ids))
    y_tr = np.array([labelled[i] for i in train_ids])
    y_va = np.array([labelled[i] for i in val_ids])
    w_tr = sample_weights(y_tr) if opts.balance == "weighted" else np.ones(len(y_tr), np.float32)
    cfg = NetConfig(channels=tuple(opts.channels), target=opts.target, size=photos.size)
    model = build(cfg, seed=opts.seed)
    batch = min(opts.batch_size, len(train_ids))
    steps = max(1, len(train_ids) // batch) * opts.epochs
    schedule = optax.cosine_decay_schedule(opts.lr, steps, alpha=0.05)
    optimizer = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=opts.weight_decay), wrt=nnx.Param)
    log(f"train: {len(train_ids)} photographs (grades {np.bincount(y_tr, minlength=5).tolist()}); validation: "
        f"{len(val_ids)} (grades {np.bincount(y_va, minlength=5).tolist()}); {opts.target}, balance {opts.balance}, "
        f"{photos.size} px")
    metrics: list[dict[str, Any]] = []
    best, best_epoch, waited = -np.inf, 0, 0
    for epoch in range(1, opts.epochs + 1):
        rng = np.random.default_rng([opts.seed, epoch])
        order = epoch_indices(y_tr, opts.balance, rng)
        t0 = time.perf_counter()
        model.train()
        losses = [float(_train_step(model, optimizer, jnp.asarray(x), jnp.asarray(y, jnp.float32), jnp.asarray(w)))
                  for x, y, w in prefetch(_batches(photos, tr_pos, order, y_tr.astype(np.float32), w_tr, batch,
                                                   opts.augment, rng))]
        seconds = time.perf_counter() - t0
        outputs = view_outputs(model, photos, va_pos, [View()], batch)
        _, pred = grades_from_outputs(outputs, opts.target)
        val_loss = _val_loss(outputs[:, 0], y_va, opts.target)
        g = grade_metrics(y_va, pred)
        m = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss, "val_kappa": g["kappa"],
             "val_accuracy": g["accuracy"], "seconds": round(seconds, 3),
             "train_images_per_s": round(len(losses) * batch / seconds, 2)}
        metrics.append(m)
        kappa = -1.0 if g["kappa"] is None else g["kappa"]
        improved = kappa > best
        if improved:
            best, best_epoch, waited = kappa, epoch, 0
            save_model(out, MODEL_NAME, cfg.to_dict(), model, extra={"best_epoch": epoch, **dict(extra or {})})
        else:
            waited += 1
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        log(f"epoch {epoch}: train loss {m['train_loss']:.4f}, val loss {val_loss:.4f}, val kappa {kappa:.3f}, "
            f"{m['train_images_per_s']:.1f} images/s{' *' if improved else ''}")
        if waited >= opts.patience:
            log(f"stopping: no better validation kappa for {opts.patience} epochs (best: epoch {best_epoch})")
            break
    _finish(out, photos, va_pos, y_va, cfg, batch, best_epoch, extra, log)
    _plot_curves(metrics, best_epoch, out / "training_curve.png")
    return metrics


def _finish(out: Path, photos: Photos, va_pos: np.ndarray, y_va: np.ndarray, cfg: NetConfig, batch: int,
            best_epoch: int, extra: Mapping[str, Any] | None, log: Callable[[str], Any]) -> None:
    """Fit the thresholds on validation with the kept model and record them in model.json."""
    model = load_model(out)
    outputs = view_outputs(model, photos, va_pos, [View()], batch)
    values, pred = grades_from_outputs(outputs, cfg.target)
    thresholds = fit_thresholds(values, y_va) if cfg.target == "regression" else DEFAULT_THRESHOLDS
    _, fitted = grades_from_outputs(outputs, cfg.target, thresholds)
    k0, k1 = grade_metrics(y_va, pred)["kappa"], grade_metrics(y_va, fitted)["kappa"]
    save_model(out, MODEL_NAME, cfg.to_dict(), model, extra={
        "best_epoch": best_epoch, "thresholds": list(thresholds), "val_kappa": k0, "val_kappa_fitted": k1,
        **dict(extra or {})})
    log(f"kept epoch {best_epoch}: validation kappa {k0 if k0 is None else round(k0, 3)}"
        + (f", {k1 if k1 is None else round(k1, 3)} with thresholds {', '.join(f'{t:.2f}' for t in thresholds)} "
           "fitted on validation" if cfg.target == "regression" else ""))
