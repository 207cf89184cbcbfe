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

import numpy as np

from .plugins import get_stage
from .specs import StageSpec
from .volume import Volume

__all__ = ["sample_volume", "check_stage", "default_chunkings", "ReadCounter"]


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
    spacing: Sequence[float] | None = None,
    *,
    channels: int = 1,
    seed: int = 0,
    dtype: Any = np.int16,
    oblique: bool = True,
    units: str = "mm",
) -> Volume:
    """A smooth random image with ``shape`` spatial axes (2 or 3), ``channels`` channels,
    anisotropic spacing and (by default) an oblique direction: the kind of input on which a
    wrong halo, a lost axis or a dropped channel shows."""
    shape = tuple(int(s) for s in shape)
    n = len(shape)
    if n not in (2, 3):
        raise ValueError(f"sample_volume: shape must have 2 or 3 spatial axes, got {shape}")
    spacing = tuple(spacing) if spacing is not None else (2.0, 0.75, 0.8)[-n:]
    rng = np.random.default_rng(seed)
    arr = rng.normal(0, 1, (channels, *shape))
    for ax in range(1, n + 1):  # smooth so interpolating stages see structure, not white noise
        arr = (arr + np.roll(arr, 1, ax) + np.roll(arr, -1, ax)) / 3
    arr = (arr * 300).astype(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else arr.astype(dtype)
    direction = None
    if oblique:
        m = np.array([[1.0, 0.2, 0.1], [-0.2, 1.0, 0.15], [0.05, -0.1, 1.0]])[:n, :n]
        q, _ = np.linalg.qr(m)
        direction = q * np.sign(np.diag(q))  # keep it close to identity, right-handed
    import dask.array as da

    return Volume.from_array(
        da.from_array(arr, chunks=(channels, *(16,) * n)),
        spacing=spacing,
        origin=(-101.0, 30.25, -12.5)[-n:],
        direction=direction,
        units=units,
        channel_axis=0,
        meta={"modality": "TEST", "id": "sample"},
    )


def default_chunkings(spatial_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Spatial chunk shapes that exercise a stage: roughly thirds, odd sizes that divide
    nothing, and one thin/wide mix; all derived from the image's own shape."""
    shape = [int(s) for s in spatial_shape]
    thirds = tuple(max(1, -(-s // 3)) for s in shape)
    odd = tuple(max(1, min(s, s // 4 + 3 + 2 * i)) for i, s in enumerate(shape))
    mixed = tuple(s if i % 2 == 0 else max(1, s // 5 + 1) for i, s in enumerate(shape))
    out: list[tuple[int, ...]] = []
    for c in (thirds, odd, mixed):
        if c not in out:
            out.append(c)
    return out


def _counted(volume: Volume, spatial_chunks: Sequence[int]) -> tuple[Volume, ReadCounter]:
    counter = ReadCounter()
    chunks = (volume.channels, *spatial_chunks)  # a stage sees every channel of a block
    data = volume.data.rechunk(chunks).map_blocks(counter, dtype=volume.data.dtype)
    return volume.replace(data=data), counter


def _stage(stage: str | StageSpec) -> StageSpec:
    return get_stage(stage) if isinstance(stage, str) else stage


def check_stage(
    stage: str | StageSpec,
    volume: Volume | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    chunkings: Sequence[Sequence[int]] | None = None,
    atol: float = 0.0,
    streaming: bool = True,
    keeps_direction: bool = True,
) -> None:
    """Assert that ``stage`` conforms (see the module docstring) on ``volume`` (default: a
    3-D :func:`sample_volume`); 2-D and multi-channel images work alike.

    ``chunkings`` are spatial chunk shapes (default: derived from the image's shape by
    :func:`default_chunkings`). Every failed property is reported in one ``AssertionError``;
    an exception raised while computing the stage is reported as one too, never as a dask
    error.
    """
    spec = _stage(stage)
    volume = volume if volume is not None else sample_volume()
    params = dict(params or {})
    chunkings = [tuple(c) for c in (chunkings or default_chunkings(volume.spatial_shape))]
    problems: list[str] = []
    try:
        _check(spec, volume, params, chunkings, atol, streaming, keeps_direction, problems)
    except AssertionError:
        raise
    except Exception as exc:  # a crash inside dask is a failed property, reported plainly
        problems.append(f"raised {type(exc).__name__}: {exc}")
    if problems:
        raise AssertionError(f"stage {spec.name!r} does not conform: " + "; ".join(problems))


def _check(spec: StageSpec, volume: Volume, params: dict[str, Any], chunkings: list[tuple[int, ...]],
           atol: float, streaming: bool, keeps_direction: bool, problems: list[str]) -> None:
    import dask
    import dask.array as da

    with dask.config.set(scheduler="threads"):
        # lazy
        vol, counter = _counted(volume, chunkings[0])
        out = spec(vol, **params)
        if counter.blocks:
            problems.append(f"not lazy: calling the stage read {counter.blocks} input block(s)")
        if not isinstance(out, Volume) or not isinstance(out.data, da.Array):
            problems.append("the stage must return a Volume with a dask array")
            return

        # geometry and meta carried
        if out.spatial_ndim != volume.spatial_ndim:
            problems.append(f"spatial axes changed from {volume.axes} to {out.axes}")
            return
        if keeps_direction and not np.allclose(out.direction, volume.direction, atol=1e-9):
            problems.append("direction cosines changed")
        if out.units != volume.units:
            problems.append(f"units changed from {volume.units} to {out.units}")
        missing = [k for k in volume.meta if k not in out.meta]
        if missing:
            problems.append(f"meta keys dropped: {missing}")
        hist = out.meta.get("history", [])
        if not hist or hist[-1].get("stage") != spec.name:
            problems.append("the call is not recorded in meta['history']")

        # streaming: one output chunk must not need the whole input
        if streaming:
            # quarter-size chunks: the first output chunk plus any halo up to a chunk
            # needs at most 2 of the 4 input chunks along each axis
            quarter = tuple(-(-n // 4) for n in volume.spatial_shape)
            vol, counter = _counted(volume, quarter)
            first = spec(vol, **params).data.blocks[(0,) * out.data.ndim]
            first.compute()
            total = int(np.prod(volume.shape))
            if counter.voxels >= total:
                problems.append(
                    f"one output chunk read {counter.voxels} input voxels of {total}: the stage "
                    "materialises the whole image"
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
