"""Volume geometry against SimpleITK, the reference for the index <-> world contract."""

import dask.array as da
import numpy as np
import pytest
import SimpleITK as sitk

from voxelstream import Volume
from voxelstream.geometry import affine_to_itk


def _oblique(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:  # some scanners give left-handed frames too; test both
        q[:, 2] *= -1 if seed % 2 else 1
    return q


@pytest.mark.parametrize("seed", range(4))
def test_index_to_world_matches_simpleitk(seed):
    rng = np.random.default_rng(seed)
    shape = (7, 9, 11)
    spacing_zyx = tuple(rng.uniform(0.3, 3.0, 3))
    origin = tuple(rng.uniform(-200, 200, 3))
    direction = _oblique(seed)
    vol = Volume.from_itk_geometry(
        da.zeros(shape, dtype=np.int16), spacing=spacing_zyx, origin_xyz=origin, direction=direction.ravel()
    )
    img = sitk.Image(shape[2], shape[1], shape[0], sitk.sitkInt16)
    img.SetSpacing(spacing_zyx[::-1])
    img.SetOrigin(origin)
    img.SetDirection(direction.ravel())

    idx_zyx = rng.integers(0, 7, (50, 3)).astype(float)
    expected = np.array([img.TransformIndexToPhysicalPoint([int(v) for v in p[::-1]]) for p in idx_zyx])
    np.testing.assert_allclose(vol.index_to_world(idx_zyx), expected, atol=1e-9)

    # continuous indices too, and the inverse
    frac = rng.uniform(-2, 12, (50, 3))
    expected = np.array([img.TransformContinuousIndexToPhysicalPoint(p[::-1].tolist()) for p in frac])
    np.testing.assert_allclose(vol.index_to_world(frac), expected, atol=1e-9)
    np.testing.assert_allclose(vol.world_to_index(expected), frac, atol=1e-9)
    np.testing.assert_allclose(vol.spacing, spacing_zyx, rtol=1e-9)

    o, s, d = affine_to_itk(vol.affine)
    np.testing.assert_allclose(o, img.GetOrigin())
    np.testing.assert_allclose(s, img.GetSpacing())
    np.testing.assert_allclose(d, img.GetDirection(), atol=1e-12)


def test_single_point_and_shape_errors():
    vol = Volume.from_itk_geometry(da.zeros((2, 2, 2)), spacing=(2, 1, 1), origin_xyz=(1, 2, 3))
    assert vol.index_to_world([1, 0, 0]).tolist() == [1, 2, 5]  # one z step is 2 mm along +z
    with pytest.raises(ValueError, match="shape"):
        vol.world_to_index([[1, 2]])


def test_volume_is_frozen_and_meta_json_only():
    vol = Volume.from_itk_geometry(da.zeros((2, 2, 2)), spacing=(1, 1, 1), meta={"a": 1})
    with pytest.raises(Exception):
        vol.meta = {}
    with pytest.raises(ValueError):
        vol.affine[0, 0] = 5
    with pytest.raises(TypeError, match="JSON"):
        Volume.from_itk_geometry(da.zeros((2, 2, 2)), spacing=(1, 1, 1), meta={"a": object()})
    with pytest.raises(ValueError, match="invertible"):
        Volume(da.zeros((2, 2, 2)), np.zeros((4, 4)))
