"""NaN and infinite voxels: one policy for the whole engine.

* **Kept.** A float image keeps its NaN and +/-inf voxels as they are: readers do not
  replace them (a NaN can mean "no data" in a dose grid or a parametric map), and the store
  writes them unchanged.
* **Counted and reported at ingest.** While an image is written, its non-finite voxels are
  counted in the same pass (no second read) and the ingest line says so, e.g.
  ``scan  1x40x64x64 (non-finite voxels kept: 12 NaN, 3 +inf, 0 -inf)``.
* **Not spread by resampling.** A non-finite input voxel reaches exactly the output voxels
  whose linear-interpolation footprint gives it a non-zero weight, whatever the
  interpolation order; the other output voxels are interpolated from the finite values
  (see the ``resample`` stage).

Integer images cannot hold non-finite values and are passed through untouched.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import numpy as np

__all__ = ["counting_non_finite", "non_finite_counts", "describe_non_finite"]

# data name -> block index -> (nan, +inf, -inf): per block, so a block computed twice (two
# write sections needing it) is counted once
_counts: dict[str, dict[tuple[int, ...], tuple[int, int, int]]] = {}
_lock = threading.Lock()


def _count_block(block: np.ndarray, key: str, block_id: tuple[int, ...] = ()) -> np.ndarray:
    if not np.isfinite(block).all():
        n = (int(np.isnan(block).sum()), int(np.isposinf(block).sum()), int(np.isneginf(block).sum()))
        with _lock:
            if key in _counts:
                _counts[key][tuple(block_id)] = n
    return block


def counting_non_finite(volume: Any) -> Any:
    """``volume`` whose data count their non-finite voxels as they are computed (in the
    process computing them); :func:`non_finite_counts` reads the totals afterwards."""
    data = volume.data
    if data.dtype.kind not in "fc":
        return volume
    token = f"nonfinite-{uuid.uuid4().hex}"
    counted = data.map_blocks(_count_block, key=token, dtype=data.dtype, name=token)
    with _lock:
        _counts[token] = {}
    return volume.replace(data=counted)


def non_finite_counts(volume: Any) -> tuple[int, int, int] | None:
    """``(nan, +inf, -inf)`` counted while ``volume`` (from :func:`counting_non_finite`) was
    computed, or None when it was not counted (integer data); the record is dropped."""
    with _lock:
        found = _counts.pop(volume.data.name, None)
    if found is None:
        return None
    return tuple(int(sum(n[i] for n in found.values())) for i in range(3))  # type: ignore[return-value]


def describe_non_finite(volume: Any) -> str:
    """The ingest line's note: empty when every voxel is finite."""
    counts = non_finite_counts(volume)
    if not counts or not any(counts):
        return ""
    nan, pos, neg = counts
    return f"(non-finite voxels kept: {nan} NaN, {pos} +inf, {neg} -inf)"
