"""Options of ``voxelstream nodules train``, importable without JAX (the CLI builds its parser from them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxelstream.errors import VoxelstreamError

__all__ = ["TrainOptions", "TrainError", "MODEL_NAME", "add_mask_option"]

MODEL_NAME = "nodule-vgg3d"  # the registered model (here so registration needs no JAX)


@dataclass(frozen=True)
class TrainOptions:
    """Options of :func:`train` (the CLI's defaults)."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    seed: int = 0
    patience: int = 5
    channels: tuple[int, ...] = (8, 16)
    init: str | None = None
    flips: bool = False
    cosine: bool = False
    label_smoothing: float = 0.0


def add_mask_option(p: Any, what: str, default: str) -> None:
    """``--mask NAME`` of cubes, mine and detect: ``what`` says what the mask restricts."""
    p.add_argument("--mask", metavar="NAME",
                   help=f"{what} only where this stored mask output is nonzero, e.g. 'lung' from 'voxelstream ct "
                        f"preprocess --lung-mask --lung-margin 10' (default: {default})")


class TrainError(VoxelstreamError):
    """A cube set that cannot be trained on as asked."""
