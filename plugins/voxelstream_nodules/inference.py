"""Dense sliding-window inference, disk to disk: the classifier over a whole scan as one
fully convolutional network, tiled through Dask.

Grid. The classifier sees a cube of edge ``R`` (its receptive field) centred at voxel ``c``,
cut as ``[c - R//2, c - R//2 + R)`` exactly as ``voxelstream nodules cubes`` cuts it (past the border
the cube is the window minimum). Dense evaluation gives one logit every ``s`` voxels (the
network's stride), so the window centres form the grid ``c = offset + s * i`` per axis, with
``n = ceil(N / s)`` centres and the offset splitting the remainder evenly: every centre lies
inside the volume and every voxel lies within ``s / 2`` of a centre. The probability map is a
:class:`~voxelstream.Volume` on that grid: spacing ``s *`` the input spacing, the same
direction, origin at the world position of the first centre.

Tiles. One dask task per output tile of ``T^3`` grid points (the last ones cut short) reads its
input window, ``(T - 1) * s + R`` voxels per axis, straight from the input's Zarr array
(padding past the border), runs the jitted eval-mode network on it and returns ``T^3``
probabilities. Every tile has the full input shape, so XLA compiles once per process. The
graph holds only paths and numbers: each process (dask.distributed workers too) loads the
model from ``MODEL_DIR`` once and keeps the compiled function (:func:`evaluator`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import dask
import dask.array as da
import numpy as np

from voxelstream.batch import BatchReport
from voxelstream.errors import VoxelstreamError
from voxelstream.models import WEIGHTS, load_model, read_model_json
from voxelstream.store import Store
from voxelstream.volume import Volume

from .cubes import window_range
from .extract import cut_cube, read_spatial
from .outputs import ISO_OUTPUT, PROB_OUTPUT

__all__ = [
    "DEFAULT_TILE", "DEFAULT_CONCURRENT_TILES", "tiles_at_once", "Evaluator", "evaluator", "weights_digest", "DenseGrid",
    "dense_grid", "grid_volume_affine", "read_window", "dense_probabilities", "infer_params", "infer_store",
    "default_tile",
]

DEFAULT_TILE = 24  # output grid points per tile edge: a 140^3 input window for R=48, s=4
# Tiles evaluated at once per process. One tile's XLA run does not keep two cores busy: two
# at once were measured 1.3-1.5x faster on this 2-core machine when it was otherwise idle
# (slower under heavy load from other processes; benchmarks/RESULTS.md), at +0.55 GiB peak
# (1.6 GiB at tile 24). The cap keeps memory bounded whatever the number of dask threads.
# The environment variable VOXELSTREAM_INFER_TILES_AT_ONCE overrides it.
DEFAULT_CONCURRENT_TILES = 2


def tiles_at_once() -> int:
    """How many tiles one process evaluates at the same time (see DEFAULT_CONCURRENT_TILES)."""
    value = os.environ.get("VOXELSTREAM_INFER_TILES_AT_ONCE", "")
    try:
        return max(1, int(value)) if value else DEFAULT_CONCURRENT_TILES
    except ValueError:
        raise VoxelstreamError(f"VOXELSTREAM_INFER_TILES_AT_ONCE={value!r}: expected a whole number >= 1") from None


def weights_digest(model_dir: str | Path) -> str:
    """SHA-256 of ``MODEL_DIR/weights.npz`` (part of the skip parameters: a retrained model
    in the same directory is a different model)."""
    read_model_json(model_dir)  # a missing or broken model.json is the clearer error
    h = hashlib.sha256()
    try:
        with open(Path(model_dir) / WEIGHTS, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise VoxelstreamError(f"{Path(model_dir) / WEIGHTS}: missing; the model directory is incomplete, re-train") from None
    return h.hexdigest()


@dataclass(frozen=True)
class Evaluator:
    """A loaded eval-mode classifier: ``probabilities(x)`` maps ``(B, D, H, W)`` float32
    windows to ``sigmoid(logits)`` of shape ``(B, D', H', W')`` on jax's default device, one
    output every ``stride`` input voxels (the network's stride over ``2 ** stitch``, see
    :mod:`.stitch`); ``input_edge(T)`` is the window edge that gives ``T`` outputs per axis."""

    receptive_field: int
    stride: int
    probabilities: Callable[[np.ndarray], np.ndarray]
    input_edge: Callable[[int], int] | None = None
    stitch: int = 0

    def window_edge(self, points: int) -> int:
        """Input voxels per axis behind ``points`` outputs."""
        if self.input_edge is not None:
            return self.input_edge(points)
        return (points - 1) * self.stride + self.receptive_field


_EVALUATORS: dict[tuple[str, str, int], Evaluator] = {}
_EVALUATORS_LOCK = threading.Lock()


def evaluator(model_dir: str | Path, digest: str | None = None, stitch: int = 0) -> Evaluator:
    """The :class:`Evaluator` of ``model_dir`` with ``stitch`` shift-and-stitch levels, built
    once per process, weights digest and level (dask tasks call this: jax objects never
    travel through the graph)."""
    key = (str(Path(model_dir).resolve()), digest or weights_digest(model_dir), int(stitch))
    with _EVALUATORS_LOCK:
        if key not in _EVALUATORS:
            _EVALUATORS[key] = _build_evaluator(key[0], key[2])
        return _EVALUATORS[key]


def _build_evaluator(model_dir: str, stitch: int) -> Evaluator:
    import jax
    from flax import nnx

    from .stitch import dense_logits, grid_stride, stitched_input_edge

    model = load_model(model_dir)  # in eval mode: running statistics, no dropout
    try:
        stride = grid_stride(model, stitch)
    except ValueError as exc:
        raise VoxelstreamError(f"{model_dir}: {exc}") from None
    graphdef, state = nnx.split(model)

    @jax.jit
    def probs(state: Any, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(dense_logits(nnx.merge(graphdef, state), x, stitch))

    limit = threading.Semaphore(tiles_at_once())

    def run(x: np.ndarray) -> np.ndarray:
        with limit:
            return np.asarray(probs(state, np.asarray(x, dtype=np.float32)))

    edge = functools.partial(stitched_input_edge, model, levels=stitch)
    return Evaluator(int(model.receptive_field), stride, run, edge, int(stitch))


# -- the grid -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenseGrid:
    """Window centres ``offset + stride * i`` (per axis, input voxels), ``i < shape``."""

    shape: tuple[int, int, int]
    offset: tuple[int, int, int]
    stride: int
    receptive_field: int

    def centres(self, index_zyx: np.ndarray) -> np.ndarray:
        """Input voxel of the window centre for grid indices ``(n, 3)``."""
        return np.asarray(self.offset) + self.stride * np.asarray(index_zyx)

    def window_start(self, grid_start: Sequence[int]) -> tuple[int, int, int]:
        """First input voxel of the window behind grid point ``grid_start``."""
        c = self.centres(np.asarray(grid_start))
        return tuple(int(v) for v in c - self.receptive_field // 2)  # type: ignore[return-value]

    def window_edge(self, tile: int) -> int:
        """Input voxels per axis behind ``tile`` grid points."""
        return (tile - 1) * self.stride + self.receptive_field


def dense_grid(shape_zyx: Sequence[int], stride: int, receptive_field: int) -> DenseGrid:
    """The grid over a volume of ``shape_zyx`` (see the module docstring)."""
    n = tuple(max(1, math.ceil(int(v) / stride)) for v in shape_zyx)
    offset = tuple((int(v) - 1 - stride * (k - 1)) // 2 for v, k in zip(shape_zyx, n))
    return DenseGrid(n, offset, int(stride), int(receptive_field))  # type: ignore[arg-type]


def grid_volume_affine(affine: np.ndarray, grid: DenseGrid) -> np.ndarray:
    """The index->world affine of the grid: grid index ``i`` maps where input voxel
    ``offset + stride * i`` does."""
    to_input = np.diag([grid.stride] * 3 + [1]).astype(float)
    to_input[:3, 3] = grid.offset
    return np.asarray(affine, dtype=float) @ to_input


# -- tiles ------------------------------------------------------------------------------------------


def read_window(reader: Any, start: Sequence[int], edge: int, pad_value: float) -> np.ndarray:
    """The ``edge^3`` window from spatial index ``start`` of channel 0 of a stored output (its
    :meth:`Store.reader <voxelstream.store.Store.reader>` handle, ``(1, Z, Y, X)``) as float32,
    with ``pad_value`` past its border; only the chunks the window touches are read."""
    shape = reader.shape[1:]
    lo = [min(max(int(s), 0), n) for s, n in zip(start, shape)]
    hi = [min(max(int(s) + edge, 0), n) for s, n in zip(start, shape)]
    if any(b <= a for a, b in zip(lo, hi)):
        return np.full((edge,) * 3, pad_value, dtype=np.float32)
    region = read_spatial(reader, [slice(a, b) for a, b in zip(lo, hi)]).astype(np.float32, copy=False)
    return cut_cube(region, lo, start, (edge,) * 3, pad_value)


def _tile(reader: Any, model_dir: str, digest: str, grid: DenseGrid, tile: int,
          pad_value: float, stitch: int = 0, block_id: tuple[int, int, int, int] | None = None) -> np.ndarray:
    assert block_id is not None
    g0 = [b * tile for b in block_id[1:]]  # block_id[0]: the single channel
    ev = evaluator(model_dir, digest, stitch)
    window = read_window(reader, grid.window_start(g0), ev.window_edge(tile), pad_value)
    probs = ev.probabilities(window[None])[0]
    keep = tuple(slice(0, min(tile, n - a)) for a, n in zip(g0, grid.shape))
    return probs[keep][None]


def default_tile(stitch: int) -> int:
    """Output points per tile edge: :data:`DEFAULT_TILE` at the network's stride, ``2 **
    stitch`` times more on a stitched grid (so a tile's input window stays about as large)."""
    return DEFAULT_TILE * 2 ** int(stitch)


def dense_probabilities(store: Store, volume_id: str, model_dir: str | Path, *, name: str = ISO_OUTPUT,
                        tile: int | None = None, gpu_resource: bool = False, stitch: int = 0) -> Volume:
    """The lazy probability map ``(1, Z', Y', X')`` of ``volume_id``'s ``name`` output
    (float32, one dask chunk per ``tile^3`` output tile, :func:`default_tile` when None) on
    the grid of stride ``network stride / 2 ** stitch`` (shift-and-stitch, :mod:`.stitch`).
    With ``gpu_resource`` the tasks carry the dask.distributed resource annotation ``{"GPU":
    1}``: on a dask.distributed cluster only workers started with ``--resources GPU=1`` run
    them (other schedulers ignore annotations)."""
    tile = default_tile(stitch) if tile is None else int(tile)
    if tile < 1:
        raise ValueError(f"tile must be at least 1 output voxel, got {tile}")
    model_dir = str(Path(model_dir).resolve())
    digest = weights_digest(model_dir)
    ev = evaluator(model_dir, digest, stitch)
    src = store.open(volume_id, name)
    if src.spatial_ndim != 3 or src.channels != 1:
        raise ValueError(f"{volume_id}/{name}: expected a single-channel 3-D volume, got shape {src.shape}")
    grid = dense_grid(src.spatial_shape, ev.stride, ev.receptive_field)
    reader = store.reader(volume_id, name)
    chunks = ((1,), *(tuple(min(tile, n - a) for a in range(0, n, tile)) for n in grid.shape))
    ctx = dask.annotate(resources={"GPU": 1}) if gpu_resource else contextlib.nullcontext()
    with ctx:
        data = da.map_blocks(
            _tile, reader, model_dir, digest, grid, int(tile), window_range(src)[0], int(stitch),
            chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0, 0), np.float32),
            name=f"infer-{volume_id}-{reader.token}-{digest[:12]}-{tile}-{stitch}",
        )
    meta = dict(src.meta, units="probability")
    entry = {"stage": "infer", "model_dir": model_dir, "weights_sha256": digest, "input": name,
             "stride": grid.stride, "stitch": int(stitch), "offset_zyx": list(grid.offset),
             "receptive_field": grid.receptive_field}
    return src.with_history(entry, data=data, affine=grid_volume_affine(src.affine, grid), meta=meta)


