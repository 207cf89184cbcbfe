"""Reading and writing volumes in a Zarr v3 store."""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import dask.core
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec, BloscShuffle, BytesCodec
from zarr.core.chunk_grids import RegularChunkGrid
from zarr.storage import LocalStore

from ..errors import StoreError
from ..volume import Volume
from . import ome
from .ids import safe_id

__all__ = ["Store", "open_store", "DEFAULT_CHUNK", "default_chunks", "default_compressor"]

DEFAULT_CHUNK = 64
PHI_KEY = "phi"  # readers put identifying attributes here; dropped on write unless kept


def default_compressor() -> BloscCodec:
    """Blosc LZ4 with byte shuffle: measured fastest for CT int16 both ways while still
    compressing (see benchmarks/RESULTS.md and PERF-FACTS: 5.8 ms per random 48^3 read)."""
    return BloscCodec(cname="lz4", clevel=5, shuffle=BloscShuffle.shuffle)


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


def _chunks(chunks: int | Sequence[int] | None, shape: tuple[int, ...], itemsize: int = 1) -> tuple[int, ...]:
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


def _write_blocks(zchunks: tuple[int, ...], shape: tuple[int, ...], itemsize: int,
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


def _whole_chunk_blocks(blocks: tuple[tuple[int, ...], ...], zchunks: tuple[int, ...], itemsize: int) -> bool:
    """True when every dask block is a region of whole Zarr chunks (the last one may end at
    the array's edge) within the write budget: such blocks are written as they are, without
    a rechunk copy (a bigger one is split, so its chunks are written in parallel)."""
    aligned = all(all(n % c == 0 for n in sizes[:-1]) for sizes, c in zip(blocks, zchunks))
    return aligned and int(np.prod([max(sizes) for sizes in blocks])) * itemsize <= WRITE_BLOCK_BYTES


def _all_of(done_so_far: bool, blocks: list[np.ndarray]) -> bool:
    return bool(done_so_far) and all(bool(np.all(b)) for b in blocks)


def _all_in_order(writes: da.Array) -> Delayed:
    """True when every write task succeeded, as a chain over the slabs of blocks (blocks
    sharing their first index) in array order.

    Why a chain and not ``writes.all()``: with a tree reduction dask's ordering starts in
    the middle of the volume and grows both ways, keeping input chunks of both frontiers
    alive, so peak memory grew with the volume (319 vs 166 live input chunks for a 1.2 GB vs
    0.16 GB resample); the chain makes it walk the volume front to back (102 for both).
    One link per slab rather than per block: the same order with fewer tasks (each costs
    the threaded scheduler ~0.1-0.2 ms of GIL-holding Python).
    """
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


@functools.lru_cache(maxsize=64)
def _open_for_write(root: str, path: str, token: str) -> zarr.Array:
    # token: a new array written to the same path must not hit a stale cached handle
    return zarr.open_array(store=root, path=path, mode="r+")


_SHUFFLES = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}


def _plain_blosc(arr: zarr.Array) -> Blosc | None:
    """The numcodecs Blosc that makes (and reads) the same chunk bytes as the array's own
    codecs, or ``None`` when the array is not the plain layout :meth:`Store.write` creates
    (little-endian bytes + one Blosc codec, regular chunks, default ``c/...`` keys, a local
    directory); then reads and writes go through zarr.

    Why bypass zarr-python for such arrays: through it every chunk passes its event-loop
    thread (pure Python, holding the GIL) and two thread-pool hops, which serialised a whole
    preprocess run on one core: writing a 1.2 GB resample cost 14 s of CPU in zarr's threads,
    against 7 s for encoding + file writes done in the dask worker with the GIL released.
    """
    meta = arr.metadata
    codecs = getattr(meta, "codecs", ())
    if not (
        isinstance(arr.store, LocalStore)
        and isinstance(meta.chunk_grid, RegularChunkGrid)
        and getattr(meta.chunk_key_encoding, "name", None) == "default"
        and len(codecs) == 2
        and isinstance(codecs[0], BytesCodec)
        and isinstance(codecs[1], BloscCodec)
        and arr.dtype.newbyteorder("<") == arr.dtype
    ):
        return None
    cfg = codecs[1].to_dict()["configuration"]
    return Blosc(cname=cfg["cname"], clevel=cfg["clevel"], shuffle=_SHUFFLES[cfg["shuffle"]],
                 blocksize=cfg["blocksize"], typesize=cfg["typesize"])


