"""Options of ``voxelstream dr train`` / ``predict``, importable without JAX (the CLI builds
its parser from them)."""

from __future__ import annotations

from dataclasses import dataclass

from voxelstream.errors import VoxelstreamError

__all__ = ["MODEL_NAME", "TARGETS", "BALANCES", "DEFAULT_RADIUS", "DEFAULT_NAME", "TrainOptions", "TrainError",
           "MODALITY"]

MODEL_NAME = "dr-vgg2d"  # the registered model (here so registration needs no JAX)
MODALITY = "OP"  # DICOM's code for ophthalmic photography
TARGETS = ("regression", "softmax")
BALANCES = ("oversample", "weighted", "none")
DEFAULT_RADIUS = 256  # 512 x 512 inputs, as most Kaggle DR solutions used
DEFAULT_NAME = "fundus"


@dataclass(frozen=True)
class TrainOptions:
    """Options of :func:`voxelstream_dr.train.train` (the CLI's defaults)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    seed: int = 0
    patience: int = 6
    target: str = "regression"
    balance: str = "oversample"
    channels: tuple[int, ...] = (12, 24, 32, 48, 64)
    augment: bool = True
    cache_bytes: int = 2 * 2**30  # photos held in memory when they fit, else read per batch


class TrainError(VoxelstreamError):
    """A dataset that cannot be trained on as asked."""
