"""Header-only look at an image file through SimpleITK (no voxel data is read)."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImageFileError
from .naming import format_of

__all__ = ["ImageInfo", "read_info", "sitk_error_line", "numpy_dtype"]


@dataclass(frozen=True)
class ImageInfo:
    """What SimpleITK's header read says about one file, as plain data (ITK axis order)."""

    path: str
    format: str
    size_xyz: tuple[int, ...]
    spacing_xyz: tuple[float, ...]
    origin_xyz: tuple[float, ...]
    direction: tuple[float, ...]
    dtype: str  # numpy dtype name of one component, native byte order
    components: int
    metadata: tuple[tuple[str, str], ...]

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(reversed(self.size_xyz))  # type: ignore[return-value]

    @property
    def voxel_bytes(self) -> int:
        return np.dtype(self.dtype).itemsize * self.components

    @property
    def data_bytes(self) -> int:
        """Bytes of voxel data the header promises (uncompressed)."""
        return int(np.prod(self.size_xyz, dtype=np.int64)) * self.voxel_bytes

    def meta(self, key: str, default: str = "") -> str:
        return dict(self.metadata).get(key, default)


_quiet_lock = threading.Lock()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 (ITK's MetaIO prints "MetaImage:
    Read: Cannot parse file" straight to ``std::cerr``) to nowhere for the duration: the
    reader reports the failure itself, as one line. Only around header reads, which are
    quick; Python-level writes to ``sys.stderr`` made meanwhile are flushed first."""
    with _quiet_lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable fd 2 (embedded interpreter): nothing to hide
            yield
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def sitk_error_line(exc: BaseException) -> str:
    """SimpleITK's message without its source-file preamble: the last non-empty line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    line = lines[-1] if lines else type(exc).__name__
    return line.removeprefix("sitk::ERROR: ").removeprefix("ITK ERROR: ")


@functools.lru_cache(maxsize=None)
def numpy_dtype(pixel_id: int, components: int) -> str:
    """numpy dtype of one component for a SimpleITK pixel id (asked of SimpleITK itself on a
    one-voxel image, so no hand-written table can drift from it)."""
    import SimpleITK as sitk  # imported when used: 0.2 s of every CLI start otherwise

    img = sitk.Image([1, 1], pixel_id, components) if components > 1 else sitk.Image([1, 1], pixel_id)
    return sitk.GetArrayViewFromImage(img).dtype.name


def read_info(path: str | Path) -> ImageInfo:
    """Read the header of ``path``; raises :class:`ImageFileError` (one line) if it cannot be read
    or does not describe a 3-D volume."""
    from .gate import check_header

    p = str(path)
    check_header(p)  # SimpleITK crashes the process on some hostile headers: never hand it one
    if format_of(p) == "MetaImage":
        from .metaimage import plain_info

        info = plain_info(p)
        if info is not None:  # a plain header: its text says all SimpleITK would
            return info
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(p)
    try:
        with quiet_native_stderr():
            reader.ReadImageInformation()
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ImageFileError(
            p,
            f"not a readable {format_of(p)} file: SimpleITK cannot read its header "
            f"({sitk_error_line(exc)}); check the file and its name's extension"
        ) from None
    size = tuple(int(s) for s in reader.GetSize())
    if len(size) != 3:
        raise ImageFileError(
            p,
            f"a {len(size)}-D image (size {size}); the itk reader handles 3-D volumes only, "
            "convert it to a 3-D volume first"
        )
    if min(size) < 1:
        raise ImageFileError(p, f"the header gives an empty image (size {size}); re-export the file")
    comps = int(reader.GetNumberOfComponents())
    try:
        dtype = numpy_dtype(reader.GetPixelID(), comps)
    except RuntimeError:
        raise ImageFileError(
            p, f"pixel type {sitk.GetPixelIDValueAsString(reader.GetPixelID())} is not supported; convert it to a scalar type"
        ) from None
    spacing = tuple(float(v) for v in reader.GetSpacing())
    direction = np.asarray(reader.GetDirection(), dtype=float)
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise ImageFileError(p, f"the header gives voxel sizes {list(spacing)}; they must be positive: fix the header")
    if not all(np.isfinite(reader.GetOrigin())):
        raise ImageFileError(p, f"the header gives origin {list(reader.GetOrigin())}; it must be finite: fix the header")
    if not np.all(np.isfinite(direction)) or abs(np.linalg.det(direction.reshape(len(size), len(size)))) < 1e-6:
        raise ImageFileError(p, "the header's direction (orientation) matrix is degenerate; fix the header")
    return ImageInfo(
        path=p,
        format=format_of(p),
        size_xyz=size,
        spacing_xyz=spacing,
        origin_xyz=tuple(float(v) for v in reader.GetOrigin()),
        direction=tuple(float(v) for v in reader.GetDirection()),
        dtype=dtype,
        components=comps,
        metadata=_metadata(reader),
    )


def _metadata(reader) -> tuple[tuple[str, str], ...]:
    """The header's key/value pairs; a key SimpleITK cannot hand back (not UTF-8) is left out."""
    out = []
    for k in reader.GetMetaDataKeys():
        try:
            out.append((k, reader.GetMetaData(k)))
        except (TypeError, UnicodeDecodeError, RuntimeError):
            continue
    return tuple(out)
