"""Checking a store: every metadata document and every chunk of every output."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import StoreError
from . import layout
from .chunkio import ChunkReader
from .reading import _source

__all__ = ["Damage", "verify_store"]


@dataclass(frozen=True)
class Damage:
    """One damaged output (``name`` empty when the volume's own document is damaged)."""

    volume_id: str
    name: str
    reason: str

    def line(self) -> str:
        what = f"{self.volume_id}/{self.name}" if self.name else self.volume_id
        return f"damaged: {what}: {self.reason}"


def _check_output(store, vid: str, name: str) -> tuple[int, Damage | None]:
    try:
        a = store.output_attrs(vid, name)
        if not a:
            return 0, Damage(vid, name, "its metadata document (zarr.json) is missing")
        if a.get("complete") is not True:
            return 0, None  # incomplete: a rerun makes it; nothing claims it is good
        r = store.reader(vid, name)
        src = _source(r.root, r.path, r.token, r.label, r.stored)
        if not isinstance(src, ChunkReader):
            src[...]  # not our layout: zarr reads (and checks) it all
            return 0, None
        n, problems = src.verify()
    except StoreError as exc:
        return 0, Damage(vid, name, _short(str(exc), vid, name))
    except Exception as exc:  # zarr raising on a broken array document
        return 0, Damage(vid, name, f"unreadable ({type(exc).__name__}: {exc})")
    expected = a.get("chunk_files")
    if src.stored is None and isinstance(expected, int) and n < expected:  # with a map: each missing one named
        problems.insert(0, f"{expected - n} of its {expected} chunk files are missing (deleted?)")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return n, Damage(vid, name, _short(problems[0], vid, name) + more)
    return n, None


def _short(msg: str, vid: str, name: str) -> str:
    prefix = f"{vid}: output {name!r}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def verify_store(store, *, threads: int = 4) -> Iterator[tuple[str, str, int, Damage | None]]:
    """Yield ``(volume_id, output, chunks checked, damage or None)`` for every output of every
    volume, and ``(folder, "", 0, damage)`` for a volume whose own document is damaged."""
    ids = store.volume_ids(damaged=True)
    work = []
    for vid in ids:
        try:
            store._check_volume_group(vid)
            d = store.path / layout.volume_rel(vid) / "zarr.json"
            layout.read_doc(d, vid)
        except StoreError as exc:
            yield vid, "", 0, Damage(vid, "", str(exc).split(": ", 1)[-1])
            continue
        folder = store.path / layout.volume_rel(vid)
        work.extend((vid, p.name) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith("."))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for (vid, name), (n, dmg) in zip(work, pool.map(lambda w: _check_output(store, *w), work)):
            yield vid, name, n, dmg
