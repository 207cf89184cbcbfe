"""The :class:`Store`: a voxelstream dataset in a Zarr v3 directory, one OME-Zarr image group
per volume and output. Its parts: ``layout`` (paths, metadata documents), ``planning`` (how
a write is cut into tasks), ``chunkio`` (direct chunk reads and writes with checksums),
``locks`` (per-output writer locks), ``reading`` (the read API plugins use)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..constants import DEFAULT_CHUNK
from ..errors import StoreError
from ..volume import Volume
from . import chunkmap, layout, ome
from .ids import safe_id
from .layout import jsonable
from .locks import output_lock, try_lock

if TYPE_CHECKING:  # pragma: no cover
    from .reading import OutputReader

# zarr, numcodecs and dask are imported by the methods that read or write chunks: opening a
# store and listing its volumes (the fixed cost of every store command) reads JSON only
_LAZY = {"default_chunks": ".planning", "default_compressor": ".planning", "ChunkError": ".chunkio",
         "OutputReader": ".reading"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

def write_chunk(block: np.ndarray, root: str, path: str, token: str, block_info: Any = None) -> np.ndarray:
    """:func:`.chunkio.write_chunk` (zarr, numcodecs), imported on the first chunk written; a
    module-level name dask pickles by reference and tests can replace. Same signature: dask
    passes ``block_info`` only to functions that declare it."""
    from .chunkio import write_chunk as write

    return write(block, root, path, token, block_info=block_info)


def _reader_array(r: OutputReader) -> Any:
    """The stored output ``r`` as a dask array, one task per chunk."""
    import dask.array as da

    return da.from_array(r, chunks=r.chunks, name=f"zarr-{r.path}-{r.token}", asarray=False, fancy=False)


def _compute(section: Any) -> Any:
    import dask

    return dask.compute(section)[0]


def _direct_dtype(dtype: np.dtype) -> bool:
    from .direct import can_write

    return can_write(dtype)


__all__ = ["Store", "open_store", "DEFAULT_CHUNK", "default_chunks", "default_compressor", "jsonable",
           "ChunkError", "OutputReader"]

PHI_KEY = "phi"  # readers put identifying attributes here; dropped on write unless kept


class Store:
    """A voxelstream dataset store (use :func:`open_store`). Opening and reading never
    write; writers build each output under a staging name and move it into place complete,
    holding the output's lock (see :meth:`output_lock`)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __reduce__(self) -> tuple[Any, ...]:  # travels to dask.distributed workers as its path
        return (Store, (str(self.path),))

    # -- naming ------------------------------------------------------------------------
    @staticmethod
    def image_path(volume_id: str, name: str = "image") -> str:
        """The output's group path inside the store (for tools outside voxelstream, e.g.
        ome-zarr-py; voxelstream code reads through :meth:`open`, :meth:`array`,
        :meth:`read_region` and :meth:`reader`)."""
        return layout.output_rel(volume_id, name)

    def _label(self, volume_id: str, name: str) -> str:
        return f"{volume_id}: output {name!r}"

    # -- listing -----------------------------------------------------------------------
    def _volume_dirs(self) -> list[Path]:
        try:
            return sorted(p for p in (self.path / "volumes").iterdir() if p.is_dir() and not p.name.startswith("."))
        except FileNotFoundError:
            return []

    def volume_ids(self, name: str | None = None, *, damaged: bool = False) -> list[str]:
        """Ids of the volumes in the store (original ids, sorted). With ``name``, only those
        whose ``name`` output is complete. Volumes whose metadata is damaged are left out
        unless ``damaged`` (then listed under their folder name, so a command reports them)."""
        ids = []
        for d in self._volume_dirs():
            try:
                doc = layout.read_doc(d / "zarr.json", f"volume folder {d.name}")
                if doc is None:
                    raise StoreError(f"{d.name}: its volume group document (zarr.json) is missing")
                vid = ((doc.get("attributes") or {}).get("voxelstream") or {}).get("volume_id", d.name)
                if name is not None and not self.is_complete(vid, name):
                    continue
            except StoreError:
                if damaged:
                    ids.append(d.name)
                continue
            ids.append(vid)
        return sorted(ids)

    def names(self, volume_id: str) -> list[str]:
        """Output names stored for ``volume_id`` (complete or not)."""
        d = self.path / layout.volume_rel(volume_id)
        try:
            return sorted(p.name for p in d.iterdir() if (p / "zarr.json").exists())
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _check_volume_group(self, volume_id: str) -> None:
        d = self.path / layout.volume_rel(volume_id)
        if d.is_dir():
            doc = layout.read_doc(d / "zarr.json", f"{volume_id}")
            if doc is None:
                raise StoreError(f"{volume_id}: its volume group document (volumes/{d.name}/zarr.json) is missing; "
                                 "run 'voxelstream verify' (re-ingest the volume to rebuild it)")

    def output_attrs(self, volume_id: str, name: str = "image") -> dict[str, Any]:
        """The ``voxelstream`` attributes of one output (``{}`` if absent); a damaged
        metadata document raises :class:`StoreError` naming the volume and output."""
        self._check_volume_group(volume_id)
        doc = layout.read_doc(self.path / layout.output_rel(volume_id, name) / "zarr.json",
                              self._label(volume_id, name))
        if doc is None:
            return {}
        a = (doc.get("attributes") or {}).get("voxelstream")
        if not isinstance(a, dict):
            raise StoreError(f"{self._label(volume_id, name)}: its metadata has no 'voxelstream' attributes (damaged?)")
        if not isinstance(a.get("complete", False), bool):
            raise StoreError(f"{self._label(volume_id, name)}: its completion marker is {a.get('complete')!r}, "
                             "not true/false (damaged); run 'voxelstream verify --repair'")
        return a

    attrs = output_attrs  # the name plugins have used

    def is_complete(self, volume_id: str, name: str = "image", params: Mapping[str, Any] | None = None,
                    *, fingerprint: Mapping[str, Any] | None = None,
                    attrs: Mapping[str, Any] | None = None) -> bool:
        """True when the output was fully written (and, when given, with these ``params``
        and made from inputs with this ``fingerprint``). ``attrs``: as for
        :meth:`completion_token`."""
        a = self.output_attrs(volume_id, name) if attrs is None else attrs
        if a.get("complete") is not True:
            return False
        if params is not None and a.get("params") != jsonable(params):
            return False
        return fingerprint is None or a.get("fingerprint", {}) == jsonable(fingerprint)

    def completion_token(self, volume_id: str, name: str = "image", *,
                         attrs: Mapping[str, Any] | None = None) -> str:
        """The token of the complete ``name`` output (new for every write): what outputs
        made from it record. Raises :class:`StoreError` when it is missing or incomplete.
        ``attrs``: its :meth:`output_attrs`, when the caller just read them (not read again)."""
        a = self.output_attrs(volume_id, name) if attrs is None else attrs
        if not a:
            have = ", ".join(self.names(volume_id)) or "nothing"
            raise StoreError(f"{volume_id}: no {name!r} output (it has: {have}); run the command that makes it")
        if a.get("complete") is not True:
            raise StoreError(f"{volume_id}: output {name!r} is incomplete (an interrupted or damaged run); "
                             "run the command that makes it again")
        return str(a.get("token", ""))

    # -- reading -----------------------------------------------------------------------
    def reader(self, volume_id: str, name: str = "image", *, attrs: Mapping[str, Any] | None = None) -> OutputReader:
        """A small picklable handle on a complete output for dask tasks: ``.shape``,
        ``.dtype``, ``.chunks`` (channel axis first) and ``[slices]`` -> numpy, reading only
        the chunks touched (verified by their checksums). Each process opens the array once.
        ``attrs``: as for :meth:`completion_token` (one read of the document per open: a
        small volume's run is mostly such reads)."""
        from .reading import OutputReader

        a = self.output_attrs(volume_id, name) if attrs is None else attrs
        token = self.completion_token(volume_id, name, attrs=a)
        return OutputReader.create(str(self.path), layout.output_rel(volume_id, name) + "/" + layout.ARRAY,
                                   token, self._label(volume_id, name), len(a.get("affine", [[0] * 4])) - 1,
                                   a.get("shape"), stored=str(a.get("stored_chunks") or ""))

    def array(self, volume_id: str, name: str = "image") -> Any:
        """The complete output as a lazy dask array ``(C, *spatial)``, one dask chunk per
        Zarr chunk."""
        return _reader_array(self.reader(volume_id, name))

    def read_region(self, volume_id: str, name: str, region: Sequence[slice] | tuple[slice, ...]) -> np.ndarray:
        """The numpy array of ``region`` (a tuple of slices, channel axis included) of a
        complete output; only the chunks it touches are read."""
        return np.asarray(self.reader(volume_id, name)[tuple(region)])

    def open(self, volume_id: str, name: str = "image") -> Volume:
        """The stored output as a lazy :class:`Volume` (one dask chunk per Zarr chunk)."""
        import functools

        from ..lazy import BlockSource

        a = self.output_attrs(volume_id, name)
        r = self.reader(volume_id, name, attrs=a)
        # regions are read straight from the chunks (direct writes, stages with sources); the
        # dask array (one task per chunk) is built only when a stage asks for it
        source = BlockSource(r.shape, r.dtype, r.__getitem__, functools.partial(_reader_array, r), chunks=r.chunks)
        return Volume(source, np.asarray(a["affine"]), a.get("meta", {}), units=a.get("units"))

    # -- writing -----------------------------------------------------------------------
    @contextlib.contextmanager
    def output_lock(self, volume_id: str, name: str, *, quiet: bool = False) -> Iterator[bool]:
        """Hold the output's writer lock (across processes; released if the holder dies);
        yields True when another writer had to be waited for (then re-check whether the
        work is still needed)."""
        def note() -> None:
            if not quiet:
                print(f"note: {volume_id}: waiting for another process writing {name!r}", file=sys.stderr, flush=True)

        self.check_writable()
        with output_lock(self.path / layout.lock_rel(volume_id, name), note) as waited:
            yield waited

    def check_writable(self) -> None:
        """Raise :class:`StoreError` (one line) when the store cannot be written."""
        if not os.access(self.path, os.W_OK):
            raise StoreError(f"{self.path}: the store is read-only; nothing was written")

    def _ensure_volume_group(self, volume_id: str) -> None:
        vdir = self.path / layout.volume_rel(volume_id)
        doc_path = vdir / "zarr.json"
        group = layout.group_doc({"voxelstream": {"volume_id": volume_id}})
        if not vdir.exists():
            # the folder appears with its document in one rename: another process must never
            # see the folder without it (it would report the volume as damaged)
            tmp = vdir.with_name(f".{vdir.name}.{uuid.uuid4().hex}.tmp")
            layout.write_doc(tmp / "zarr.json", group)
            try:
                os.rename(tmp, vdir)
            except OSError:  # another process made it first: check its id below
                shutil.rmtree(tmp, ignore_errors=True)
        doc = layout.read_doc(doc_path, volume_id) if doc_path.exists() else None
        known = ((doc or {}).get("attributes", {}).get("voxelstream") or {}).get("volume_id")
        if known is not None and known != volume_id:
            raise StoreError(f"{self.path}: volume ids {known!r} and {volume_id!r} map to the same store path; "
                             "rename one of the inputs")
        if known is None:  # a folder without its document (damaged): written again
            layout.write_doc(doc_path, group)

    def _clear_staging(self, volume_id: str, name: str, keep: str = "") -> None:
        """Remove what dead writers of this output left under .staging (we hold its lock):
        ``<name>-<token>`` folders and their ``.old`` copies, never another output's (output
        ``a``'s lock does not cover ``a-b``'s ``a-b-<token>``)."""
        d = self.path / layout.staging_dir_rel(volume_id)
        try:
            for p in d.iterdir():
                if layout.is_staged(name, p.name) and p.name != keep:
                    shutil.rmtree(p, ignore_errors=True)
        except FileNotFoundError:
            pass

    def sweep(self, volume_id: str, name: str) -> None:
        """Remove what dead writers of this output left under ``.staging`` (only when no
        live writer holds its lock; cheap when there is nothing)."""
        d = self.path / layout.staging_dir_rel(volume_id)
        if not d.is_dir():
            return
        with try_lock(self.path / layout.lock_rel(volume_id, name)) as mine:
            if mine:
                self._clear_staging(volume_id, name)

    def write(
        self,
        volume: Volume,
        volume_id: str,
        name: str = "image",
        *,
        chunks: int | Sequence[int] | None = None,
        params: Mapping[str, Any] | None = None,
        fingerprint: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
        keep_phi: bool = False,
        compute: bool = True,
        before_commit: Callable[[], None] | None = None,
    ) -> Any:
        """Stream ``volume`` into ``volumes/<volume_id>/<name>``.

        The output is built under ``.staging/`` and moved into place only once every chunk is
        written and it is marked complete, while holding the output's lock: readers see the
        old output or the new one, never a part. Every dask task writes a region of whole
        Zarr chunks (one writer per chunk), computed in sections front to back.
        ``params`` and ``fingerprint`` (what it was made from) decide later skips (see
        :meth:`is_complete`); ``before_commit`` may raise to abandon the write (inputs
        changed meanwhile). Identifying metadata (``meta["phi"]``) is dropped unless
        ``keep_phi``. With ``compute=False`` returns ``(delayed_write, finish)``: compute the
        first, then call ``finish()`` to commit.
        """
        if compute:
            # a volume computing its regions itself (a BlockSource) is written without dask
            direct = volume.source is not None and _direct_dtype(volume.dtype)
            with self.output_lock(volume_id, name):
                delayed, finish = self._stage(volume, volume_id, name, chunks, params, fingerprint, provenance,
                                              keep_phi, before_commit, direct=direct)
                for section in delayed:
                    if not (section() if direct else _compute(section)):  # pragma: no cover
                        raise StoreError(f"{self._label(volume_id, name)}: writing failed")
                finish()
            return None
        delayed, finish = self._stage(volume, volume_id, name, chunks, params, fingerprint, provenance,
                                      keep_phi, before_commit, whole=True)
        return delayed[0], finish

    def _stage(self, volume: Volume, volume_id: str, name: str, chunks: Any, params: Any, fingerprint: Any,
               provenance: Any, keep_phi: bool, before_commit: Callable[[], None] | None,
               whole: bool = False, direct: bool = False) -> tuple[list[Any], Callable[[], None]]:
        from .planning import chunk_shape

        self.check_writable()
        final_rel = layout.output_rel(volume_id, name)  # also checks the ids
        zchunks = chunk_shape(chunks, volume.shape, volume.dtype.itemsize)
        meta = dict(volume.meta)
        if not keep_phi:
            meta.pop(PHI_KEY, None)
        meta.setdefault("id", volume_id)
        token = layout.new_token()
        self._ensure_volume_group(volume_id)
        stage_rel = layout.staging_rel(volume_id, name, token)
        if not whole:  # we hold the output's lock: what is staged for it belongs to dead writers
            self._clear_staging(volume_id, name)
        attrs = {
            "volume_id": volume_id,
            "name": name,
            "complete": False,
            "token": token,
            "shape": list(volume.shape),
            "affine": volume.affine.tolist(),
            "spacing": list(volume.spacing),
            "units": list(volume.units),
            "axes": ["c", *volume.axes],
            "meta": meta,
            "params": jsonable(params or {}),
            "fingerprint": jsonable(fingerprint or {}),
            "provenance": jsonable({"history": meta.get("history", []), **(provenance or {})}),
        }
        group = {"ome": ome.multiscales(name, volume.axes, volume.units, volume.spacing,
                                        ome.origin_array_order(volume.affine)),
                 "voxelstream": attrs}
        # the group document is written once, complete, by the finisher: nothing reads a
        # staged folder before it is moved into place
        stage_dir = self.path / stage_rel
        if direct:
            stored: set[tuple[int, ...]] = set()
            return self._stage_direct(volume, stage_dir, zchunks, stored), self._finisher(
                volume_id, name, attrs, group, stage_dir, final_rel, token, before_commit,
                chunk_map=lambda: chunkmap.from_keys(stored, chunkmap.grid(volume.shape, zchunks)))
        import zarr
        from zarr.storage import LocalStore

        from .planning import all_in_order, default_codecs, fused, sections, whole_chunk_blocks, write_blocks

        data = volume.data
        try:
            zarr.create_array(
                store=LocalStore(str(stage_dir)),
                name=layout.ARRAY,
                shape=volume.shape,
                chunks=zchunks,
                dtype=data.dtype,
                compressors=default_codecs(),
                fill_value=0,
                overwrite=True,
                dimension_names=["c", *volume.axes],
            )
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write {stage_rel} ({exc.strerror or exc})") from None
        if not whole_chunk_blocks(data.chunks, zchunks, data.dtype.itemsize):
            data = data.rechunk(write_blocks(zchunks, volume.shape, data.dtype.itemsize))
        writes = data.map_blocks(write_chunk, str(self.path), f"{stage_rel}/{layout.ARRAY}", token,
                                 dtype=bool, chunks=(1,) * data.ndim, name=f"write-{stage_rel}")
        finish = self._finisher(volume_id, name, attrs, group, stage_dir, final_rel, token, before_commit)
        parts = [writes] if whole else sections(writes)
        return [all_in_order(fused(p)) for p in parts], finish

    def _stage_direct(self, volume: Volume, stage_dir: Path, zchunks: tuple[int, ...],
                      stored: set[tuple[int, ...]]) -> list[Callable[[], bool]]:
        """The write of a volume with a BlockSource: its array document, then one call writing
        every chunk from the source on a thread pool (see :mod:`.direct`); ``stored`` receives
        the index of every chunk written."""
        from .direct import array_doc, write_source

        array_dir = stage_dir / layout.ARRAY
        layout.write_doc(array_dir / "zarr.json", array_doc(volume.shape, zchunks, volume.dtype, ["c", *volume.axes]),
                         atomic=False)

        def run() -> bool:
            write_source(volume.source.read, volume.shape, volume.dtype, zchunks, array_dir,
                         per_chunk=volume.source.per_chunk, stored=stored)
            return True

        return [run]

    def _finisher(self, volume_id: str, name: str, attrs: dict[str, Any], group: dict[str, Any], stage_dir: Path,
                  final_rel: str, token: str, before_commit: Callable[[], None] | None,
                  chunk_map: Callable[[], dict[str, Any]] | None = None) -> Callable[[], None]:
        """Marks the staged output complete and moves it into place (holding its lock).
        ``chunk_map``: the chunk map from what the writer recorded (default: walk the array's
        folders, :func:`.chunkmap.record`)."""

        def finish() -> None:
            with self.output_lock(volume_id, name, quiet=True):
                attrs["complete"] = True
                attrs["written"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
                # which chunks hold a file: a deleted one would otherwise read as fill value
                # without a word (chunks of fill value only are never stored)
                if not (stage_dir / layout.ARRAY / "zarr.json").is_file():  # never complete without its array
                    raise StoreError(f"{self._label(volume_id, name)}: its staged array is gone (removed by another "
                                     "process?); nothing was committed, run the command again")
                attrs.update(chunk_map() if chunk_map is not None else chunkmap.record(stage_dir / layout.ARRAY))
                layout.write_doc(stage_dir / "zarr.json", layout.group_doc(group), atomic=False)
                if before_commit is not None:
                    try:
                        before_commit()
                    except BaseException:
                        shutil.rmtree(stage_dir, ignore_errors=True)
                        raise
                self._commit(stage_dir, self.path / final_rel, token)

        return finish

    def _commit(self, staged: Path, final: Path, token: str) -> None:
        """Move the staged output into place (the old one, if any, out of the way first: it
        is deleted in the background, :mod:`.cleanup`)."""
        from .cleanup import remove_later

        old = staged.with_name(staged.name + layout.OLD_SUFFIX)
        replaced = False
        try:
            if final.exists():
                os.rename(final, old)
                replaced = True
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged, final)
        except OSError as exc:
            raise StoreError(f"{final}: cannot move the finished output into place ({exc.strerror or exc})") from None
        if replaced:
            remove_later(old)

    def rebuild_volume_group(self, folder: str) -> str | None:
        """Write again the missing or damaged document of the volume folder ``folder`` from
        the original id its outputs record (``verify --repair``); returns that id, or
        ``None`` when no readable output names it (then only re-ingesting helps)."""
        d = self.path / "volumes" / folder
        for out in sorted(p for p in d.iterdir() if p.is_dir()):
            try:
                doc = layout.read_doc(out / "zarr.json", folder) or {}
            except StoreError:
                continue
            vid = ((doc.get("attributes") or {}).get("voxelstream") or {}).get("volume_id")
            if isinstance(vid, str) and safe_id(vid) == folder:
                layout.write_doc(d / "zarr.json", layout.group_doc({"voxelstream": {"volume_id": vid}}))
                return vid
        return None

    def mark_incomplete(self, volume_id: str, name: str) -> None:
        """Mark an output incomplete so the next run rebuilds it (``verify --repair``)."""
        with self.output_lock(volume_id, name, quiet=True):
            doc_path = self.path / layout.output_rel(volume_id, name) / "zarr.json"
            try:
                doc = layout.read_doc(doc_path, self._label(volume_id, name))
            except StoreError:
                doc = None
            if doc is None:  # unreadable: the output goes (a rerun makes it again)
                shutil.rmtree(doc_path.parent, ignore_errors=True)
                return
            attrs = doc.setdefault("attributes", {})
            vs = attrs.get("voxelstream") if isinstance(attrs.get("voxelstream"), dict) else {}
            vs["complete"] = False
            attrs["voxelstream"] = vs
            layout.write_doc(doc_path, doc)

    def delete(self, volume_id: str, name: str) -> None:
        """Remove one output (e.g. to recompute it)."""
        with self.output_lock(volume_id, name, quiet=True):
            shutil.rmtree(self.path / layout.output_rel(volume_id, name), ignore_errors=True)

    def write_manifest(self, command: str, record: Mapping[str, Any]) -> Path:
        """Write ``runs/<timestamp>-<command>.json`` describing one run (to a temporary name,
        then renamed); returns its path. A read-only or full store is a :class:`StoreError`."""
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        out = self.path / "runs" / f"{stamp}-{safe_id(command)}.json"
        layout.write_doc(out, dict(record))
        return out

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, volumes={len(self.volume_ids())})"


