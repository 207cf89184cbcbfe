"""The store's plain arrays without dask or zarr-python (only numpy, numcodecs' Blosc and
crc32c): writing an output straight from a :class:`~voxelstream.lazy.BlockSource`, and
opening a stored array for reading from its document alone (:class:`PlainArray`).

Why: for one scan, importing dask.array and zarr (0.4 s) and building, fusing, ordering and
scheduling a graph of a few hundred tasks (~0.5 s of GIL-holding Python on 2 cores) cost as
much as the voxels. Here a volume is cut into blocks of whole chunks (single chunks for
computed sources, rows of chunks along the last axis of at most :data:`BLOCK_BYTES` for
sources read from files), a thread pool runs ``source.read(block)`` -> encode -> chunk files
for each in array order, and only a few blocks are in flight, so memory stays flat in the
volume's size.

The files are byte for byte what zarr-python writes for the store's arrays (its plain
layout: little-endian bytes -> Blosc -> crc32c, regular chunks, ``c/...`` keys; the array
document as ``zarr.create_array`` writes it; chunks holding only the fill value not stored),
so everything else (reads, ``verify``, other tools) cannot tell the two apart.
"""

from __future__ import annotations

import itertools
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
from numcodecs import Blosc

__all__ = ["BLOSC", "BLOCK_BYTES", "PlainCodec", "PlainArray", "plain_array", "array_doc", "can_write",
           "default_codec", "write_chunks", "block_regions", "write_source", "direct_workers", "fill_value"]

#: The store's compressor (planning.default_compressor builds zarr's codec from it): Blosc
#: LZ4 level 5 with byte shuffle, chosen by measurement (benchmarks/RESULTS.md).
BLOSC = {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}
_SHUFFLES = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}

#: Largest row of chunks one task reads from a file source (one thread's unit of work): a
#: 512 x 512 int16 slice gives rows of 8 chunks (4 MiB), 40 tasks for a 0.16 GB scan.
BLOCK_BYTES = 8 * 2**20


class PlainCodec:
    """Encodes/decodes one chunk as the array's codecs do: Blosc, then (when the array has
    it) the crc32c checksum appended."""

    def __init__(self, blosc: Blosc, crc: bool):
        self.blosc, self.crc = blosc, crc

    def encode(self, piece: np.ndarray) -> tuple[bytes, bytes]:
        """The chunk file's bytes as ``(compressed, trailer)``: the trailer is the checksum
        (empty without one), written after the payload without joining the two (a copy)."""
        data = self.blosc.encode(piece)
        return data, (struct.pack("<I", google_crc32c.value(data)) if self.crc else b"")

    def payload(self, raw: bytes, where: str) -> np.ndarray | bytes:
        """The Blosc bytes of a chunk file, its checksum verified."""
        if not self.crc:
            return raw
        if len(raw) < 4:
            raise _chunk_error(f"{where} is damaged (truncated to {len(raw)} bytes)")
        body = np.frombuffer(raw, dtype=np.uint8)[:-4]  # a view: no copy of the chunk
        if struct.unpack("<I", raw[-4:])[0] != google_crc32c.value(body):
            raise _chunk_error(f"{where} is damaged (checksum mismatch)")
        return body

    def decode(self, raw: bytes, where: str, out: np.ndarray | None = None) -> Any:
        body = self.payload(raw, where)
        try:
            return self.blosc.decode(body, out=out)
        except Exception as exc:  # numcodecs raises RuntimeError/ValueError on bad input
            raise _chunk_error(f"{where} is damaged (does not decode: {exc})") from None


def _chunk_error(text: str) -> Exception:
    from .chunkio import ChunkError  # there (with zarr): only a damaged chunk gets here

    return ChunkError(text)


def can_write(dtype: np.dtype) -> bool:
    """True for the dtypes whose array documents :func:`array_doc` writes (bool, integers,
    floats); others (complex, structured) go through zarr-python."""
    return np.dtype(dtype).kind in "biuf" and np.dtype(dtype).itemsize <= 8


def default_codec(dtype: np.dtype) -> PlainCodec:
    """The codec of the store's arrays of ``dtype`` (:data:`BLOSC` then crc32c)."""
    dtype = np.dtype(dtype)
    return PlainCodec(Blosc(cname=BLOSC["cname"], clevel=BLOSC["clevel"], shuffle=_SHUFFLES[BLOSC["shuffle"]],
                            blocksize=0, typesize=dtype.itemsize), crc=True)


def fill_value(dtype: np.dtype) -> Any:
    """The fill value of the store's arrays of ``dtype``, as their ``zarr.json`` holds it
    (what chunks never written read as; all-fill chunks are not stored)."""
    return False if dtype.kind == "b" else (0.0 if dtype.kind == "f" else 0)


