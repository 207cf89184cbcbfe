"""Write planning: chunk shapes, the regions each write task covers, and the order and
sections in which a volume's write graph is computed (bounded memory, one writer per chunk)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import dask.array as da
    from dask.delayed import Delayed
    from zarr.codecs import BloscCodec

# dask and zarr are imported by the functions that build graphs and codecs: chunk_shape is
# also used by direct writes (voxelstream.store.direct), which import neither

__all__ = ["DEFAULT_CHUNK", "default_chunks", "default_compressor", "default_codecs", "chunk_shape", "write_blocks",
           "whole_chunk_blocks", "all_in_order", "fused", "sections", "WRITE_BLOCK_BYTES", "SECTION_TASKS"]

from ..constants import DEFAULT_CHUNK  # defined once, where the CLI can read it without dask

def default_compressor() -> BloscCodec:
    """Blosc LZ4 with byte shuffle: measured fastest for CT int16 both ways while still
    compressing (see benchmarks/RESULTS.md and PERF-FACTS: 5.8 ms per random 48^3 read)."""
    from zarr.codecs import BloscCodec, BloscShuffle

    from .direct import BLOSC  # the one place the choice is written (direct writes use it too)

    return BloscCodec(cname=BLOSC["cname"], clevel=BLOSC["clevel"], shuffle=BloscShuffle(BLOSC["shuffle"]))


def default_codecs() -> list[Any]:
    """The bytes -> bytes codecs of every array the store writes: :func:`default_compressor`
    then zarr v3's ``crc32c`` checksum of the compressed chunk (damage is detected on read
    and by ``voxelstream verify``; its cost: benchmarks/RESULTS.md)."""
    from zarr.codecs import Crc32cCodec

    return [default_compressor(), Crc32cCodec()]



#: Target size of one default 2-D chunk (all channels): a photograph is cut into a few
#: large tiles, not into 64x64 ones.
PLANE_CHUNK_BYTES = 4 * 2**20


def default_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Default spatial chunk edges for a channel-first ``shape``: 64 per axis for 3-D; for 2-D
    the largest power of two (<= 2048) whose tile of all channels fits PLANE_CHUNK_BYTES."""
    n = len(shape) - 1
    if n == 3:
        return (DEFAULT_CHUNK,) * 3
    edge = 2048
    while edge > 64 and shape[0] * itemsize * edge * edge > PLANE_CHUNK_BYTES:
        edge //= 2
    return (edge,) * n


def chunk_shape(chunks: int | Sequence[int] | None, shape: tuple[int, ...], itemsize: int = 1) -> tuple[int, ...]:
    n = len(shape) - 1
    if chunks is None:
        spatial = default_chunks(shape, itemsize)
    else:
        spatial = (int(chunks),) * n if np.isscalar(chunks) else tuple(int(v) for v in chunks)  # type: ignore[arg-type]
    if len(spatial) != n or min(spatial) < 1:
        raise ValueError(f"chunks must be a positive int or {n} of them (one per spatial axis), got {chunks!r}")
    # the channel axis is stored whole in each chunk: stages see every channel of a block
    return (shape[0],) + tuple(min(s, m) for s, m in zip(spatial, shape[1:]))


WRITE_BLOCK_BYTES = 64 * 2**20


def write_blocks(zchunks: tuple[int, ...], shape: tuple[int, ...], itemsize: int,
                  budget: int | None = None) -> tuple[int, ...]:
    """The region one write task covers: whole Zarr chunks, grown along x then y (up to the
    full plane) while it stays under ``budget`` bytes.

    Why not one task per chunk: zarr writes the chunks of one region concurrently, and
    per-task overhead dominated small chunks (a 1.2 GB ingest ran 1.5x faster with slabs,
    benchmarks/RESULTS.md). Every chunk still has exactly one writer.
    """
    budget = WRITE_BLOCK_BYTES if budget is None else budget
    block = list(zchunks)
    for axis in (len(shape) - 1, len(shape) - 2):
        while block[axis] < shape[axis]:
            grown = block.copy()
            grown[axis] = min(shape[axis], block[axis] + zchunks[axis])
            if int(np.prod(grown)) * itemsize > budget:
                break
            block = grown
        if block[axis] < shape[axis]:
            break
    return tuple(block)


