"""Hard-negative mining on hand-made probability maps (no model needed: the maps are given)."""

import json

import dask.array as da
import numpy as np
import pytest

import voxelstream as vs
from voxelstream_nodules.annotations import Annotation
from voxelstream_nodules.cubeset import CubeRecord, CubeSet
from voxelstream_nodules.mining import false_positives, mine_hard_negatives

EDGE = 8


def test_false_positives_keep_clear_of_radius_plus_margin():
    nodule = Annotation("s", (0.0, 0.0, 0.0), 10.0)  # radius 5 mm
    dets = [(0, 0, 7.9, 0.9), (0, 0, 8.1, 0.8), (30, 0, 0, 0.7), (0, 3, 0, 0.6)]
    # margin 3 mm: anything within 5 + 3 = 8 mm of the centre is a hit, not a false positive
    assert false_positives(dets, [nodule], margin_mm=3.0) == [(0, 0, 8.1, 0.8), (30, 0, 0, 0.7)]
    assert false_positives(dets, [], margin_mm=3.0) == dets


@pytest.fixture()
def setup(tmp_path):
    rng = np.random.default_rng(0)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    spacing, origin = (1.0, 1.0, 1.0), (10.0, -20.0, 30.0)
    peaks = {  # per series: prob-map voxels (z, y, x) with their probabilities
        "train-a": [((2, 2, 2), 0.95), ((2, 6, 6), 0.9), ((6, 2, 6), 0.8), ((6, 6, 2), 0.3)],
        "val-b": [((3, 3, 3), 0.99)],
    }
    isos = {}
    for uid, pts in peaks.items():
        iso = rng.uniform(0, 1, (32, 32, 32)).astype(np.float32)
        isos[uid] = iso
        vol = vs.Volume.from_itk_geometry(da.from_array(iso, chunks=16), spacing=spacing, origin_xyz=origin,
                                          meta={"series_uid": uid})
        store.write(vol, uid, "iso", chunks=16)
        prob = np.zeros((8, 8, 8), np.float32)
        for p, v in pts:
            prob[p] = v
        # the map's own grid: stride 4 voxels, first window centre at iso index (0, 0, 0)
        pvol = vs.Volume.from_itk_geometry(da.from_array(prob, chunks=4), spacing=(4.0, 4.0, 4.0),
                                           origin_xyz=origin, meta={"series_uid": uid})
        store.write(pvol, uid, "prob", chunks=4)
    model = tmp_path / "model"
    model.mkdir()
    (model / "split.json").write_text(json.dumps({"train": ["train-a"], "val": ["val-b"]}))
    cubes = CubeSet.create(tmp_path / "cubes.zarr", (EDGE,) * 3, np.float32)
    cubes.append(np.zeros((1, EDGE, EDGE, EDGE), np.float32), [CubeRecord("train-a", 1, "positive", 0, 0, 0)])
    # the nodule sits on the strongest peak: prob voxel (2, 2, 2) = iso (8, 8, 8) = world origin + 8 mm
    nodule = Annotation("train-a", (18.0, -12.0, 38.0), 6.0)
    return store, model, tmp_path / "cubes.zarr", nodule, isos


def test_mining_appends_top_false_positives_of_training_series_only(setup):
    store, model, cubes_path, nodule, isos = setup
    report = mine_hard_negatives(store, model, [nodule], cubes_path, per_volume=2, threshold=0.5,
                                 margin_mm=2.0, min_distance_mm=4.0)
    assert report.found == {"train-a": 2} and report.appended == {"train-a": 2}  # 0.3 is under the threshold
    cubes = CubeSet.open(cubes_path)
    new = cubes.records()[1:]
    assert [r.kind for r in new] == ["hard_negative"] * 2 and set(cubes.labels()[1:]) == {0}
    assert all(r.series_uid == "train-a" for r in new)  # the validation series is never mined
    # most confident first: prob voxel (2, 6, 6) -> iso (8, 24, 24) -> world (x, y, z) = origin + (24, 24, 8)
    assert (new[0].world_x, new[0].world_y, new[0].world_z) == pytest.approx((34.0, 4.0, 38.0))
    # its cube is iso[c - 4 : c + 4] around the centre voxel, cut by hand
    np.testing.assert_array_equal(cubes.read([1])[0], isos["train-a"][4:12, 20:28, 20:28])
    # mining again finds the same false positives, already in the set: nothing is duplicated
    again = mine_hard_negatives(store, model, [nodule], cubes_path, per_volume=2, threshold=0.5,
                                margin_mm=2.0, min_distance_mm=4.0)
    assert again.total == 0 and len(CubeSet.open(cubes_path)) == 3


def test_mining_needs_the_probability_maps(setup):
    store, model, cubes_path, nodule, _ = setup
    store.delete("train-a", "prob")
    with pytest.raises(vs.VoxelstreamError, match="voxelstream nodules infer"):
        mine_hard_negatives(store, model, [nodule], cubes_path)


def test_mining_validation_series_only_when_asked(setup):
    store, model, cubes_path, nodule, _ = setup
    report = mine_hard_negatives(store, model, [nodule], cubes_path, per_volume=5, threshold=0.5,
                                 margin_mm=2.0, min_distance_mm=4.0, validation=True)
    assert report.appended == {"train-a": 2, "val-b": 1}
    val = [r for r in CubeSet.open(cubes_path).records() if r.series_uid == "val-b"]
    # prob voxel (3, 3, 3) -> iso (12, 12, 12) -> world origin + 12 mm
    assert [(r.kind, r.world_x, r.world_y, r.world_z) for r in val] == [("hard_negative", 22.0, -8.0, 42.0)]


def test_mining_with_a_mask_skips_false_positives_outside_it(setup):
    store, model, cubes_path, nodule, _ = setup
    iso = store.open("train-a", "iso")
    mask = np.ones((32, 32, 32), np.uint8)
    mask[4:12, 20:28, 20:28] = 0  # around iso (8, 24, 24): the most confident false positive
    store.write(iso.replace(data=da.from_array(mask[None], chunks=16)), "train-a", "lung", chunks=16)
    report = mine_hard_negatives(store, model, [nodule], cubes_path, per_volume=5, threshold=0.5,
                                 margin_mm=2.0, min_distance_mm=4.0, mask="lung")
    assert report.found == {"train-a": 1}
    new = CubeSet.open(cubes_path).records()[1:]
    # the one left: prob voxel (6, 2, 6) -> iso (24, 8, 24)
    assert [(r.world_x, r.world_y, r.world_z) for r in new] == [(34.0, -12.0, 54.0)]
