"""From a MetaImage, NIfTI or NRRD file to a lazy :class:`~voxelstream.Volume`."""

from __future__ import annotations

import functools
import os
from typing import Any

from voxelstream.lazy import BlockSource
from voxelstream.limits import check_output_size
from voxelstream.privacy import source_origin
from voxelstream.volume import Volume

from . import metaimage, nifti, nrrd
from .header import ImageInfo, read_info
from .naming import volume_id_for
from .rawdata import RawLayout, raw_array, read_raw_region

__all__ = ["inspect_file", "open_volume", "volume_meta", "data_files"]


def inspect_file(path: str, allow_outside_data: bool = False) -> ImageInfo:
    """Header-only check of ``path``: the header holds sane values and describes a 3-D volume
    no larger than the output limit, its data files stay in its folder (unless
    ``allow_outside_data``), and the voxel data exist in full. Raises
    :class:`~voxelstream_itk.errors.ImageFileError` (or ``OutputTooLargeError``)."""
    info = read_info(path)
    dims = " ".join(str(n) for n in info.size_xyz)
    check_output_size(info.shape_zyx + ((info.components,) if info.components > 1 else ()), info.dtype,
                      cause=f"{path}: its header's size {dims}",
                      hint="the header is damaged, or the image is larger than this machine is set up for")
    if info.format == "MetaImage":
        metaimage.check_data(metaimage.read_header(path), info, allow_outside_data)
    elif info.format == "NIfTI":
        nifti.check_complete(info)
    else:
        nrrd.check_data(info, allow_outside_data)
    return info


def data_files(info: ImageInfo, allow_outside_data: bool = False) -> list[str]:
    """The files the volume is read from: the header and its data file(s)."""
    if info.format == "MetaImage":
        extra = metaimage.data_files_of(metaimage.read_header(info.path), allow_outside_data)
        return list(dict.fromkeys([info.path, *extra]))
    layout = nrrd.raw_layout(info, allow_outside_data) if info.format == "NRRD" else None
    return list(dict.fromkeys([info.path] + ([layout.data_file] if layout else [])))


def volume_meta(info: ImageInfo, *, keep_phi: bool = False, allow_outside_data: bool = False) -> dict[str, Any]:
    """``meta`` of the volume: id, reader, format, ``origin`` (reader, salted hash of the
    path, number and size of files; the path itself only with ``keep_phi``), and modality
    (and HU units for CT) when the header names one (MetaImage ``Modality = MET_MOD_CT``)."""
    meta: dict[str, Any] = {
        "id": volume_id_for(info.path),
        "reader": "itk",
        "format": info.format,
        "origin": source_origin("itk", info.path, data_files(info, allow_outside_data), keep_phi=keep_phi),
    }
    if keep_phi:
        meta["source"] = os.path.abspath(info.path)
    modality = info.meta("Modality").strip().upper().removeprefix("MET_MOD_")
    if modality and modality not in ("UNKNOWN", "OT"):
        meta["modality"] = modality
        if modality == "CT":
            meta["units"] = "HU"
    return meta


def raw_layout_of(info: ImageInfo, allow_outside_data: bool = False) -> RawLayout | None:
    """How :mod:`.rawdata` reads the file, or None when SimpleITK must."""
    if info.format == "MetaImage":
        return metaimage.raw_layout(metaimage.read_header(info.path), info, allow_outside_data)
    if info.format == "NIfTI":
        return nifti.raw_layout(info)
    return nrrd.raw_layout(info, allow_outside_data)


def _lazy_data(info: ImageInfo, depth: int | None, allow_outside_data: bool) -> Any:
    """The voxels as a channel-first dask array (tasks of about 64 slices, see :mod:`.slabs`)."""
    import dask.array as da

    layout = raw_layout_of(info, allow_outside_data)
    if layout is not None:
        data = raw_array(layout, depth)
    else:
        from .sitk_slabs import sitk_array

        data = sitk_array(info, depth)
    return da.moveaxis(data, -1, 0) if info.components > 1 else data[None]


def _voxels(info: ImageInfo, depth: int | None, allow_outside_data: bool) -> Any:
    """Uncompressed data: a :class:`BlockSource` reading any region straight from the file
    (the store writes it without a dask graph; the dask form is built only if a stage asks).
    Compressed data, or data SimpleITK must read: the dask array (read front to back)."""
    layout = raw_layout_of(info, allow_outside_data)
    to_dask = functools.partial(_lazy_data, info, depth, allow_outside_data)
    if layout is None or layout.compression:
        return to_dask()
    shape = (info.components, *layout.shape[:3])
    return BlockSource(shape, layout.output_dtype, functools.partial(read_raw_region, layout), to_dask)


def open_volume(path: str, slab_depth: int | None = None, *, keep_phi: bool = False,
                allow_outside_data: bool = False) -> Volume:
    """The image at ``path`` as a lazy Volume: headers are read now, voxels when written or
    computed (blocks of about 64 slices, or bands of rows of a huge slice; ``slab_depth``
    slices when given). Multi-component pixels become a leading channel axis ``(c, z, y, x)``."""
    info = inspect_file(path, allow_outside_data)
    return Volume.from_itk_geometry(
        _voxels(info, slab_depth, allow_outside_data),
        spacing=tuple(reversed(info.spacing_xyz)),
        origin_xyz=info.origin_xyz,
        direction=info.direction,
        meta=volume_meta(info, keep_phi=keep_phi, allow_outside_data=allow_outside_data),
    )
