"""Where cubes come from (issue 12, accuracy): negatives restricted to a stored lung mask,
negatives on dense structures, near misses next to nodules, and the mask's point reads."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from test_nodule_support import phantom_volume, store_with
import voxelstream
from voxelstream.errors import VoxelstreamError
from voxelstream_nodules.annotations import Annotation
from voxelstream_nodules.cubes import build_cubes
from voxelstream_nodules.cubeset import CubeSet
from voxelstream_nodules.masking import mask_at_index, mask_at_world
from voxelstream_nodules.sampling import NEAR_MISS_GAP_MM, near_misses

NODULES = {"scanA": [((-52.3, 48.4, -60.9), 8.0), ((-40.0, 60.0, -72.0), 5.0)], "scanB": [((-40.0, 60.0, -70.0), 10.0)]}
WINDOW = {"lo": -1000.0, "hi": 400.0, "dtype": "float32"}  # what ct preprocess records


def _mask_of(vol: voxelstream.Volume) -> np.ndarray:
    """A mask unlike anything the sampler could guess: the body (lungs and tissue, not the
    air around it) in one half of the columns and the upper half of the slices."""
    a = np.asarray(vol.data[0])
    m = a > 0.02
    m[:, :, : a.shape[2] // 2] = False
    m[: a.shape[0] // 2] = False
    return m


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("masked")
    vols = {uid: phantom_volume(i, ns).replace(meta={"window": WINDOW, "series_uid": uid})
            for i, (uid, ns) in enumerate(NODULES.items())}
    st = store_with(tmp, vols)
    for uid, vol in vols.items():
        m = _mask_of(vol).astype(np.uint8)
        st.write(vol.replace(data=da.from_array(m[None], chunks=(1, 16, 16, 16))), uid, "lung", chunks=16)
    return st


def _ann():
    return [Annotation(uid, c, d) for uid, ns in NODULES.items() for c, d in ns]


def _centres(store, cs: CubeSet, kind: str) -> dict[str, np.ndarray]:
    out = {}
    for uid in NODULES:
        w = np.array([(r.world_x, r.world_y, r.world_z) for r in cs.records() if r.kind == kind and r.series_uid == uid])
        out[uid] = (np.rint(store.open(uid, "iso").world_to_index(w)).astype(int).reshape(-1, 3) if len(w)
                    else np.zeros((0, 3), int))
    return out


def test_negatives_with_a_mask_never_leave_it(store, tmp_path):
    build_cubes(store, _ann(), tmp_path / "c.zarr", cube_mm=16.0, negatives_per_volume=25, seed=1, mask="lung")
    cs = CubeSet.open(tmp_path / "c.zarr")
    for uid, idx in _centres(store, cs, "negative").items():
        assert len(idx) == 25
        m = _mask_of(store.open(uid, "iso"))
        assert m[tuple(idx.T)].all()
    # without the mask, the same number of draws lands outside it too: the restriction is real
    build_cubes(store, _ann(), tmp_path / "free.zarr", cube_mm=16.0, negatives_per_volume=25, seed=1)
    free = _centres(store, CubeSet.open(tmp_path / "free.zarr"), "negative")
    assert not all(_mask_of(store.open(uid, "iso"))[tuple(idx.T)].all() for uid, idx in free.items())


def test_structure_negatives_sit_on_dense_voxels_inside_the_mask(store, tmp_path):
    build_cubes(store, _ann(), tmp_path / "s.zarr", cube_mm=16.0, negatives_per_volume=0, structure_negatives=12,
                seed=2, mask="lung")
    cs = CubeSet.open(tmp_path / "s.zarr")
    level = (-500.0 + 1000.0) / 1400.0  # -500 HU in the [-1000, 400] window
    for uid, idx in _centres(store, cs, "negative").items():
        vol = store.open(uid, "iso")
        a = np.asarray(vol.data[0])
        assert 0 < len(idx) <= 12
        assert (a[tuple(idx.T)] > level).all() and _mask_of(vol)[tuple(idx.T)].all()


def test_near_misses_lie_outside_every_nodule_within_the_gap():
    rng = np.random.default_rng(0)
    centres = np.array([[10, 40, 40], [12, 50, 44]])
    diam = np.array([6.0, 20.0])
    sp = (2.0, 1.0, 1.0)
    pts = near_misses(rng, centres[:1], diam[:1], 200, sp, centres, diam)
    assert 0 < len(pts) < 200  # the big neighbour rules some out
    mm = np.linalg.norm((pts[:, None, :] - centres[None]) * sp, axis=2)
    lo, hi = NEAR_MISS_GAP_MM
    slack = 0.5 * np.linalg.norm(sp)  # rounding to a voxel centre
    assert (mm[:, 0] >= 3.0 + lo - slack).all() and (mm[:, 0] <= 3.0 + hi + slack).all()
    assert (mm >= diam / 2 + lo).all()  # clear of every finding's surface by the gap
    assert near_misses(rng, centres, diam, 0, sp, centres, diam).shape == (0, 3)


def test_cube_set_gets_near_miss_cubes_labelled_negative(store, tmp_path):
    build_cubes(store, _ann(), tmp_path / "n.zarr", cube_mm=16.0, negatives_per_volume=2, near_misses_per_nodule=5,
                seed=4)
    cs = CubeSet.open(tmp_path / "n.zarr")
    near = [i for i, r in enumerate(cs.records()) if r.kind == "near_miss"]
    assert near and set(cs.labels()[near]) == {0}


def test_mask_reads_match_the_array_and_a_missing_mask_is_one_clear_error(store, tmp_path):
    vol = store.open("scanA", "iso")
    m = _mask_of(vol)
    rng = np.random.default_rng(5)
    idx = rng.integers(-3, np.array(m.shape) + 3, size=(300, 3))
    inside = np.all((idx >= 0) & (idx < m.shape), axis=1)
    want = np.zeros(len(idx), bool)
    want[inside] = m[tuple(idx[inside].T)]
    np.testing.assert_array_equal(mask_at_index(store, "scanA", "lung", idx), want)
    np.testing.assert_array_equal(mask_at_world(store, "scanA", "lung", vol.index_to_world(idx)), want)
    with pytest.raises(VoxelstreamError, match="--lung-mask"):
        build_cubes(store, _ann(), tmp_path / "x.zarr", cube_mm=16.0, mask="no-such-mask")
    assert not (tmp_path / "x.zarr").exists()  # refused before anything was written
