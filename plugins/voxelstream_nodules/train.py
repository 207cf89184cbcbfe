"""Training the nodule classifier on a cube set (the work of ``voxelstream nodules train``).

* split by series: every cube of a series (positive, augmented, negative, hard negative) is
  on one side; series with and without positives are split separately so both sides see
  both classes;
* class imbalance: the loss weights positives by ``n_negative / n_positive`` of the
  training side;
* batches are read from the Zarr cube set one at a time (a background thread reads the next
  while the current one trains), in an order drawn from ``numpy.random.Generator((seed,
  epoch))``; the weights and dropout come from ``nnx.Rngs(seed)``; so a run is
  bit-identical under the same seed on the CPU;
* AdamW; jit-compiled steps; early stopping on validation loss with ``patience`` epochs; the
  best epoch's model is what stays in ``MODEL_DIR``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from scipy.stats import rankdata

from voxelstream.models import load_model, read_model_json, save_model
from voxelstream.prefetch import prefetch
from voxelstream.training import plot_training_curves

from .cubeset import CubeRecord, CubeSet
from .sampling import centred_flip
from .options import TrainError, TrainOptions
from .model import MODEL_NAME, NetConfig, NoduleNet, build

__all__ = ["TrainOptions", "split_by_series", "roc_auc", "train", "weighted_bce", "random_orientations",
           "learning_rate"]


def split_by_series(records: Sequence[CubeRecord], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """``(train_series, val_series)``, sorted; each group (series with a positive cube,
    series without) contributes ``round(val_fraction * n)`` series to validation (at least
    one when the group has two or more and ``val_fraction > 0``)."""
    rng = np.random.default_rng([seed, 1])
    with_pos = sorted({r.series_uid for r in records if r.label == 1})
    without = sorted({r.series_uid for r in records} - set(with_pos))
    val: list[str] = []
    for group in (with_pos, without):
        n = int(round(val_fraction * len(group)))
        if val_fraction > 0 and len(group) >= 2:
            n = min(max(n, 1), len(group) - 1)
        val += [group[i] for i in rng.permutation(len(group))[:n]]
    train_side = sorted((set(with_pos) | set(without)) - set(val))
    return train_side, sorted(val)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged); NaN without both
    classes."""
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def learning_rate(opts: TrainOptions, steps_per_epoch: int) -> float | optax.Schedule:
    """``opts.lr``, or with ``opts.cosine`` its cosine decay to 0 over ``opts.epochs`` epochs."""
    if opts.cosine:
        return optax.cosine_decay_schedule(opts.lr, max(1, opts.epochs * steps_per_epoch))
    return opts.lr