def infer_params(model_dir: str | Path, *, name: str, tile: int, stitch: int = 0) -> dict[str, Any]:
    """What makes two ``infer`` outputs the same: the model (directory and weights digest),
    the input output name, the tile size and the shift-and-stitch levels."""
    return {"model_dir": str(Path(model_dir).resolve()), "weights_sha256": weights_digest(model_dir),
            "input": name, "tile": int(tile), "stitch": int(stitch)}


def _prob_volume(store: Store, model_dir: str, name: str, tile: int, gpu_resource: bool, stitch: int,
                 volume_id: str) -> Volume:
    # module level: the runner may send it to a dask.distributed worker
    return dense_probabilities(store, volume_id, model_dir, name=name, tile=tile, gpu_resource=gpu_resource,
                               stitch=stitch)


def _describe(prob: Volume) -> str:
    return f"at {prob.spacing[0]:g} mm"


def infer_store(store: Store, model_dir: str | Path, *, name: str = ISO_OUTPUT, out_name: str = PROB_OUTPUT,
                tile: int | None = None, force: bool = False, gpu_resource: bool = False, stitch: int = 0,
                out: TextIO | None = None, err: TextIO | None = None) -> BatchReport:
    """Write the probability map of every CT volume with a complete ``name`` output to
    ``out_name``, one Zarr chunk per tile, through the engine's per-volume runner. Maps
    complete with the same :func:`infer_params`, made from the same input (its completion
    token), are skipped (``force`` redoes them); a failing volume, or one whose ``name`` output
    is missing or incomplete, is reported on ``err`` and the others go on. With
    ``gpu_resource`` each volume's task asks dask.distributed for ``{"GPU": 1}``. ``stitch``
    levels of shift-and-stitch refine the grid ``2 ** stitch`` times per axis (:mod:`.stitch`);
    ``tile`` defaults to :func:`default_tile`."""
    from voxelstream.runner import run_per_volume, stored_jobs

    tile = default_tile(stitch) if tile is None else int(tile)
    evaluator(model_dir, None, stitch)  # a level the network cannot stitch is one error here, not one per volume
    params = infer_params(model_dir, name=name, tile=tile, stitch=stitch)
    build = functools.partial(_prob_volume, store, str(Path(model_dir).resolve()), name, tile, gpu_resource,
                              int(stitch))
    jobs = stored_jobs(store, name, build, accepts={"modality": "CT", "spatial_ndim": 3, "units": "mm"})
    if not jobs:
        raise VoxelstreamError(f"{store.path}: the store holds no volume; run 'voxelstream ct preprocess' first")
    return run_per_volume(store, jobs, output=out_name, command="infer", params=params, chunks=tile, force=force,
                          provenance={"stage": "infer", "input": name, "plugin": "voxelstream_nodules"},
                          resources={"GPU": 1} if gpu_resource else None, describe=_describe,
                          record=params, out=out, err=err)