def array_doc(shape: Sequence[int], chunks: Sequence[int], dtype: np.dtype,
              dimension_names: Sequence[str]) -> dict[str, Any]:
    """The ``zarr.json`` of an array with the store's codecs, as ``zarr.create_array`` writes
    it (tests/test_direct_write.py compares the two)."""
    dtype = np.dtype(dtype)
    bytes_codec: dict[str, Any] = {"name": "bytes"}
    if dtype.itemsize > 1:
        bytes_codec["configuration"] = {"endian": "little"}
    fill = fill_value(dtype)
    return {
        "shape": [int(n) for n in shape],
        "data_type": "bool" if dtype.kind == "b" else dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [int(c) for c in chunks]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [bytes_codec,
                   {"name": "blosc", "configuration": {"typesize": dtype.itemsize, "cname": BLOSC["cname"],
                                                       "clevel": BLOSC["clevel"], "shuffle": BLOSC["shuffle"],
                                                       "blocksize": 0}},
                   {"name": "crc32c"}],
        "attributes": {},
        "dimension_names": list(dimension_names),
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def _slash_key(idx: tuple[int, ...]) -> str:
    return "c/" + "/".join(str(i) for i in idx)


class _Namespace:
    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)


class PlainArray:
    """What :class:`~.chunkio.ChunkReader` uses of a ``zarr.Array`` (shape, dtype, chunks,
    fill value, chunk keys, folder), read from the array document alone: opening a stored
    output for reading then imports no zarr-python (0.1-0.2 s of every store command). Any
    other indexing (fancy keys) is handed to zarr, opened then."""

    def __init__(self, root: str, path: str, doc: dict[str, Any]) -> None:
        self.root, self.path = root, path
        self.shape = tuple(int(n) for n in doc["shape"])
        self.ndim = len(self.shape)
        self.dtype = np.dtype(doc["data_type"])
        self.chunks = tuple(int(c) for c in doc["chunk_grid"]["configuration"]["chunk_shape"])
        self.store = _Namespace(root=Path(root))
        self.metadata = _Namespace(chunk_grid=_Namespace(chunk_shape=self.chunks), fill_value=doc["fill_value"],
                                   encode_chunk_key=_slash_key)

    def __getitem__(self, key: Any) -> Any:
        import zarr

        return zarr.open_array(store=self.root, path=self.path, mode="r")[key]


def plain_array(root: str, path: str) -> tuple[PlainArray, PlainCodec] | None:
    """``(array, codec)`` when the array at ``root/path`` is exactly the store's plain layout
    (its document equals :func:`array_doc` for its shape, chunks, dtype and axis names), else
    ``None`` (zarr-python opens it: other codecs, a foreign or damaged document)."""
    import json

    try:
        doc = json.loads((Path(root) / path / "zarr.json").read_bytes())
        dtype = np.dtype(doc["data_type"])
        want = array_doc(doc["shape"], doc["chunk_grid"]["configuration"]["chunk_shape"], dtype,
                         doc.get("dimension_names") or [])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if doc != want or not can_write(dtype):
        return None
    return PlainArray(root, path, doc), default_codec(dtype)


