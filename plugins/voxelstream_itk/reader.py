"""From a MetaImage, NIfTI or NRRD file to a lazy :class:`~voxelstream.Volume`."""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
from voxelstream.volume import Volume

from . import metaimage, nifti
from .header import ImageInfo, read_info
from .naming import volume_id_for
from .sitk_slabs import sitk_array

__all__ = ["inspect_file", "open_volume", "volume_meta"]


def inspect_file(path: str) -> ImageInfo:
    """Header-only check of ``path``: the header reads, describes a 3-D volume, and the voxel
    data it points at exist in full. Raises :class:`~voxelstream_itk.errors.ImageFileError`."""
    info = read_info(path)
    if info.format == "MetaImage":
        metaimage.check_data(metaimage.read_header(path), info)
    elif info.format == "NIfTI":
        nifti.check_complete(info)
    return info


def volume_meta(info: ImageInfo) -> dict[str, Any]:
    """``meta`` of the volume: source, reader, format, id, and modality (and HU units for
    CT) when the header names one (MetaImage ``Modality = MET_MOD_CT``)."""
    meta: dict[str, Any] = {
        "id": volume_id_for(info.path),
        "source": os.path.abspath(info.path),
        "reader": "itk",
        "format": info.format,
    }
    modality = info.meta("Modality").strip().upper().removeprefix("MET_MOD_")
    if modality and modality not in ("UNKNOWN", "OT"):
        meta["modality"] = modality
        if modality == "CT":
            meta["units"] = "HU"
    return meta


def _lazy_data(info: ImageInfo, depth: int | None) -> da.Array:
    if info.format == "MetaImage":
        layout = metaimage.raw_layout(metaimage.read_header(info.path), info)
        if layout is not None:
            return metaimage.memmap_array(layout, depth)
    return sitk_array(info, depth)


def open_volume(path: str, slab_depth: int | None = None) -> Volume:
    """The image at ``path`` as a lazy Volume: headers are read now, voxels by the dask tasks
    (``slab_depth`` z slices each; default about 64). Multi-component pixels become a leading
    channel axis ``(c, z, y, x)``."""
    info = inspect_file(path)
    data = _lazy_data(info, slab_depth)
    if info.components > 1:
        data = da.moveaxis(data, -1, 0)
    return Volume.from_itk_geometry(
        data,
        spacing=tuple(reversed(info.spacing_xyz)),
        origin_xyz=info.origin_xyz,
        direction=info.direction,
        meta=volume_meta(info),
    )
