"""Voxel bytes in one file at a known offset, plain or compressed: read block by block.

The layouts the format modules find (MetaImage ``.raw``/``.zraw``/``.mha``, NIfTI-1 ``.nii``
and ``.nii.gz``, NRRD raw/gzip data) all come down to a :class:`RawLayout`: which file,
where the voxels start, their stored dtype (with byte order), the array shape ``(z, y, x[,
c])``, the compression (``""``, ``"gzip"``, ``"zlib"``) and a linear rescale. Uncompressed
data are memory-mapped inside each task; compressed data are inflated about once per
volume by :mod:`.stream`. Either way a task holds one block, never the volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ImageFileError
from .stream import read_range

__all__ = ["RawLayout", "read_raw_block", "read_raw_region", "raw_array"]


@dataclass(frozen=True)
class RawLayout:
    """Where and how the voxels are stored: plain data, safe to put into a dask graph.

    ``slope``/``inter`` (NIfTI ``scl_slope``/``scl_inter``) give ``out_dtype`` values
    ``stored * slope + inter``; without them the output is the stored dtype, native order."""

    data_file: str
    offset: int
    dtype: str  # stored, with byte order, e.g. ">i2"
    shape: tuple[int, ...]  # (z, y, x) or (z, y, x, c), c interleaved
    compression: str = ""
    stream_start: int = 0  # compressed data: file position where the stream begins (offset counts inflated bytes)
    slope: float = 1.0
    inter: float = 0.0
    out_dtype: str = ""

    @property
    def output_dtype(self) -> str:
        return self.out_dtype or np.dtype(self.dtype).newbyteorder("=").name


def read_raw_block(z0: int, z1: int, y0: int, y1: int, *, path: str, offset: int, dtype: str,
                   shape: tuple[int, ...], compression: str = "", stream_start: int = 0, slope: float = 1.0,
                   inter: float = 0.0, out_dtype: str = "") -> np.ndarray:
    """Block ``[z0:z1, y0:y1]`` of the stored voxels, rescaled, in native byte order."""
    try:
        return _read_block(z0, z1, y0, y1, path, offset, dtype, shape, compression, stream_start, slope, inter,
                           out_dtype)
    except ImageFileError:
        raise
    except Exception as exc:  # e.g. the file shrank since discovery: an error naming the file
        raise ImageFileError(path, f"reading slices {z0}-{z1 - 1} failed ({type(exc).__name__}: {exc}); re-copy or "
                             "re-export the file") from None


def _read_block(z0: int, z1: int, y0: int, y1: int, path: str, offset: int, dtype: str, shape: tuple[int, ...],
                compression: str, stream_start: int, slope: float, inter: float, out_dtype: str) -> np.ndarray:
    stored = np.dtype(dtype)
    if not compression:
        mm = np.memmap(path, dtype=stored, mode="r", offset=offset, shape=shape)
        try:
            block = np.array(mm[z0:z1, y0:y1], dtype=stored.newbyteorder("="))
        finally:
            del mm
    else:
        row = int(np.prod(shape[2:], dtype=np.int64)) * stored.itemsize
        block = np.empty((z1 - z0, y1 - y0, *shape[2:]), dtype=stored.newbyteorder("="))
        need = (y1 - y0) * row
        for k, z in enumerate(range(z0, z1)):
            try:
                raw = read_range(path, compression, offset + (z * shape[1] + y0) * row, need, stream_start)
            except OSError as exc:
                raise ImageFileError(path, f"reading slice {z} failed: {exc}; re-copy or re-export the file") from None
            if len(raw) < need:
                raise ImageFileError(path, f"compressed data end before slice {z} rows {y0}-{y1 - 1}: the file is "
                                     "truncated; re-copy or re-export it")
            block[k] = np.frombuffer(raw, dtype=stored).reshape(block.shape[1:])
    if slope != 1.0 or inter != 0.0:
        # in float64, then one rounding to the output type (as niftilib's double-precision scaling)
        return (block.astype(np.float64) * slope + inter).astype(out_dtype or "float32")
    if out_dtype and np.dtype(out_dtype) != block.dtype:
        return block.astype(out_dtype)
    return block


def read_raw_region(layout: RawLayout, region: tuple[slice, ...]) -> np.ndarray:
    """Region ``(c, z, y, x)`` (slices) of ``layout``'s voxels, channel-first: what a direct
    write reads block by block (``voxelstream.lazy.BlockSource``)."""
    c, z, y, x = region
    stored = np.dtype(layout.dtype)
    if (not layout.compression and stored.isnative and layout.slope == 1.0 and layout.inter == 0.0
            and np.dtype(layout.output_dtype) == stored):
        # a view of the memory-mapped file: the writer copies each chunk out of it once (no
        # intermediate copy of the block); the mapping lives as long as the view
        try:
            mm = np.memmap(layout.data_file, dtype=stored, mode="r", offset=layout.offset, shape=layout.shape)
        except (OSError, ValueError) as exc:  # shortened or removed since it was discovered
            raise ImageFileError(layout.data_file, f"cannot read its voxels ({exc}); the file changed or is truncated: "
                                 "re-copy it and run the command again") from None
        view = mm[z, y, x]
        return np.moveaxis(view, -1, 0)[c] if len(layout.shape) == 4 else view[None][c]
    block = read_raw_block(z.start, z.stop, y.start, y.stop, path=layout.data_file, offset=layout.offset,
                           dtype=layout.dtype, shape=layout.shape, compression=layout.compression,
                           stream_start=layout.stream_start, slope=layout.slope, inter=layout.inter,
                           out_dtype=layout.out_dtype)[:, :, x]
    return np.moveaxis(block, -1, 0)[c] if len(layout.shape) == 4 else block[None][c]


def raw_array(layout: RawLayout, depth: int | None = None) -> da.Array:
    """Lazy ``(z, y, x[, c])`` array of ``layout``'s voxels, one task per block."""
    from .slabs import slab_array  # dask: only when a dask graph is asked for

    return slab_array(
        read_raw_block, layout.shape, layout.output_dtype, depth, path=layout.data_file, offset=layout.offset,
        dtype=layout.dtype, shape=layout.shape, compression=layout.compression, stream_start=layout.stream_start,
        slope=layout.slope,
        inter=layout.inter, out_dtype=layout.out_dtype, deep=not layout.compression,
    )
