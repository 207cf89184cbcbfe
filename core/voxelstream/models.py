"""Saving and loading models by name: ``MODEL_DIR/model.json`` + ``MODEL_DIR/weights.npz``.

``model.json`` is ``{"model": <registered model name>, "config": {...}}``; the architecture is
rebuilt by the :class:`~voxelstream.specs.ModelSpec` of that name (from whichever plugin
registers it) and the weights, a flat ``.npz`` of the model's Flax NNX state (parameters and
statistics, no RNG state), are put back into it. Flax is imported only when a model is
saved or loaded, so the rest of the engine does not need it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VoxelstreamError
from .plugins import get_model_spec

__all__ = ["save_model", "load_model", "read_model_json", "MODEL_JSON", "WEIGHTS"]

MODEL_JSON = "model.json"
WEIGHTS = "weights.npz"


def _weights(model: Any) -> dict[str, Any]:
    from flax import nnx

    state = nnx.state(model, nnx.Not(nnx.RngState))
    return {"/".join(str(p) for p in path): var for path, var in nnx.to_flat_state(state)}


def save_model(model_dir: str | os.PathLike[str], name: str, config: Mapping[str, Any], model: Any,
               extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.json`` (``name``, ``config`` and any ``extra`` keys) and ``weights.npz``
    for the NNX ``model`` into ``model_dir`` (created if missing); returns the directory."""
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {key: np.asarray(var.get_value()) for key, var in _weights(model).items()}
    tmp = out / f".{WEIGHTS}.tmp.npz"
    np.savez(tmp, **arrays)
    tmp.replace(out / WEIGHTS)  # a reader never sees half a file
    doc = {"model": name, "config": dict(config), **dict(extra or {})}
    (out / MODEL_JSON).write_text(json.dumps(doc, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return out


def read_model_json(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``model.json`` of ``model_dir``."""
    path = Path(model_dir) / MODEL_JSON
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise VoxelstreamError(f"{path}: missing; give the directory a 'train' command wrote") from None
    except json.JSONDecodeError as exc:
        raise VoxelstreamError(f"{path}: not valid JSON ({exc.msg}); re-train or restore the file") from None
    if not isinstance(doc, dict) or "model" not in doc:
        raise VoxelstreamError(f"{path}: no \"model\" name; re-train or restore the file")
    return doc


def load_model(model_dir: str | os.PathLike[str]) -> Any:
    """Rebuild the model saved in ``model_dir`` by its registered name and restore its
    weights; returned in eval mode (running statistics, no dropout)."""
    doc = read_model_json(model_dir)
    spec = get_model_spec(doc["model"])
    model = spec.build(doc.get("config", {}), seed=0)
    path = Path(model_dir) / WEIGHTS
    try:
        saved = np.load(path)
    except FileNotFoundError:
        raise VoxelstreamError(f"{path}: missing; the model directory is incomplete, re-train") from None
    weights = _weights(model)
    if set(saved.files) != set(weights):
        raise VoxelstreamError(
            f"{path}: weights do not fit model {doc['model']!r} with this config "
            f"(missing {sorted(set(weights) - set(saved.files))[:3]}, extra {sorted(set(saved.files) - set(weights))[:3]})"
        )
    for key, var in weights.items():
        if saved[key].shape != var.get_value().shape:
            raise VoxelstreamError(f"{path}: {key} has shape {saved[key].shape}, the model expects {var.get_value().shape}")
        var.set_value(saved[key])
    if hasattr(model, "eval"):
        model.eval()
    return model
