"""The ``itk`` reader: MetaImage (.mhd/.mha), NIfTI (.nii/.nii.gz) and NRRD (.nrrd/.nhdr)."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import voxelstream
from voxelstream.specs import ReaderSpec, Source, SourceError

from .errors import ImageFileError
from .naming import COMPANION_EXTENSIONS, image_extension, volume_id_for
from .reader import inspect_file, open_volume

__all__ = ["claims", "discover", "voxelstream_readers"]


def claims(path: Path) -> bool:
    """Files named like MetaImage, NIfTI or NRRD images (suffix, any case)."""
    return image_extension(path) is not None


def discover(files: Sequence[Path], options: Any = None) -> Iterator[Source | SourceError]:
    """One :class:`Source` per readable file (headers only), one :class:`SourceError` per bad one."""
    for f in files:
        path = str(f)
        try:
            info = inspect_file(path)
        except ImageFileError as exc:
            yield SourceError(path, exc.reason)
            continue
        size = "x".join(str(n) for n in info.size_xyz)
        yield Source(
            volume_id=volume_id_for(path),
            location=path,
            open=functools.partial(open_volume, path),  # picklable: a module function and a str
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