def whole_chunk_blocks(blocks: tuple[tuple[int, ...], ...], zchunks: tuple[int, ...], itemsize: int) -> bool:
    """True when every dask block is a region of whole Zarr chunks (the last one may end at
    the array's edge) within the write budget: such blocks are written as they are, without
    a rechunk copy (a bigger one is split, so its chunks are written in parallel)."""
    aligned = all(all(n % c == 0 for n in sizes[:-1]) for sizes, c in zip(blocks, zchunks))
    return aligned and int(np.prod([max(sizes) for sizes in blocks])) * itemsize <= WRITE_BLOCK_BYTES


def _all_of(done_so_far: bool, blocks: list[np.ndarray]) -> bool:
    return bool(done_so_far) and all(bool(np.all(b)) for b in blocks)


def all_in_order(writes: da.Array) -> Delayed:
    """True when every write task succeeded, as a chain over the slabs of blocks (blocks
    sharing their first index) in array order.

    Why a chain and not ``writes.all()``: with a tree reduction dask's ordering starts in
    the middle of the volume and grows both ways, keeping input chunks of both frontiers
    alive, so peak memory grew with the volume (319 vs 166 live input chunks for a 1.2 GB vs
    0.16 GB resample); the chain makes it walk the volume front to back (102 for both).
    One link per slab rather than per block: the same order with fewer tasks (each costs
    the threaded scheduler ~0.1-0.2 ms of GIL-holding Python).
    """
    import dask
    import dask.core
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    name = f"all-in-order-{writes.name}"
    layer: dict = {}
    prev: Any = True
    slabs = writes.__dask_keys__()
    # the channel axis is one block (stored whole): slabs run along the first spatial axis
    slabs = [slab for lead in slabs for slab in lead]
    for i, slab in enumerate(slabs):
        layer[(name, i)] = (_all_of, prev, list(dask.core.flatten([slab])))
        prev = (name, i)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[writes])
    return Delayed(prev, graph, layer=name) if layer else dask.delayed(True)



SECTION_TASKS = 512


def fused(writes: da.Array) -> da.Array:
    # array optimisations now: the Delayed made by _all_in_order would skip them, leaving every
    # blockwise stage (and the write) a task of its own per chunk; fused, one task makes a
    # chunk from its inputs and writes it (a 1.2 GB resample + window: 2 of 3 tasks fewer).
    # Not when a layer carries dask.annotate() annotations (e.g. resources={"GPU": 1} on
    # inference tasks): blockwise fusion drops them, and a GPU task would land on a CPU worker.
    import dask

    if any(layer.annotations for layer in writes.__dask_graph__().layers.values()):
        return writes
    (fused,) = dask.optimize(writes)
    return fused


def sections(writes: da.Array, max_tasks: int | None = None) -> list[da.Array]:
    """``writes`` cut along the first spatial axis into runs of whole block rows of at most ``max_tasks`` write
    tasks each (at least one row), in array order.

    Why: computed at once, the fused graph and the threaded scheduler's per-task state grow
    with the volume (~33 MB of graph for a 1.2 GB preprocess, benchmarks/RESULTS.md), which
    breaks the design's promise that peak memory depends on chunk size and worker count only.
    Each section's graph is culled from the lazy whole, so only its own tasks are built.
    """
    max_tasks = SECTION_TASKS if max_tasks is None else max_tasks
    z = 1  # the first spatial axis (the channel axis is one block)
    rows = writes.numblocks[z]
    per_row = max(1, int(np.prod(writes.numblocks)) // max(rows, 1))
    step = max(1, max_tasks // per_row)
    lead = (slice(None),) * z
    return [writes.blocks[lead + (slice(r, min(r + step, rows)),)] for r in range(0, rows, step)]


