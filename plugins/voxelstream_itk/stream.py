"""Byte ranges of a compressed file (gzip or zlib), decompressed about once per volume.

A compressed image (``.nii.gz``, a MetaImage ``.zraw``, a gzip NRRD) cannot be read at an
offset without inflating everything before it. Reading it slab by slab through SimpleITK
therefore inflated the stream from its start for every slab (k/2 full decompressions for k
slabs) and held SimpleITK's buffers. Here one :class:`Cursor` per file and process inflates
the stream forward, in bounded pieces, handing out the byte ranges the tasks ask for; it
keeps a snapshot of the decompressor (``zlib.Decompress.copy()``: a 32 kB window plus
state) every :data:`SNAPSHOT_EVERY` output bytes, so a range behind the cursor (tasks run
out of order on a thread pool) restarts from the nearest snapshot, not from the start.

Memory: the requested range, one inflate step (:data:`STEP` bytes of output at most, so a
decompression bomb never expands at once) and the snapshots (a few kB each).
"""

from __future__ import annotations

import bisect
import os
import threading
import zlib
from collections import OrderedDict

__all__ = ["Cursor", "read_range", "STEP", "SNAPSHOT_EVERY"]

STEP = 4 * 2**20  # output bytes per inflate call
SNAPSHOT_EVERY = 32 * 2**20
_OPEN_CURSORS = 4  # files kept open per process (LRU)


class Cursor:
    """Sequential inflater over one file with snapshots for going back.

    ``wbits``: 31 for gzip (multi-member streams are followed), 15 for zlib; ``start``: the
    file position where the compressed stream begins."""

    def __init__(self, path: str, wbits: int, start: int = 0) -> None:
        self.path = path
        self.wbits = wbits
        self.lock = threading.Lock()
        self.inflations = 0  # how many times the stream was (re)started from a position
        self._fh = open(path, "rb")
        # (output position, file position, decompressor state, input read from the file but not consumed)
        self._snaps: list[tuple[int, int, zlib._Decompress, bytes]] = []
        self._restart(0, start, zlib.decompressobj(wbits=wbits), b"")
        self._snaps.append((0, start, self._d.copy(), b""))

    def _restart(self, out_pos: int, in_pos: int, state: zlib._Decompress, pending: bytes) -> None:
        self.inflations += 1
        self._d = state
        self._pos = out_pos
        self._fh.seek(in_pos)
        self._in_pos = in_pos
        self._pending = pending  # input read but not yet consumed (unconsumed_tail / next member)

    def close(self) -> None:
        self._fh.close()

    def _inflate_step(self, limit: int) -> bytes:
        """Up to ``limit`` more output bytes (b"" at the end of the data)."""
        while True:
            if not self._pending:
                chunk = self._fh.read(1 << 20)
                self._in_pos += len(chunk)
                if not chunk:
                    return b""
                self._pending = chunk
            data = self._pending
            try:
                out = self._d.decompress(data, limit)
            except zlib.error as exc:
                raise OSError(f"damaged compressed data after {self._pos} bytes ({exc})") from None
            if self._d.eof:  # end of a gzip member: another may follow
                rest = self._d.unused_data
                self._d = zlib.decompressobj(wbits=self.wbits)
                self._pending = rest if rest.strip(b"\0") else b""  # zero padding after the last member
            else:
                self._pending = self._d.unconsumed_tail
            if out:
                return out

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes of the decompressed stream from ``offset`` (fewer at its end)."""
        with self.lock:
            if offset < self._pos:
                k = bisect.bisect_right([s[0] for s in self._snaps], offset) - 1
                out_pos, in_pos, state, pending = self._snaps[k]
                self._restart(out_pos, in_pos, state.copy(), pending)
            parts: list[bytes] = []
            need_end = offset + size
            while self._pos < need_end:
                want = min(STEP, need_end - self._pos) if self._pos >= offset else min(STEP, offset - self._pos)
                out = self._inflate_step(want)
                if not out:
                    break
                start = self._pos
                self._pos += len(out)
                if self._pos > offset:
                    parts.append(out[max(0, offset - start):])
                if self._pos - self._snaps[-1][0] >= SNAPSHOT_EVERY and self._pos > self._snaps[-1][0]:
                    self._snaps.append((self._pos, self._in_pos, self._d.copy(), self._pending))
            return b"".join(parts)[:size]


_cursors: OrderedDict[tuple[str, int, int, int, int], Cursor] = OrderedDict()
_cursors_lock = threading.Lock()


def cursor_for(path: str, wbits: int, start: int = 0) -> Cursor:
    """The process's cursor over ``path`` (a new one when the file changed)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, wbits, start)
    with _cursors_lock:
        cur = _cursors.get(key)
        if cur is None:
            cur = Cursor(path, wbits, start)
            _cursors[key] = cur
            while len(_cursors) > _OPEN_CURSORS:
                _cursors.popitem(last=False)[1].close()
        _cursors.move_to_end(key)
        return cur


def read_range(path: str, compression: str, offset: int, size: int, start: int = 0) -> bytes:
    """``size`` decompressed bytes from ``offset`` of the stream starting at file position
    ``start`` of ``path`` (``compression``: ``gzip`` or ``zlib``)."""
    return cursor_for(path, 31 if compression == "gzip" else 15, start).read(offset, size)