def write_chunks(block: np.ndarray, start: Sequence[int], cshape: tuple[int, ...], fill: Any, base: Path,
                 codec: PlainCodec, key: Callable[[tuple[int, ...]], str] = _slash_key,
                 dtype: np.dtype | None = None, made: set[Path] | None = None,
                 stored: set[tuple[int, ...]] | None = None) -> int:
    """Encode and write the whole chunks of ``block`` (which begins at chunk-aligned ``start``)
    under ``base`` as zarr would: edge chunks padded to full size with the fill value, chunks
    that hold only the fill value not stored (zarr's ``write_empty_chunks=False``). Returns
    the number of chunk files written (as ``dtype``, default the block's). ``made``: folders
    known to exist (shared by the calls of one write: one mkdir per chunk row); ``stored``
    receives the index of every chunk written (the output's chunk map, without a walk)."""
    dtype = block.dtype if dtype is None else dtype
    made = set() if made is None else made
    written = 0
    for offs in itertools.product(*(range(0, n, c) for n, c in zip(block.shape, cshape))):
        piece = block[tuple(slice(o, o + c) for o, c in zip(offs, cshape))]
        if piece.shape != cshape:
            full = np.full(cshape, fill, dtype=dtype)
            full[tuple(slice(0, n) for n in piece.shape)] = piece
            piece = full
        piece = np.ascontiguousarray(piece, dtype=dtype)
        encoded, trailer = codec.encode(piece)
        # only a chunk that compressed to almost nothing can be all fill value: checking just
        # those spares a full compare pass over every other chunk
        if len(encoded) < piece.nbytes // 32 + 256 and np.all(piece == fill):
            continue
        index = tuple((s + o) // c for s, o, c in zip(start, offs, cshape))
        target = base / key(index)
        if target.parent not in made:  # one mkdir per chunk row, not per chunk
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        with open(target, "wb") as f:
            f.write(encoded)
            f.write(trailer)
        if stored is not None:
            stored.add(index)
        written += 1
    return written


def block_regions(shape: Sequence[int], chunks: Sequence[int], itemsize: int, budget: int = BLOCK_BYTES,
                  per_chunk: bool = False) -> list[tuple[slice, ...]]:
    """The blocks a volume is written in, in array order: single chunks (``per_chunk``, for
    computed sources), or rows of whole chunks along the last axis of at most ``budget``
    bytes (for sources read from files: long runs of each row)."""
    block = [int(c) for c in chunks]
    if not per_chunk:
        per = int(np.prod(block[:-1])) * itemsize
        block[-1] = min(int(shape[-1]), max(block[-1], budget // max(1, per) // chunks[-1] * chunks[-1]))
    starts = [range(0, int(n), b) for n, b in zip(shape, block)]
    return [tuple(slice(s, min(s + b, int(n))) for s, b, n in zip(st, block, shape))
            for st in itertools.product(*starts)]


def direct_workers() -> int:
    """Threads for a direct write: what the active dask configuration asks for (``num_workers``,
    one for the synchronous scheduler, e.g. ``--scheduler sync``), else the usable cores."""
    chosen = sys.modules.get("voxelstream.scheduler")
    if chosen is not None and chosen.local_threads() == 1:  # --scheduler sync, dask never imported
        return 1
    dask = sys.modules.get("dask")
    if dask is not None:
        n = dask.config.get("num_workers", None)
        if n:
            return max(1, int(n))
        sched = dask.config.get("scheduler", None)
        name = getattr(sched, "__name__", sched)
        if name in ("get_sync", "sync", "synchronous", "single-threaded"):
            return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: Bytes of blocks written between two returns of freed heap memory to the system.
TRIM_EVERY = 128 * 2**20


def _heap_trimmer() -> Callable[[], Any] | None:
    """glibc's ``malloc_trim(0)``, or None elsewhere. Why: after the first frees glibc serves
    chunk-sized buffers from its heap and keeps what is freed there resident, so a long
    write's peak RSS grew with the volume (a 1.2 GB preprocess 220-280 MB vs 160 MB for 0.16 GB);
    trimming every :data:`TRIM_EVERY` bytes keeps it near flat (every 64 MiB: 157-162 MB, for
    about 4 % more CPU, within the noise of the measurement; every 256 MiB: 171-187 MB)."""
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    return lambda: trim(0)


def _progress_hooks() -> tuple[list[Any], list[Any]]:
    """The active dask callbacks' start-state and post-task hooks (the progress bars count
    direct blocks as tasks), without importing dask when nothing imported it."""
    if "dask.callbacks" not in sys.modules:
        return [], []
    from dask.callbacks import Callback

    active = list(Callback.active)
    return [c[1] for c in active if c[1]], [c[3] for c in active if c[3]]


def write_source(read: Callable[[tuple[slice, ...]], np.ndarray], shape: Sequence[int], dtype: np.dtype,
                 chunks: Sequence[int], base: Path, *, workers: int | None = None,
                 budget: int = BLOCK_BYTES, per_chunk: bool = False,
                 stored: set[tuple[int, ...]] | None = None) -> int:
    """Write the array ``read`` computes (``read(region)`` -> numpy, called from ``workers``
    threads) as chunk files under ``base`` (the array's folder; its document is written
    separately). Blocks are started in array order and at most ``2 * workers`` are pending,
    so memory is bounded by a few blocks whatever the volume. The first error stops the
    write and is raised. Returns the number of chunk files written; ``stored`` receives
    their chunk indices."""
    dtype = np.dtype(dtype)
    cshape = tuple(int(c) for c in chunks)
    codec = default_codec(dtype)
    regions = block_regions(shape, cshape, dtype.itemsize, budget, per_chunk)
    workers = workers or direct_workers()
    starts, posts = _progress_hooks()
    made: set[Path] = set()  # set.add is atomic: threads share it
    state = {"ready": regions, "waiting": [], "running": [], "finished": []}
    for hook in starts:
        hook(None, state)
    trim = _heap_trimmer() if int(np.prod(shape)) * dtype.itemsize > TRIM_EVERY else None
    since_trim = [0]
    lock = threading.Lock()

    def one(region: tuple[slice, ...]) -> int:
        block = np.asarray(read(region), dtype=dtype)
        if block.shape != tuple(r.stop - r.start for r in region):
            raise ValueError(f"a block source returned shape {block.shape} for region {region}")
        n = write_chunks(block, [r.start for r in region], cshape, fill_value(dtype), base, codec, made=made,
                         stored=stored)
        for hook in posts:
            hook(None, None, None, state, 0)
        if trim is not None:
            with lock:
                since_trim[0] += block.nbytes
                due = since_trim[0] >= TRIM_EVERY
                if due:
                    since_trim[0] = 0
            if due:
                trim()
        return n

    if workers == 1:
        return sum(one(r) for r in regions)
    total = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="voxelstream-write") as pool:
        pending: set[Future] = set()
        todo: Iterator[tuple[slice, ...]] = iter(regions)
        try:
            for region in todo:
                pending.add(pool.submit(one, region))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    total += sum(f.result() for f in done)
            for f in pending:
                total += f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return total


