"""The ``lung_mask`` CT stage (plugins/voxelstream_ct/lungmask.py).

References: a hand-built chest whose lungs are known by construction, and the phantom's
own analytic lung geometry (``Phantom.lung``), compared by Dice; ``check_stage`` for
laziness, chunking independence, streaming and determinism.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import voxelstream as vs
from voxelstream.testing import check_stage
from voxelstream_ct.outputs import ISO_OUTPUT, LUNG_MASK_OUTPUT
from voxelstream_ct.phantom import NoduleMix, make_ct_phantom


def _volume(hu: np.ndarray, spacing, chunks=(8, 40, 40), meta=None, origin=(0.0, 0.0, 0.0), direction=None):
    return vs.Volume.from_itk_geometry(
        da.from_array(hu, chunks=chunks), spacing=tuple(spacing), origin_xyz=origin,
        direction=None if direction is None else np.asarray(direction).ravel(),
        meta={"modality": "CT", "units": "HU", **(meta or {})})


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _hand_built_chest(touch_border_slices: int = 0):
    """Air around a box-shaped body (fat + soft tissue), two box lungs (-850 HU) with a
    vessel running through one (a hole in the air), a juxtapleural bump (a half ball of
    tissue on a lung's wall), a small enclosed gas pocket that is not lung. Returns the HU
    array, spacing and the lung mask by construction (boxes, vessel and bump included)."""
    spacing = (2.0, 1.0, 1.0)
    nz, ny, nx = 24, 80, 100
    hu = np.full((nz, ny, nx), -1000, np.int16)
    hu[:, 10:70, 8:92] = -100  # fat
    hu[:, 14:66, 12:88] = 40  # soft tissue
    lung = np.zeros(hu.shape, bool)
    lung[2:22, 20:60, 16:44] = True  # the mediastinum between them is 14 mm wide, more
    lung[2:22, 20:60, 58:86] = True  # than the closing's 2 x 5 mm: no bridge
    hu[lung] = -850
    hu[:, 38:41, 22:38] = 40  # a vessel crossing the left lung along x (inside it)
    z, y, x = np.ogrid[:nz, :ny, :nx]
    bump = ((z - 12) * spacing[0]) ** 2 + (y - 40.0) ** 2 + (x - 85.5) ** 2 <= 3.0 ** 2
    hu[bump & lung] = 40  # juxtapleural: a 6 mm half ball on the right lung's lateral wall
    hu[12, 62:64, 30:32] = -900  # 4 mm^2 gas pocket in soft tissue: too small to be lung
    if touch_border_slices:  # a field of view cutting through the right lung
        k = slice(2, 2 + touch_border_slices)
        hu[k, 20:60, 58:] = -850
    return hu, spacing, lung


def test_hand_built_chest_exact() -> None:
    hu, spacing, lung = _hand_built_chest()
    out = vs.get_stage("lung_mask")(_volume(hu, spacing), closing_mm=5.0)
    mask = np.asarray(out.data)[0]
    assert out.data.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    got = mask.astype(bool)
    assert not (got & ~lung).any()  # nothing outside the lungs
    # a closing with a ball of R = 5 mm fills a dent of radius r = 3 mm only up to
    # R - sqrt(R^2 - r^2) = 1 mm from the wall: the wall's first voxel layer stays open
    missed = lung & ~got
    bump = lung & (hu > -400) & (np.arange(hu.shape[2]) > 70)
    assert missed.sum() > 0 and np.all(np.argwhere(missed)[:, 2] == 85) and (missed <= bump).all()
    assert got[bump & (np.arange(hu.shape[2]) <= 84)].all()  # deeper than 1 mm: filled
    assert out.meta["units"] == "mask" and out.meta["history"][-1]["stage"] == "lung_mask"
    np.testing.assert_allclose(out.affine, _volume(hu, spacing).affine)


def test_without_closing_a_juxtapleural_bump_stays_out() -> None:
    hu, spacing, lung = _hand_built_chest()
    mask = np.asarray(vs.get_stage("lung_mask")(_volume(hu, spacing), closing_mm=0.0).data)[0].astype(bool)
    bump = lung & (hu > -400) & (np.arange(hu.shape[2]) > 70)
    assert bump.sum() > 20 and not mask[bump].any()  # the bump is lost ...
    assert mask[2:22, 38:41, 22:38].all()  # ... the enclosed vessel is not (holes filled)


def test_lung_cut_by_the_field_of_view_is_lost_in_those_slices() -> None:
    """The documented price of per-slice 'outside' detection."""
    stage = vs.get_stage("lung_mask")
    hu, spacing, lung = _hand_built_chest(touch_border_slices=3)
    mask = np.asarray(stage(_volume(hu, spacing)).data)[0].astype(bool)
    assert not mask[2:5, :, 51:].any()  # the right lung touches the border there: dropped
    assert mask[2:5, :, :50].sum() == lung[2:5, :, :50].sum()  # the left one is not
    # slices beyond the closing's reach (2 x 5 mm) are as if the field of view were whole
    whole = np.asarray(stage(_volume(_hand_built_chest()[0], spacing)).data)[0].astype(bool)
    assert np.array_equal(mask[10:], whole[10:])


@pytest.fixture(scope="module")
def phantom():
    return make_ct_phantom((40, 150, 150), (2.5, 1.5, 1.5), seed=4, n_nodules=5,
                           nodule_diameters_mm=(3.0, 30.0), nodule_mix=NoduleMix())


def test_dice_against_the_phantom_lungs(phantom) -> None:
    vol = _volume(phantom.hu, phantom.spacing, origin=phantom.origin_xyz)
    mask = np.asarray(vs.get_stage("lung_mask")(vol).data)[0]
    assert _dice(mask, phantom.lung) >= 0.9
    assert {n.attachment for n in phantom.nodules} >= {"juxtapleural", "isolated"}
    # nodule centres inside the mask: all but juxtapleural ones wider than the closing ...
    centres = [tuple(np.rint(phantom.world_to_index(n.center_xyz)).astype(int)) for n in phantom.nodules]
    for n, k in zip(phantom.nodules, centres):
        if n.attachment != "juxtapleural" or n.diameter_mm <= 2 * 5.0:
            assert mask[k] == 1, n
    # ... and all of them with a margin of the largest radius (what a detector should use)
    margin = max(n.diameter_mm for n in phantom.nodules) / 2
    grown = np.asarray(vs.get_stage("lung_mask")(vol, margin_mm=margin).data)[0]
    assert all(grown[k] == 1 for k in centres)
    assert (grown >= mask).all() and grown.sum() > mask.sum()


def test_windowed_input_gives_the_same_mask(phantom) -> None:
    vol = _volume(phantom.hu, phantom.spacing)
    ref = np.asarray(vs.get_stage("lung_mask")(vol).data)[0]
    for dtype in ("float32", "uint8"):
        win = vs.get_stage("hu_window")(vol, preset="lung", dtype=dtype)
        got = np.asarray(vs.get_stage("lung_mask")(win).data)[0]
        assert _dice(got, ref) > 0.999, dtype
    bone = vs.get_stage("hu_window")(vol, preset="mediastinum")
    with pytest.raises(vs.VoxelstreamError, match="does not contain the threshold"):
        vs.get_stage("lung_mask")(bone)


def test_conforms_on_a_phantom(phantom) -> None:
    small = phantom.hu[:, 15:135, 15:135]
    vol = _volume(small, phantom.spacing, chunks=(13, 50, 50))
    check_stage("lung_mask", vol, params={"closing_mm": 4.0})
    check_stage("lung_mask", vol, params={"closing_mm": 3.0, "margin_mm": 4.0})


def test_rejects_2d_and_multichannel() -> None:
    two_d = vs.Volume.from_array(np.zeros((20, 20), np.int16))
    with pytest.raises(vs.VoxelstreamError, match="3-D image with one channel"):
        vs.get_stage("lung_mask")(two_d)


def test_output_names_are_light_constants() -> None:
    assert (ISO_OUTPUT, LUNG_MASK_OUTPUT) == ("iso", "lung")


def test_preprocess_lung_mask_option_writes_the_mask(tmp_path, phantom, capsys) -> None:
    """``voxelstream ct preprocess --lung-mask`` stores 'lung' on the 'iso' grid; it covers
    the phantom's lungs brought to that grid by SimpleITK (nearest neighbour)."""
    sitk = pytest.importorskip("SimpleITK")
    from voxelstream import geometry
    from voxelstream.cli.main import main

    path = tmp_path / "data.zarr"
    vs.Volume.from_itk_geometry(phantom.hu, spacing=phantom.spacing, origin_xyz=phantom.origin_xyz,
                                direction=np.asarray(phantom.direction).ravel(),
                                meta={"modality": "CT", "units": "HU"}).to_zarr(path, "scan", chunks=32)
    args = ["ct", "preprocess", "--store", str(path), "--spacing", "2", "2", "2", "--chunks", "24", "--lung-mask"]
    assert main(args) == 0
    store = vs.open_store(path)
    iso, lung = store.open("scan", ISO_OUTPUT), store.open("scan", LUNG_MASK_OUTPUT)
    assert lung.spatial_shape == iso.spatial_shape and np.allclose(lung.affine, iso.affine)
    mask = np.asarray(lung.data)[0]
    assert mask.dtype == np.uint8
    img = sitk.GetImageFromArray(phantom.lung.astype(np.uint8))
    img.SetSpacing(phantom.spacing[::-1]), img.SetOrigin(phantom.origin_xyz)
    img.SetDirection(np.asarray(phantom.direction).ravel().tolist())
    o, s, d = geometry.affine_to_itk(lung.affine)
    ref = sitk.GetArrayFromImage(sitk.Resample(img, lung.spatial_shape[::-1], sitk.Transform(),
                                               sitk.sitkNearestNeighbor, o, s, d, 0, sitk.sitkUInt8))
    assert _dice(mask, ref) >= 0.9
    assert main(args) == 0  # a rerun skips both outputs
    assert store.attrs("scan", LUNG_MASK_OUTPUT)["provenance"]["history"][-1]["stage"] == "lung_mask"
