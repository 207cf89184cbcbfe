"""The NaN/Inf policy (voxelstream.nonfinite): kept in float images, counted and reported at
ingest, and not spread by resampling beyond the output voxels whose linear footprint
touches them. References: SimpleITK's linear resampling of the masks and of the finite
values, hand-placed voxels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import voxelstream as vs
from voxelstream import geometry

RNG = np.random.default_rng(3)


def _volume(arr: np.ndarray, spacing=(2.0, 1.0, 1.5)) -> vs.Volume:
    return vs.Volume.from_array(arr, spacing=spacing, origin=(-10.0, 5.0, 3.0))


def _sitk_linear(arr: np.ndarray, vol: vs.Volume, out: vs.Volume) -> np.ndarray:
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    origin, spacing, direction = geometry.affine_to_itk(vol.affine)
    img.SetOrigin(origin), img.SetSpacing(spacing), img.SetDirection(direction)
    o, s, d = geometry.affine_to_itk(out.affine)
    res = sitk.Resample(img, out.spatial_shape[::-1], sitk.Transform(), sitk.sitkLinear, o, s, d, 0.0,
                        sitk.sitkFloat32)
    return sitk.GetArrayFromImage(res)


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("spacing", [(2.0, 1.0, 1.5), (1.0, 0.6, 1.1), (3.1, 1.7, 2.2)])
def test_resampling_keeps_non_finite_voxels_where_they_touch(order: int, spacing) -> None:
    arr = RNG.normal(size=(20, 24, 22)).astype(np.float32)
    arr[5, 6, 7] = np.nan
    arr[12, 3, 15] = np.inf
    arr[14, 20, 4] = -np.inf
    arr[9, 9, 9] = arr[9, 9, 10] = np.nan
    vol = _volume(arr)
    out = vs.get_stage("resample")(vol, spacing=spacing, order=order, chunks=(7, 9, 8))
    got = out.data.compute()[0]
    masks = [np.isnan(arr), np.isposinf(arr), np.isneginf(arr)]
    touched = [_sitk_linear(m.astype(np.float32), vol, out) > 1e-6 for m in masks]  # SimpleITK's footprint
    expected_nan = touched[0] | (touched[1] & touched[2])
    np.testing.assert_array_equal(np.isnan(got), expected_nan)
    np.testing.assert_array_equal(np.isposinf(got), touched[1] & ~expected_nan)
    np.testing.assert_array_equal(np.isneginf(got), touched[2] & ~expected_nan)
    # a handful per NaN voxel (at most 2 per axis per upsampling step), not a line or the volume
    upsampling = np.prod(np.maximum(1, np.ceil(np.asarray(vol.spacing) / np.asarray(out.spacing)) + 1))
    assert np.isnan(got).sum() <= 3 * upsampling
    if order == 1:  # elsewhere: the finite values, as SimpleITK interpolates them (non-finite taken as 0)
        finite = np.where(np.isfinite(arr), arr, 0)
        ref = _sitk_linear(finite, vol, out)
        ok = np.isfinite(got)
        inside = np.ones_like(ok)
        for a in range(3):  # away from the far edges, where voxelstream extends the edge value
            x = np.arange(got.shape[a]) * out.spacing[a] / vol.spacing[a]
            inside &= (x <= arr.shape[a] - 1).reshape([-1 if b == a else 1 for b in range(3)])
        np.testing.assert_allclose(got[ok & inside], ref[ok & inside], atol=2e-5)


def test_finite_images_are_untouched_by_the_policy() -> None:
    arr = RNG.normal(size=(10, 12, 11)).astype(np.float32)
    vol = _volume(arr)
    out = vs.get_stage("resample")(vol, spacing=(1.0, 1.0, 1.0), order=1)
    assert np.isfinite(out.data.compute()).all()


def test_ingest_keeps_counts_and_reports_non_finite_voxels(tmp_path: Path) -> None:
    arr = RNG.normal(size=(70, 9, 8)).astype(np.float32)  # more than one read block along z
    arr[0, 0, 0] = arr[65, 1, 2] = arr[30, 4, 4] = np.nan
    arr[69, 8, 7] = np.inf
    arr[10, 2, 2] = -np.inf
    img = sitk.GetImageFromArray(arr)
    sitk.WriteImage(img, str(tmp_path / "pmap.nii.gz"), True)
    store = tmp_path / "s.zarr"
    proc = subprocess.run([sys.executable, "-m", "voxelstream.cli.main", "ingest", str(tmp_path / "pmap.nii.gz"),
                           "--store", str(store)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "pmap\t1x70x9x8 (non-finite voxels kept: 3 NaN, 1 +inf, 1 -inf)"
    stored = np.asarray(vs.open_store(store).open("pmap").data[0])
    np.testing.assert_array_equal(stored, arr)  # NaN == NaN positions compared by assert_array_equal


def test_integer_images_are_not_counted(tmp_path: Path) -> None:
    from voxelstream.nonfinite import counting_non_finite, describe_non_finite

    vol = vs.Volume.from_array(np.zeros((4, 5, 6), np.int16))
    assert counting_non_finite(vol) is vol and describe_non_finite(vol) == ""