def random_orientations(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each cube of ``x`` (B, D, H, W) flipped along a random subset of its axes and, at
    random, with its axial (H, W) plane transposed, both about the centre voxel
    (:func:`.sampling.centred_flip`): a nodule is a nodule in any of these 16 orientations,
    and the few positives of a cube set show up differently every epoch."""
    flips = rng.integers(0, 2, size=(len(x), 3)).astype(bool)
    turn = rng.integers(0, 2, size=len(x)).astype(bool) & (x.shape[2] == x.shape[3])
    out = np.empty_like(x)
    for i, cube in enumerate(x):
        axes = tuple(int(a) for a in np.flatnonzero(flips[i]))
        c = centred_flip(cube, axes)
        out[i] = c.transpose(0, 2, 1) if turn[i] else c
    return out


def weighted_bce(logits: jax.Array, labels: jax.Array, pos_weight: float | jax.Array,
                 smoothing: float | jax.Array = 0.0) -> jax.Array:
    """Mean binary cross-entropy with positives weighted by ``pos_weight``, against targets
    ``labels * (1 - smoothing) + smoothing / 2`` (label smoothing)."""
    w = jnp.where(labels > 0, pos_weight, 1.0)
    targets = labels * (1.0 - smoothing) + smoothing / 2
    return jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits, targets)) / jnp.sum(w)


@nnx.jit
def _train_step(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array, pos_weight: jax.Array,
                smoothing: jax.Array):
    def loss_fn(m):
        return weighted_bce(m(x).reshape(x.shape[0]), y, pos_weight, smoothing)

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def _logits(model: nnx.Module, x: jax.Array) -> jax.Array:
    return model(x).reshape(x.shape[0])


def _evaluate(model: NoduleNet, cubes: CubeSet, idx: np.ndarray, batch_size: int, pos_weight: float,
              smoothing: float = 0.0) -> tuple[float, float]:
    """``(loss, auc)`` over ``idx`` in eval mode; batches are padded to one shape."""
    model.eval()
    scores, labels = [], []
    for x, y in prefetch(cubes.batches(idx, batch_size)):
        n = len(x)
        if n < batch_size:  # pad so the jitted function sees a single shape
            x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
        scores.append(np.asarray(_logits(model, jnp.asarray(x, jnp.float32)))[:n])
        labels.append(y)
    s, y = np.concatenate(scores), np.concatenate(labels).astype(np.float32)
    loss = float(weighted_bce(jnp.asarray(s), jnp.asarray(y), pos_weight, smoothing))
    return loss, roc_auc(y, s)



def _plot_curves(metrics: list[dict[str, Any]], path: Path) -> None:
    best = min(metrics, key=lambda m: m["val_loss"])["epoch"]
    plot_training_curves(path, metrics, best, score_key="val_auc", score_label="AUC", score_title="validation AUC",
                         score_ylim=(0, 1.02), loss_label="weighted binary cross-entropy",
                         legend_title="dotted: kept epoch")


def _initial_model(opts: TrainOptions, cube: int) -> tuple[NoduleNet, NetConfig]:
    if opts.init:
        doc = read_model_json(opts.init)
        cfg = NetConfig.from_dict(doc.get("config", {}))
        if cfg.cube != cube:
            raise TrainError(f"--init {opts.init}: the model takes {cfg.cube}-voxel cubes, the cube set has {cube}")
        model = load_model(opts.init)
    else:
        cfg = NetConfig(cube=cube, channels=tuple(opts.channels))
        try:
            model = build(cfg, seed=opts.seed)
        except ValueError as exc:
            raise TrainError(f"cube edge {cube}: {exc}") from None
    model.train()
    return model, cfg


def train(cubes_path: str | Path, out: str | Path, opts: TrainOptions = TrainOptions(),
          log: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Train on the cube set at ``cubes_path``; write ``split.json``, ``metrics.json``,
    ``training_curve.png`` and the best model into ``out``; return the per-epoch metrics."""
    cubes = CubeSet.open(cubes_path)
    shape = cubes.cube_shape
    if len(set(shape)) != 1:
        raise TrainError(f"{cubes_path}: cubes of {shape} voxels are not cubic; cut them from isotropic volumes")
    records, labels = cubes.records(), cubes.labels()
    train_series, val_series = split_by_series(records, opts.val_fraction, opts.seed)
    side = np.array([r.series_uid in set(val_series) for r in records])
    tr_idx, va_idx = np.flatnonzero(~side), np.flatnonzero(side)
    n_pos, n_neg = int(labels[tr_idx].sum()), int(len(tr_idx) - labels[tr_idx].sum())
    if not n_pos or not n_neg or not len(va_idx):
        raise TrainError(f"{cubes_path}: need positives and negatives to train on and a validation side "
                         f"(train: {n_pos} positive, {n_neg} negative; validation: {len(va_idx)} cubes); add series")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "split.json").write_text(json.dumps({"train": train_series, "val": val_series}, indent=2))
    pos_weight = n_neg / n_pos
    model, cfg = _initial_model(opts, shape[0])
    batch = min(opts.batch_size, len(tr_idx))
    optimizer = nnx.Optimizer(model, optax.adamw(learning_rate(opts, len(tr_idx) // batch),
                                                 weight_decay=opts.weight_decay), wrt=nnx.Param)
    log(f"train: {len(train_series)} series, {len(tr_idx)} cubes ({n_pos} positive); "
        f"validation: {len(val_series)} series, {len(va_idx)} cubes; positive weight {pos_weight:.2f}")
    metrics: list[dict[str, Any]] = []
    best, waited = float("inf"), 0
    pw, ls = jnp.float32(pos_weight), jnp.float32(opts.label_smoothing)
    for epoch in range(1, opts.epochs + 1):
        t0 = time.perf_counter()
        order = np.random.default_rng([opts.seed, epoch]).permutation(tr_idx)
        order = order[: len(order) // batch * batch]  # one batch shape; the shuffle varies the rest
        model.train()
        flip_rng = np.random.default_rng([opts.seed, epoch, 2])
        losses = [float(_train_step(model, optimizer, jnp.asarray(random_orientations(x, flip_rng) if opts.flips else x,
                                                                  jnp.float32), jnp.asarray(y, jnp.float32), pw, ls))
                  for x, y in prefetch(cubes.batches(order, batch))]
        seconds = time.perf_counter() - t0
        val_loss, auc = _evaluate(model, cubes, va_idx, batch, pos_weight, opts.label_smoothing)
        val_auc = None if np.isnan(auc) else auc  # None: the validation side has one class only
        m = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss, "val_auc": val_auc,
             "seconds": round(seconds, 3), "train_cubes_per_s": round(len(order) / seconds, 2)}
        metrics.append(m)
        improved = val_loss < best
        if improved:
            best, waited = val_loss, 0
            save_model(out, MODEL_NAME, cfg.to_dict(), model, extra={
                "best_epoch": epoch, "val_loss": val_loss, "val_auc": val_auc,
                "cubes": {k: cubes.attrs.get(k) for k in ("cube_mm", "spacing", "window", "pad_value")}})
        else:
            waited += 1
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        log(f"epoch {epoch}: train loss {m['train_loss']:.4f}, val loss {val_loss:.4f}, val AUC {auc:.3f}, "
            f"{m['train_cubes_per_s']:.1f} cubes/s{' *' if improved else ''}")
        if waited >= opts.patience:
            log(f"stopping: no better validation loss for {opts.patience} epochs (best: epoch "
                f"{epoch - opts.patience})")
            break
    _plot_curves(metrics, out / "training_curve.png")
    return metrics
