"""Conformance checks for plugin authors: does a stage behave like a voxelstream stage?

Use from a plugin's own tests::

    from voxelstream.testing import check_stage, sample_volume

    def test_my_stage_conforms():
        check_stage("my-stage", sample_volume(), params={"sigma": 1.0})

:func:`check_stage` raises ``AssertionError`` naming every property that failed:

* **lazy** -- calling the stage reads no voxel;
* **chunking-independent** -- the same output for every input chunking (including chunk
  sizes that do not divide the shape);
* **streaming** -- computing one output chunk reads only part of the input, never the
  whole volume (skipped for stages declared global with ``streaming=False``);
* **geometry and meta carried** -- direction kept, meta keys kept, the call recorded in
  ``meta["history"]``;
* **deterministic** -- two runs with the same parameters give identical output.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from .plugins import get_stage
from .specs import StageSpec
from .volume import Volume

__all__ = ["sample_volume", "check_stage", "ReadCounter"]


class ReadCounter:
    """Counts the input voxels a graph reads (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.blocks = 0
        self.voxels = 0

    def __call__(self, block: np.ndarray) -> np.ndarray:
        if block.size == 0:  # dask probing the output type with an empty block: no read
            return block
        with self._lock:
            self.blocks += 1
            self.voxels += int(block.size)
        return block


def sample_volume(
    shape: Sequence[int] = (40, 44, 36),
    spacing: Sequence[float] = (2.0, 0.75, 0.8),
    *,
    seed: int = 0,
    dtype: Any = np.int16,
    oblique: bool = True,
) -> Volume:
    """A smooth random volume with anisotropic spacing and (by default) oblique direction."""
    rng = np.random.default_rng(seed)
    arr = rng.normal(0, 1, tuple(shape))
    for ax in range(3):  # smooth so interpolating stages see structure, not white noise
        arr = (arr + np.roll(arr, 1, ax) + np.roll(arr, -1, ax)) / 3
    arr = (arr * 300).astype(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else arr.astype(dtype)
    direction = None
    if oblique:
        q, _ = np.linalg.qr(np.array([[1.0, 0.2, 0.1], [-0.2, 1.0, 0.15], [0.05, -0.1, 1.0]]))
        direction = q * np.sign(np.diag(q))  # keep it close to identity, right-handed
    return Volume.from_itk_geometry(
        da.from_array(arr, chunks=16),
        spacing=spacing,
        origin_xyz=(-12.5, 30.25, -101.0),
        direction=direction,
        meta={"modality": "TEST", "id": "sample", "units": "arbitrary"},
    )


def _counted(volume: Volume, chunks: Any) -> tuple[Volume, ReadCounter]:
    counter = ReadCounter()
    data = volume.data.rechunk(chunks).map_blocks(counter, dtype=volume.data.dtype)
    return volume.replace(data=data), counter


def _stage(stage: str | StageSpec) -> StageSpec:
    return get_stage(stage) if isinstance(stage, str) else stage


def check_stage(
    stage: str | StageSpec,
    volume: Volume | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    chunkings: Sequence[Any] = ((16, 16, 16), (7, 13, 11), (40, 9, 36)),
    atol: float = 0.0,
    streaming: bool = True,
    keeps_direction: bool = True,
) -> None:
    """Assert that ``stage`` conforms (see the module docstring); raises AssertionError."""
    spec = _stage(stage)
    volume = volume if volume is not None else sample_volume()
    params = dict(params or {})
    problems: list[str] = []

    with dask.config.set(scheduler="threads"):
        # lazy
        vol, counter = _counted(volume, chunkings[0])
        out = spec(vol, **params)
        if counter.blocks:
            problems.append(f"not lazy: calling the stage read {counter.blocks} input block(s)")
        if not isinstance(out, Volume) or not isinstance(out.data, da.Array):
            problems.append("the stage must return a Volume with a dask array")
            raise AssertionError(f"stage {spec.name!r}: " + "; ".join(problems))

        # geometry and meta carried
        if keeps_direction and not np.allclose(out.direction, volume.direction, atol=1e-9):
            problems.append("direction cosines changed")
        missing = [k for k in volume.meta if k not in out.meta]
        if missing:
            problems.append(f"meta keys dropped: {missing}")
        hist = out.meta.get("history", [])
        if not hist or hist[-1].get("stage") != spec.name:
            problems.append("the call is not recorded in meta['history']")

        # streaming: one output chunk must not need the whole input
        if streaming:
            # quarter-size chunks: the first output chunk plus any halo up to a chunk
            # needs at most 2x2x2 of the 4x4x4 input chunks
            quarter = tuple(-(-n // 4) for n in volume.shape)
            vol, counter = _counted(volume, quarter)
            first = spec(vol, **params).data.blocks[(0,) * out.data.ndim]
            first.compute()
            total = int(np.prod(volume.shape))
            if counter.voxels >= total:
                problems.append(
                    f"one output chunk read {counter.voxels} input voxels of {total}: the stage "
                    "materialises the whole volume"
                )

        # chunking independence and determinism
        reference = None
        for chunks in chunkings:
            vol, _ = _counted(volume, chunks)
            res = spec(vol, **params)
            if res.shape != out.shape or not np.allclose(res.affine, out.affine):
                problems.append(f"chunks {chunks}: output shape/affine depend on chunking")
                continue
            got = res.data.compute()
            if reference is None:
                reference = got
                again = spec(vol, **params).data.compute()
                if not np.array_equal(again, got, equal_nan=True):
                    problems.append("not deterministic: two runs differ")
                continue
            diff = np.abs(got.astype(float) - reference.astype(float))
            if np.nanmax(diff, initial=0.0) > atol:
                problems.append(
                    f"chunks {chunks}: output differs from chunks {chunkings[0]} by up to "
                    f"{np.nanmax(diff):.3g} (allowed {atol})"
                )
    if problems:
        raise AssertionError(f"stage {spec.name!r} does not conform: " + "; ".join(problems))
