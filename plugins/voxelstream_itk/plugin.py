"""The ``itk`` reader: MetaImage (.mhd/.mha), NIfTI (.nii/.nii.gz) and NRRD (.nrrd/.nhdr)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import voxelstream
from voxelstream.specs import ReaderSpec, Source, SourceError

from .naming import COMPANION_EXTENSIONS, image_extension, volume_id_for

__all__ = ["claims", "discover", "voxelstream_readers"]


def claims(path: Path) -> bool:
    """Files named like MetaImage, NIfTI or NRRD images (suffix, any case)."""
    return image_extension(path) is not None


def discover(files: Sequence[Path], options: Any = None) -> Iterator[Source | SourceError]:
    """One :class:`Source` per readable file (headers only), one :class:`SourceError` per bad one."""
    # here, not at the top: the reader needs numpy and dask, and every CLI start imports this module
    from voxelstream.errors import VoxelstreamError

    from .errors import ImageFileError
    from .reader import inspect_file, open_volume

    keep_phi = bool(getattr(options, "keep_phi", False))
    outside = bool(getattr(options, "allow_outside_data", False))
    for f in files:
        path = str(f)
        try:
            info = inspect_file(path, outside)
        except ImageFileError as exc:
            yield SourceError(path, exc.reason)
            continue
        except VoxelstreamError as exc:  # e.g. a declared size past the output limit
            yield SourceError(path, str(exc).removeprefix(f"{path}: "))
            continue
        except Exception as exc:  # one hostile file must not end the batch: report it, go on
            yield SourceError(path, f"unreadable header ({type(exc).__name__}: {exc}); check or remove the file")
            continue
        size = "x".join(str(n) for n in info.size_xyz)
        yield Source(
            volume_id=volume_id_for(path),
            location=path,
            # picklable: a module function and plain values
            open=functools.partial(open_volume, path, keep_phi=keep_phi, allow_outside_data=outside),
            reader="itk",
            description=f"{info.format} {size} {info.dtype}",
        )


@voxelstream.hookimpl
def voxelstream_readers() -> list[ReaderSpec]:
    return [
        ReaderSpec(
            name="itk",
            claims=claims,
            discover=discover,
            companions=COMPANION_EXTENSIONS,
            description="MetaImage (.mhd/.mha), NIfTI (.nii/.nii.gz) and NRRD (.nrrd/.nhdr) through SimpleITK; "
            "uncompressed .mhd/.mha data memory-mapped",
        )
    ]