def open_store(path: str | os.PathLike[str], create: bool = False) -> Store:
    """Open the voxelstream store at ``path`` (``create=True`` makes it if missing).

    Opening never writes to an existing store. A directory that is not a voxelstream store (an
    OME-Zarr from another tool, a Zarr v2 store, a bare array, other files) is a
    :class:`StoreError` and is left untouched."""
    p = Path(path)

    def existing() -> Store | None:
        if p.is_dir() and ((p / "zarr.json").exists() or (p / ".zgroup").exists() or (p / ".zarray").exists()):
            reason = layout.foreign_reason(p)
            if reason is not None:
                raise StoreError(f"{p}: {reason}")
            return Store(p)
        return None

    store = existing()
    if store is not None:
        return store
    if not create:
        raise StoreError(f"{p}: not a voxelstream store (no zarr.json); create one with 'voxelstream ingest'")
    if p.exists() and not p.is_dir():
        raise StoreError(f"{p}: exists and is not a folder; give a new or empty folder for the store")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{p}: cannot create the store ({exc.strerror or exc})") from None
    # several processes may create one store at once: temporary documents (hidden names) and a
    # root document written meanwhile by another creator are not "somebody else's files"
    others = [c.name for c in p.iterdir() if not c.name.startswith(".") and c.name != "zarr.json"]
    store = existing()
    if store is not None:
        return store
    if others:
        raise StoreError(f"{p}: exists and is not a voxelstream store (it holds {others[0]!r}...); "
                         "give a new or empty folder")
    layout.write_doc(p / "zarr.json", layout.group_doc({"voxelstream": {"kind": layout.STORE_KIND,
                                                                        "layout": layout.LAYOUT}}))
    return Store(p)
