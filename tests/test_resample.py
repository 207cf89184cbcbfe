"""The ``resample`` stage against SimpleITK, scipy and hand-made cases.

SimpleITK resamples in physical space, so agreeing with it on oblique, anisotropic phantoms
also checks that every feature keeps its world position.
"""

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

import voxelstream as vs
from voxelstream import geometry
from voxelstream.testing import check_stage, sample_volume
from voxelstream_ct.phantom import make_ct_phantom

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lidc-idri-slabs"
HU_TOL = 1e-3


def _oblique() -> np.ndarray:
    q, _ = np.linalg.qr(np.array([[1.0, 0.3, 0.1], [-0.3, 1.0, 0.2], [0.05, -0.2, 1.0]]))
    return q * np.sign(np.diag(q))


@pytest.fixture(scope="module")
def phantom_volume() -> vs.Volume:
    """An oblique, anisotropic CT phantom of odd size, in chunks that do not divide it."""
    ph = make_ct_phantom((23, 61, 53), (2.5, 0.7, 0.8), seed=3, direction=_oblique(), n_nodules=1, n_distractors=0)
    return vs.Volume.from_itk_geometry(
        da.from_array(ph.hu, chunks=(10, 23, 17)),
        spacing=ph.spacing,
        origin_xyz=ph.origin_xyz,
        direction=np.asarray(ph.direction).ravel(),
        meta={"modality": "CT"},
    )


def _to_sitk(vol: vs.Volume) -> sitk.Image:
    img = sitk.GetImageFromArray(np.asarray(vol.data)[0])
    origin, spacing, direction = geometry.affine_to_itk(vol.affine)
    img.SetOrigin(origin)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    return img


def _sitk_resample(vol: vs.Volume, out: vs.Volume, interp: int, pixel=sitk.sitkFloat32) -> np.ndarray:
    """SimpleITK's resampling of ``vol`` onto ``out``'s grid (default value NaN-like -9999)."""
    origin, spacing, direction = geometry.affine_to_itk(out.affine)
    res = sitk.Resample(_to_sitk(vol), out.spatial_shape[::-1], sitk.Transform(), interp,
                        origin, spacing, direction, -9999.0, pixel)
    return sitk.GetArrayFromImage(res)


def _inside_stencil(vol: vs.Volume, out: vs.Volume) -> np.ndarray:
    """Output voxels between the first and last input samples on every axis (a linear
    stencil needs no value from beyond the input's edge)."""
    ratios = np.asarray(out.spacing) / np.asarray(vol.spacing)
    mask = np.ones(out.spatial_shape, bool)
    for a in range(3):
        x = np.arange(out.spatial_shape[a]) * ratios[a]
        ok = x <= vol.spatial_shape[a] - 1
        mask &= ok.reshape([-1 if b == a else 1 for b in range(3)])
    return mask


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.3, 0.55, 1.7)])
def test_linear_equals_simpleitk_inside_the_input(phantom_volume, spacing):
    out = vs.get_stage("resample")(phantom_volume, spacing=spacing, order=1, chunks=(13, 29, 31))
    got = out.data.compute()[0]
    ref = _sitk_resample(phantom_volume, out, sitk.sitkLinear)
    mask = _inside_stencil(phantom_volume, out)
    assert mask.mean() > 0.9
    np.testing.assert_allclose(got[mask], ref[mask], rtol=0, atol=HU_TOL)
    assert got.dtype == np.float32


def test_linear_extends_edge_values_past_the_last_sample():
    # 1-D ramp upsampled: positions past index n-1 take the last value (scipy mode="nearest")
    arr = np.tile(np.arange(5, dtype=np.int16) * 10, (3, 3, 1))
    vol = vs.Volume.from_itk_geometry(da.from_array(arr, chunks=2), spacing=(1, 1, 1.0))
    out = vs.get_stage("resample")(vol, spacing=(1, 1, 0.4)).data.compute()[0]
    x = np.arange(out.shape[2]) * 0.4
    expected = ndimage.map_coordinates(arr[0, 0].astype(float), [x], order=1, mode="nearest")
    assert out.shape == (3, 3, 13)  # round(5 * 1 / 0.4) = 12.5 -> 13
    np.testing.assert_allclose(out[1, 1], expected, atol=1e-5)
    assert out[1, 1, -1] == 40.0  # x = 4.8: past the last sample, edge extended


def test_whole_output_equals_scipy_nearest_mode_map_coordinates(phantom_volume):
    out = vs.get_stage("resample")(phantom_volume, spacing=(1.9, 1.1, 0.6), chunks=17)
    ratios = np.asarray(out.spacing) / np.asarray(phantom_volume.spacing)
    grid = np.meshgrid(*(np.arange(n) * r for n, r in zip(out.spatial_shape, ratios)), indexing="ij")
    ref = ndimage.map_coordinates(np.asarray(phantom_volume.data, dtype=float)[0], grid, order=1, mode="nearest")
    np.testing.assert_allclose(out.data.compute()[0], ref, atol=HU_TOL)


