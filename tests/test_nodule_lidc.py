"""Positive cube of the real LIDC-IDRI-0001 slab at its LUNA16 nodule, against SimpleITK."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import SimpleITK as sitk

from test_nodule_support import hand_cube, sitk_centre_zyx
from voxelstream import Volume, open_store
from voxelstream_nodules.annotations import read_annotations
from voxelstream_nodules.cubes import build_cubes
from voxelstream_nodules.cubeset import CubeSet

pytestmark = pytest.mark.realdata


def _read_slab(slab: Path) -> tuple[sitk.Image, str]:
    reader = sitk.ImageSeriesReader()
    series_dir = next(p.parent for p in slab.rglob("*.dcm"))
    uid = reader.GetGDCMSeriesIDs(str(series_dir))[0]
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series_dir), uid))
    return reader.Execute(), uid


def test_lidc_0001_positive_cube_matches_simpleitk(tmp_path, shared_data):
    luna = shared_data / "luna16"
    img, uid = _read_slab(shared_data / "lidc-idri-slabs" / "LIDC-IDRI-0001")
    hu = sitk.GetArrayFromImage(img).astype(np.float32)
    windowed = np.clip((hu + 1000.0) / 1400.0, 0.0, 1.0).astype(np.float32)
    vol = Volume.from_itk_geometry(da.from_array(windowed, chunks=64), spacing=img.GetSpacing()[::-1],
                                   origin_xyz=img.GetOrigin(), direction=img.GetDirection())
    store = open_store(tmp_path / "s.zarr", create=True)
    store.write(vol, uid, "iso")
    annotations = read_annotations(luna / "annotations.csv")
    excluded = read_annotations(luna / "annotations_excluded.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the slab is thin: the excluded findings lie outside
        report = build_cubes(store, annotations, tmp_path / "c.zarr", cube_mm=48.0, negatives_per_volume=4,
                             excluded=excluded, seed=0)
    mine = [a for a in annotations if a.series_uid == uid]
    assert len(mine) == 1 and report.positives == 1
    assert report.rows_unknown_series == len(annotations) - 1
    cs = CubeSet.open(tmp_path / "c.zarr")
    edge = tuple(int(round(48.0 / s)) for s in img.GetSpacing()[::-1])
    assert cs.cube_shape == edge
    centre = sitk_centre_zyx(img, mine[0].world_xyz)
    np.testing.assert_array_equal(cs.read([0])[0], hand_cube(windowed, centre, edge, 0.0))
    # the nodule (about 23 mm, soft tissue) is at the centre of its cube
    cube = cs.read([0])[0]
    middle = tuple(n // 2 for n in edge)
    assert cube[middle] > (-300 + 1000) / 1400