@functools.lru_cache(maxsize=64)
def _direct_encoder(root: str, path: str, token: str) -> Blosc | None:
    return _plain_blosc(_open_for_write(root, path, token))


class _ChunkReader:
    """Array-like over a plain-layout Zarr array (see :func:`_plain_blosc`) whose
    ``[slices]`` reads and decodes the chunk files directly, in the calling dask worker
    with the GIL released, instead of through zarr-python's event loop."""

    def __init__(self, arr: zarr.Array, codec: Blosc):
        self.arr, self.codec = arr, codec
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim
        self.cshape = tuple(arr.metadata.chunk_grid.chunk_shape)
        self.base = Path(arr.store.root) / arr.path

    def _raw(self, idx: tuple[int, ...]) -> bytes | None:
        try:
            return (self.base / self.arr.metadata.encode_chunk_key(idx)).read_bytes()
        except FileNotFoundError:  # never written: it holds only the fill value
            return None

    def _chunk(self, idx: tuple[int, ...]) -> np.ndarray | None:
        raw = self._raw(idx)
        return None if raw is None else np.frombuffer(self.codec.decode(raw), dtype=self.dtype).reshape(self.cshape)

    def _whole_chunk(self, idx: tuple[int, ...]) -> np.ndarray:
        """One interior chunk (what every dask task of :meth:`Store.open` asks for), decoded
        straight into its own writable array."""
        out = np.empty(self.cshape, dtype=self.dtype)
        raw = self._raw(idx)
        if raw is None:
            out.fill(self.arr.metadata.fill_value)
        else:
            self.codec.decode(raw, out=out)
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if len(key) != self.ndim or not all(isinstance(k, slice) and k.step in (None, 1) for k in key):
            return self.arr[key]
        bounds = [k.indices(n)[:2] for k, n in zip(key, self.shape)]
        if all(a % c == 0 and b - a == c for (a, b), c in zip(bounds, self.cshape)):
            return self._whole_chunk(tuple(a // c for (a, _), c in zip(bounds, self.cshape)))
        out = np.full([max(0, b - a) for a, b in bounds], self.arr.metadata.fill_value, dtype=self.dtype)
        ranges = [range(a // c, -(-b // c)) for (a, b), c in zip(bounds, self.cshape)]
        for idx in itertools.product(*ranges):
            chunk = self._chunk(idx)
            if chunk is None:
                continue
            lo = [max(a, i * c) for (a, _), i, c in zip(bounds, idx, self.cshape)]
            hi = [min(b, (i + 1) * c) for (_, b), i, c in zip(bounds, idx, self.cshape)]
            out[tuple(slice(l - a, h - a) for l, h, (a, _) in zip(lo, hi, bounds))] = chunk[
                tuple(slice(l - i * c, h - i * c) for l, h, i, c in zip(lo, hi, idx, self.cshape))]
        return out


def _write_direct(block: np.ndarray, start: Sequence[int], arr: zarr.Array, codec: Blosc) -> None:
    """Encode and write the whole chunks of ``block`` (which begins at chunk-aligned ``start``)
    as zarr would: edge chunks padded to full size with the fill value, chunks that hold only
    the fill value not stored (zarr's ``write_empty_chunks=False``)."""
    cshape = tuple(arr.metadata.chunk_grid.chunk_shape)
    fill = arr.metadata.fill_value
    base = Path(arr.store.root) / arr.path
    for offs in itertools.product(*(range(0, n, c) for n, c in zip(block.shape, cshape))):
        piece = block[tuple(slice(o, o + c) for o, c in zip(offs, cshape))]
        if piece.shape != cshape:
            full = np.full(cshape, fill, dtype=arr.dtype)
            full[tuple(slice(0, n) for n in piece.shape)] = piece
            piece = full
        piece = np.ascontiguousarray(piece, dtype=arr.dtype)
        encoded = codec.encode(piece)
        # only a chunk that compressed to almost nothing can be all fill value: checking just
        # those spares a full compare pass over every other chunk
        if len(encoded) < piece.nbytes // 32 + 256 and np.all(piece == fill):
            continue
        key = arr.metadata.encode_chunk_key(tuple((s + o) // c for s, o, c in zip(start, offs, cshape)))
        target = base / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encoded)


def _write_chunk(block: np.ndarray, root: str, path: str, token: str, block_info=None) -> np.ndarray:
    loc = block_info[0]["array-location"]
    arr = _open_for_write(root, path, token)
    codec = _direct_encoder(root, path, token)
    if codec is not None:
        _write_direct(block, [a for a, _ in loc], arr, codec)
    else:
        arr[tuple(slice(a, b) for a, b in loc)] = block
    return np.ones((1,) * block.ndim, dtype=bool)


SECTION_TASKS = 512


def _fused(writes: da.Array) -> da.Array:
    # array optimisations now: the Delayed made by _all_in_order would skip them, leaving every
    # blockwise stage (and the write) a task of its own per chunk; fused, one task makes a
    # chunk from its inputs and writes it (a 1.2 GB resample + window: 2 of 3 tasks fewer).
    # Not when a layer carries dask.annotate() annotations (e.g. resources={"GPU": 1} on
    # inference tasks): blockwise fusion drops them, and a GPU task would land on a CPU worker.
    if any(layer.annotations for layer in writes.__dask_graph__().layers.values()):
        return writes
    (fused,) = dask.optimize(writes)
    return fused


def _sections(writes: da.Array, max_tasks: int | None = None) -> list[da.Array]:
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


class Store:
    """A voxelstream dataset store (use :func:`open_store`)."""

    def __init__(self, path: str | os.PathLike[str], group: zarr.Group):
        self.path = Path(path)
        self._root = group

    # -- naming ------------------------------------------------------------------------
    @staticmethod
    def image_path(volume_id: str, name: str = "image") -> str:
        return f"volumes/{safe_id(volume_id)}/{safe_id(name, 'output name')}"

    def _group(self, path: str) -> zarr.Group | None:
        try:
            node = zarr.open_group(store=str(self.path), path=path, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
            return None
        return node

    # -- listing -----------------------------------------------------------------------
    def volume_ids(self, name: str | None = None) -> list[str]:
        """Ids of the volumes in the store (original ids, sorted). With ``name``, only those
        whose ``name`` output is complete."""
        vols = self._group("volumes")
        if vols is None:
            return []
        ids = []
        for key, grp in sorted(vols.groups()):
            vid = grp.attrs.get("voxelstream", {}).get("volume_id", key)
            if name is None or self.is_complete(vid, name):
                ids.append(vid)
        return sorted(ids)

    def names(self, volume_id: str) -> list[str]:
        """Output names stored for ``volume_id`` (complete or not)."""
        grp = self._group(f"volumes/{safe_id(volume_id)}")
        return sorted(k for k, _ in grp.groups()) if grp is not None else []

    def attrs(self, volume_id: str, name: str = "image") -> dict[str, Any]:
        """The ``voxelstream`` attributes of one output (``{}`` if absent)."""
        grp = self._group(self.image_path(volume_id, name))
        return dict(grp.attrs.get("voxelstream", {})) if grp is not None else {}

    def is_complete(self, volume_id: str, name: str = "image", params: Mapping[str, Any] | None = None) -> bool:
        """True when the output was fully written (and, with ``params``, with these parameters)."""
        a = self.attrs(volume_id, name)
        if not a.get("complete"):
            return False
        return params is None or a.get("params") == _jsonable(params)

    # -- reading -----------------------------------------------------------------------
    def open(self, volume_id: str, name: str = "image") -> Volume:
        """The stored output as a lazy :class:`Volume` (one dask chunk per Zarr chunk)."""
        path = self.image_path(volume_id, name)
        grp = self._group(path)
        if grp is None:
            have = ", ".join(self.names(volume_id)) or "nothing"
            raise StoreError(f"{self.path}: no {name!r} for volume {volume_id!r} (it has: {have})")
        a = grp.attrs.get("voxelstream", {})
        if not a.get("complete"):
            raise StoreError(
                f"{self.path}: {path} is incomplete (an interrupted run?); run the command that "
                "writes it again"
            )
        arr = zarr.open_array(store=str(self.path), path=f"{path}/0", mode="r")
        codec = _plain_blosc(arr)
        source = arr if codec is None else _ChunkReader(arr, codec)
        data = da.from_array(source, chunks=arr.chunks, name=f"zarr-{path}-{a.get('token', '')}", asarray=False, fancy=False)
        affine = np.asarray(a["affine"])
        if data.ndim == affine.shape[0] - 1:  # layout 1 stored CT without its channel axis
            data = data[None]
        return Volume(data, affine, a.get("meta", {}), units=a.get("units"))

    # -- writing -----------------------------------------------------------------------
    def write(
        self,
        volume: Volume,
        volume_id: str,
        name: str = "image",
        *,
        chunks: int | Sequence[int] | None = None,
        params: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
        keep_phi: bool = False,
        compute: bool = True,
    ) -> Any:
        """Stream ``volume`` into ``volumes/<volume_id>/<name>``.

        Every dask task writes a region of whole Zarr chunks (the data is rechunked to
        such regions first, see :func:`_write_blocks`), so no chunk has two writers; the output is marked complete only after the last chunk is
        written (computed in sections of z block rows, front to back, see :func:`_sections`).
        ``params`` are what the skip logic compares (see :meth:`is_complete`).
        Identifying metadata (``meta["phi"]``) is dropped unless ``keep_phi``.
        With ``compute=False`` returns ``(delayed_write, finish)``: compute the first, then
        call ``finish()`` to mark the output complete.
        """
        path = self.image_path(volume_id, name)
        data = volume.data
        zchunks = _chunks(chunks, volume.shape, data.dtype.itemsize)
        meta = dict(volume.meta)
        if not keep_phi:
            meta.pop(PHI_KEY, None)
        meta.setdefault("id", volume_id)
        token = uuid.uuid4().hex
        vol_grp = zarr.open_group(store=str(self.path), path=f"volumes/{safe_id(volume_id)}", mode="a")
        known = vol_grp.attrs.get("voxelstream", {}).get("volume_id")
        if known is not None and known != volume_id:
            raise StoreError(
                f"{self.path}: volume ids {known!r} and {volume_id!r} map to the same store path; "
                "rename one of the inputs"
            )
        vol_grp.attrs["voxelstream"] = {"volume_id": volume_id}
        grp = zarr.open_group(store=str(self.path), path=path, mode="a")
        attrs = {
            "volume_id": volume_id,
            "name": name,
            "complete": False,
            "token": token,
            "affine": volume.affine.tolist(),
            "spacing": list(volume.spacing),
            "units": list(volume.units),
            "axes": ["c", *volume.axes],
            "meta": meta,
            "params": _jsonable(params or {}),
            "provenance": _jsonable({"history": meta.get("history", []), **(provenance or {})}),
        }
        grp.attrs.put(
            {
                "ome": ome.multiscales(name, volume.axes, volume.units, volume.spacing,
                                       ome.origin_array_order(volume.affine)),
                "voxelstream": attrs,
            }
        )
        grp.create_array(
            "0",
            shape=volume.shape,
            chunks=zchunks,
            dtype=data.dtype,
            compressors=default_compressor(),
            fill_value=0,
            overwrite=True,
            dimension_names=["c", *volume.axes],
        )
        if not _whole_chunk_blocks(data.chunks, zchunks, data.dtype.itemsize):
            data = data.rechunk(_write_blocks(zchunks, volume.shape, data.dtype.itemsize))
        writes = data.map_blocks(
            _write_chunk,
            str(self.path),
            f"{path}/0",
            token,
            dtype=bool,
            chunks=(1,) * data.ndim,
            name=f"write-{path}-{token}",
        )

        def finish() -> None:
            attrs["complete"] = True
            attrs["written"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            grp.attrs["voxelstream"] = attrs

        if not compute:
            return _all_in_order(_fused(writes)), finish
        # section by section, front to back: each compute's graph (and the scheduler's state)
        # covers a few hundred write tasks however big the volume is
        for section in _sections(writes):
            if not dask.compute(_all_in_order(_fused(section)))[0]:  # pragma: no cover
                raise StoreError(f"{self.path}: writing {path} failed")
        finish()
        return None

    def delete(self, volume_id: str, name: str) -> None:
        """Remove one output (e.g. to recompute it)."""
        grp = zarr.open_group(store=str(self.path), path=f"volumes/{safe_id(volume_id)}", mode="a")
        key = safe_id(name, "output name")
        if key in grp:
            del grp[key]

    def write_manifest(self, command: str, record: Mapping[str, Any]) -> Path:
        """Write ``runs/<timestamp>-<command>.json`` describing one run; returns its path."""
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        out = self.path / "runs" / f"{stamp}-{safe_id(command)}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_jsonable(record), indent=2))
        return out

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, volumes={len(self.volume_ids())})"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def open_store(path: str | os.PathLike[str], create: bool = False) -> Store:
    """Open the voxelstream store at ``path`` (``create=True`` makes it if missing)."""
    p = Path(path)
    if not create and not (p / "zarr.json").exists():
        raise StoreError(f"{p}: not a voxelstream store (no zarr.json); create one with 'voxelstream ingest'")
    p.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(store=str(p), mode="a", zarr_format=3)
    if "voxelstream" not in group.attrs:
        group.attrs["voxelstream"] = {"kind": "store", "layout": 2}
    return Store(p, group)