def test_cubic_equals_simpleitk_bspline_inside_the_input(phantom_volume):
    out = vs.get_stage("resample")(phantom_volume, spacing=1.0, order=3, chunks=(13, 29, 31))
    ref = _sitk_resample(phantom_volume, out, sitk.sitkBSpline)
    inside = ref != -9999.0  # mirror boundaries like SimpleITK: compare everywhere it answers
    # the truncated prefilter (kernels.PREFILTER_HALF_WIDTH) costs < 1e-7 of the HU range
    np.testing.assert_allclose(out.data.compute()[0][inside], ref[inside], rtol=0, atol=2e-3)


def test_nearest_keeps_labels_and_dtype_and_matches_simpleitk():
    labels = np.zeros((15, 40, 33), np.uint8)
    labels[3:9, 10:25, 5:20] = 1
    labels[7:12, 20:31, 15:30] = 7
    vol = vs.Volume.from_itk_geometry(da.from_array(labels, chunks=(4, 9, 8)), spacing=(2.5, 0.7, 0.8),
                                      origin_xyz=(5.0, -3.0, 100.0))
    out = vs.get_stage("resample")(vol, spacing=(1.0, 1.0, 1.1), order=0, chunks=10)
    got = out.data.compute()[0]
    assert got.dtype == np.uint8
    assert set(np.unique(got)) == {0, 1, 7}
    ref = _sitk_resample(vol, out, sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    inside = _inside_stencil(vol, out)
    np.testing.assert_array_equal(got[inside], ref[inside])


def test_nearest_rounds_ties_up_like_simpleitk():
    arr = np.tile(np.arange(6, dtype=np.int16) * 10, (2, 2, 1))
    vol = vs.Volume.from_itk_geometry(da.from_array(arr), spacing=(1, 1, 1.0))
    out = vs.get_stage("resample")(vol, spacing=(1, 1, 0.5), order=0)  # x = 0, .5, 1, 1.5...
    ref = _sitk_resample(vol, out, sitk.sitkNearestNeighbor, sitk.sitkInt16)
    got = out.data.compute()[0]
    np.testing.assert_array_equal(got[0, 0, :11], ref[0, 0, :11])
    assert list(got[0, 0, :4]) == [0, 10, 10, 20]


def test_output_grid_keeps_origin_direction_and_world_positions(phantom_volume):
    out = vs.get_stage("resample")(phantom_volume, spacing=(1.0, 1.0, 1.0))
    n_in, sp_in = np.array(phantom_volume.spatial_shape), np.array(phantom_volume.spacing)
    assert out.spatial_shape == tuple(np.floor(n_in * sp_in + 0.5).astype(int))
    assert out.spacing == pytest.approx((1.0, 1.0, 1.0))
    np.testing.assert_allclose(out.origin, phantom_volume.origin)
    np.testing.assert_allclose(out.direction, phantom_volume.direction, atol=1e-12)
    # output index j sits where input index j * out_spacing / in_spacing sits, in the world
    j = np.array([[3, 7, 11], [20, 40, 30]], float)
    np.testing.assert_allclose(out.index_to_world(j), phantom_volume.index_to_world(j / sp_in), atol=1e-9)


def test_bright_point_keeps_its_world_position():
    arr = np.zeros((21, 31, 29), np.int16)
    arr[9:12, 14:17, 12:15] = 1000  # a 3-voxel cube: its centroid is index (10, 15, 13)
    vol = vs.Volume.from_itk_geometry(da.from_array(arr, chunks=8), spacing=(2.0, 0.6, 0.9),
                                      origin_xyz=(-40.0, 12.0, 7.5), direction=_oblique().ravel())
    out = vs.get_stage("resample")(vol, spacing=0.5)
    res = out.data.compute()[0]
    centroid = np.array(ndimage.center_of_mass(res))
    np.testing.assert_allclose(out.index_to_world(centroid), vol.index_to_world([10, 15, 13]), atol=0.05)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_conforms_to_the_stage_contract(order):
    # chunking-independent to the bit (atol 0), lazy, streaming, geometry and meta carried;
    # large enough that the cubic stencil (+-14 voxels) of one output chunk is not everything
    check_stage("resample", sample_volume((30, 64, 40)), params={"spacing": (1.0, 0.9, 1.3), "order": order, "chunks": (9, 11, 7)})


def test_channel_axis_is_resampled_per_channel():
    base = sample_volume((12, 14, 10), oblique=False)
    stacked = base.replace(data=da.concatenate([base.data, base.data * 2]).rechunk((1, 5, 6, 7)))
    one = vs.get_stage("resample")(base, spacing=1.0).data.compute()[0]
    both = vs.get_stage("resample")(stacked, spacing=1.0, chunks=6).data.compute()
    np.testing.assert_allclose(both[0], one, atol=1e-4)
    np.testing.assert_allclose(both[1], 2 * one, atol=1e-3)


def test_bad_parameters_are_user_errors():
    vol = sample_volume((8, 8, 8))
    with pytest.raises(vs.VoxelstreamError, match="order"):
        vs.get_stage("resample")(vol, order=2)
    with pytest.raises(vs.VoxelstreamError, match="spacing"):
        vs.get_stage("resample")(vol, spacing=(1.0, 0.0, 1.0))


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real LIDC-IDRI slabs not found at {DATA}")
def test_real_slab_linear_equals_simpleitk():
    folder = next(p.parent for p in sorted(DATA.glob("LIDC-IDRI-0001/**/*.dcm")))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    arr = sitk.GetArrayFromImage(img)
    vol = vs.Volume.from_itk_geometry(da.from_array(arr, chunks=(5, 100, 100)), spacing=img.GetSpacing()[::-1],
                                      origin_xyz=img.GetOrigin(), direction=img.GetDirection())
    out = vs.get_stage("resample")(vol, spacing=1.0, chunks=(7, 64, 64))
    ref = _sitk_resample(vol, out, sitk.sitkLinear)
    mask = _inside_stencil(vol, out)
    np.testing.assert_allclose(out.data.compute()[0][mask], ref[mask], rtol=0, atol=HU_TOL)


# -- the direct path (a BlockSource input, as a stored volume is): no dask graph ------------------


def _stored(tmp_path, vol: vs.Volume, chunks) -> vs.Volume:
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    store.write(vol, "v", chunks=chunks)
    return store.open("v")


def _by_blocks(source, edges) -> np.ndarray:
    """The whole output assembled from ``source.read`` of blocks of ``edges`` (c whole)."""
    out = np.empty(source.shape, dtype=source.dtype)
    starts = [range(0, n, e) for n, e in zip(source.shape[1:], edges)]
    for z0 in starts[0]:
        for y0 in starts[1]:
            for x0 in starts[2]:
                region = (slice(0, source.shape[0]), *(slice(s, min(s + e, n))
                                                        for s, e, n in zip((z0, y0, x0), edges, source.shape[1:])))
                out[region] = source.read(region)
    return out


@pytest.mark.parametrize("order", [0, 1, 3])
def test_direct_regions_equal_the_graph_for_every_cutting(tmp_path, phantom_volume, order):
    stored = _stored(tmp_path, phantom_volume, (7, 16, 13))  # store chunks that do not divide it
    out = vs.get_stage("resample")(stored, spacing=(1.1, 0.9, 1.3), order=order, chunks=(16, 24, 20))
    assert out.source is not None
    want = vs.get_stage("resample")(phantom_volume, spacing=(1.1, 0.9, 1.3), order=order).data.compute()
    for edges in [(16, 24, 20), (5, 7, 3), (64, 100, 100), (1, 200, 9)]:
        got = _by_blocks(out.source, edges)
        np.testing.assert_array_equal(got, want)  # bit for bit: the same arithmetic per voxel
    assert out.dtype == want.dtype


def test_direct_path_keeps_the_nonfinite_policy(tmp_path):
    rng = np.random.default_rng(5)
    a = rng.normal(0, 100, (20, 30, 25)).astype(np.float32)
    a[7, 11, 13], a[15, 3, 20], a[2, 25, 4] = np.nan, np.inf, -np.inf
    vol = vs.Volume.from_array(a, spacing=(2.0, 0.8, 0.9))
    stored = _stored(tmp_path, vol, 8)
    want = vs.get_stage("resample")(vol, spacing=1.0).data.compute()
    got = vs.get_stage("resample")(stored, spacing=1.0)
    np.testing.assert_array_equal(_by_blocks(got.source, (9, 9, 9)), want)  # NaN where NaN
    assert np.isnan(want).any() and np.isposinf(want).any() and np.isneginf(want).any()


def test_preprocessed_store_equals_simpleitk(tmp_path, phantom_volume):
    """End to end through the direct write: store -> resample -> store, against SimpleITK."""
    stored = _stored(tmp_path, phantom_volume, 16)
    out = vs.get_stage("resample")(stored, spacing=1.0)
    store = vs.open_store(tmp_path / "s.zarr")
    store.write(out, "v", "iso", chunks=16)
    got = store.read_region("v", "iso", (slice(None),) * 4)[0]
    want = _sitk_resample(phantom_volume, out, sitk.sitkLinear)
    inside = _inside_stencil(phantom_volume, out)
    np.testing.assert_allclose(got[inside], want[inside], atol=HU_TOL, rtol=0)
