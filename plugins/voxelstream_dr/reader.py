"""The ``photo`` reader: colour photographs (``.jpeg``, ``.jpg``, ``.png``) as ``(3, H, W)``
uint8 volumes in pixel units, modality ``OP`` (DICOM's code for ophthalmic photography).

Discovery reads headers only (Pillow's ``Image.open`` parses the header, and the last bytes
of the file show whether it was cut short); the pixels are decoded by one dask task per
photograph, so an ingest holds one decoded photograph per worker thread at a time. Grey,
palette, CMYK and RGBA files are converted to RGB and the volume's ``meta["note"]`` says so.
The volume id is the file name without its extension (``10_left.jpeg`` -> ``10_left``), as in
Kaggle's ``trainLabels.csv``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxelstream.errors import ReadError
from voxelstream.specs import ReaderSpec, Source, SourceError

from .options import MODALITY

__all__ = ["EXTENSIONS", "PhotoError", "PhotoInfo", "claims", "inspect_photo", "decode_photo", "decode_photo_once", "open_photo",
           "discover", "READER"]

EXTENSIONS = (".jpeg", ".jpg", ".png")
FORMATS = ("JPEG", "PNG")  # what Pillow names the formats this reader takes
# the markers a complete file ends with; a little slack for padding written after them
_TAILS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_TAIL_SLACK = 4096


class PhotoError(ReadError):
    """``path`` cannot be read as a photograph; ``reason`` says why and what to do."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self):  # raised inside dask tasks: must survive the trip back from a worker
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class PhotoInfo:
    """Header facts: format, size ``(H, W)``, Pillow mode, and the conversion note."""

    path: str
    format: str
    height: int
    width: int
    mode: str
    note: str = ""


def claims(path: Path) -> bool:
    """Files named ``*.jpeg``, ``*.jpg`` or ``*.png`` (any case)."""
    return path.suffix.lower() in EXTENSIONS and len(path.name) > len(path.suffix)


def _conversion_note(mode: str) -> str:
    if mode == "RGB":
        return ""
    what = {"L": "grey", "LA": "grey with alpha", "P": "palette", "PA": "palette with alpha", "RGBA": "RGBA",
            "CMYK": "CMYK", "I;16": "16-bit grey", "I": "32-bit grey", "1": "black-and-white"}.get(mode, mode)
    return f"converted from {what} ({mode}) to RGB" + ("; alpha dropped" if "A" in mode else "")


def inspect_photo(path: str | os.PathLike[str]) -> PhotoInfo:
    """Header-only check: a JPEG or PNG Pillow can open, ending as a complete file does.
    Raises :class:`PhotoError`."""
    from PIL import Image, UnidentifiedImageError

    p = str(path)
    try:
        with Image.open(p) as im:
            fmt, (w, h), mode = im.format, im.size, im.mode
    except UnidentifiedImageError:
        raise PhotoError(p, "not a JPEG or PNG image (unrecognised content); remove it or fix its name") from None
    except OSError as exc:
        raise PhotoError(p, f"cannot read ({exc.strerror or exc}); check the file") from None
    if fmt not in FORMATS:
        raise PhotoError(p, f"a {fmt} image named like a JPEG/PNG; convert it or fix its name")
    size = os.path.getsize(p)
    with open(p, "rb") as fh:
        fh.seek(max(0, size - _TAIL_SLACK))
        tail = fh.read()
    if _TAILS[fmt] not in tail:
        raise PhotoError(p, f"the {fmt} file is truncated (no end marker; {size} bytes); copy it again")
    return PhotoInfo(p, fmt, int(h), int(w), mode, _conversion_note(mode))


def decode_photo(path: str, draft: tuple[int, int] | None = None) -> np.ndarray:
    """The pixels of ``path`` as ``(H, W, 3)`` uint8 RGB. ``draft=(h, w)`` lets
    the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding, to no less than that size.

    The last two photographs decoded in this process are kept (keyed by path, size and
    modification time): preprocessing straight from a file measures the fundus in one
    compute and crops it in the next, and would otherwise decode the photograph twice."""
    st = os.stat(path)
    # a copy: whoever computes a volume owns its array (writable), the cached one stays intact
    return _decode_cached(path, draft, st.st_size, st.st_mtime_ns).copy()


@functools.lru_cache(maxsize=2)
def _decode_cached(path: str, draft: tuple[int, int] | None, size: int, mtime_ns: int) -> np.ndarray:
    return decode_photo_once(path, draft)


def decode_photo_once(path: str, draft: tuple[int, int] | None = None) -> np.ndarray:
    """:func:`decode_photo` without the cache and its copy: a read-only ``(H, W, 3)`` array
    (for a caller that decodes each photograph once)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if draft is not None and im.format == "JPEG":
                im.draft("RGB", (draft[1], draft[0]))
            im.load()
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            pixels = np.array(rgb, dtype=np.uint8)
            pixels.setflags(write=False)  # shared by the cache: no task may change it
            return pixels
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow reports broken data as these
        raise PhotoError(path, f"cannot decode ({exc}); the file is damaged, copy it again") from None


def _photo_meta(info: PhotoInfo, keep_phi: bool) -> dict[str, Any]:
    from voxelstream.privacy import source_origin

    meta: dict[str, Any] = {"modality": MODALITY, "format": info.format, "reader": "photo",
                            "origin": source_origin("photo", info.path, keep_phi=keep_phi)}
    if info.note:
        meta["note"] = info.note
    return meta


def open_photo(path: str, keep_phi: bool = False) -> Any:
    """The photograph at ``path`` as a lazy ``(3, H, W)`` Volume (one decode task)."""
    import dask
    import dask.array as da

    from voxelstream.volume import Volume

    info = inspect_photo(path)
    st = os.stat(path)
    token = dask.base.tokenize(os.path.abspath(path), st.st_size, st.st_mtime_ns)
    pixels = dask.delayed(decode_photo, pure=True, name=f"decode-photo-{token}")(path)
    data = da.from_delayed(pixels, shape=(info.height, info.width, 3), dtype=np.uint8)
    return Volume.from_array(data, channel_axis=-1, units="pixel", meta=_photo_meta(info, keep_phi))


def discover(files: Sequence[Path], options: Any = None) -> Iterator[Source | SourceError]:
    """One :class:`Source` per readable photograph, one :class:`SourceError` per bad file."""
    keep_phi = bool(getattr(options, "keep_phi", False))
    for f in files:
        path = str(f)
        try:
            info = inspect_photo(path)
        except PhotoError as exc:
            yield SourceError(path, exc.reason)
            continue
        yield Source(
            volume_id=Path(path).name[: -len(Path(path).suffix)],
            location=path,
            open=functools.partial(open_photo, path, keep_phi),
            reader="photo",
            description=f"{info.format} {info.width}x{info.height} {info.mode}" + (f" ({info.note})" if info.note else ""),
        )


READER = ReaderSpec(
    name="photo",
    claims=claims,
    discover=discover,
    description="colour photographs (.jpeg/.jpg/.png) as (3, H, W) uint8 in pixels, modality OP; decoded lazily",
)
