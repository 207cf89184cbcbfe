"""The cube set built by the nodule-detection task, checked against SimpleITK and by hand."""

from __future__ import annotations

import itertools
import warnings

from dask.callbacks import Callback
import numpy as np
import pytest

from test_nodule_support import hand_cube, phantom_volume, sitk_centre_zyx, sitk_image, store_with
import voxelstream
from voxelstream.cli.main import main
from voxelstream.errors import ReadError
from voxelstream_nodules.annotations import read_annotations
from voxelstream_nodules.cubes import build_cubes
from voxelstream_nodules.cubeset import CubeRecord, CubeSet
from voxelstream_nodules.extract import chunk_groups
from voxelstream_nodules.sampling import clear_of_findings

# world (x, y, z) mm and diameter; with the phantom's tilted geometry these sit at fractional
# indices (z, y, x) of about (19.55, 32.3, 18.4) and (2, 30, 45) (the second near the top border)
NODULES = {
    "scanA": [((-52.3, 48.4, -60.9), 8.0), ((-50.0, 75.0, -96.0), 6.0)],
    "scanB": [((-40.0, 60.0, -70.0), 10.0)],
}
OUTSIDE = ("scanA", (-52.0, 48.0, 0.0), 5.0)  # z index 50 of 40
UNKNOWN = ("not-in-store", (0.0, 0.0, 0.0), 5.0)
CUBE_MM = 16.0
EDGE = (8, 16, 16)  # 16 mm at spacing (2, 1, 1)


def _csv(path, rows, crlf=True):
    eol = "\r\n" if crlf else "\n"
    lines = ["seriesuid,coordX,coordY,coordZ,diameter_mm"]
    lines += [f"{uid},{x},{y},{z},{d}" for uid, (x, y, z), d in rows]
    path.write_bytes((eol.join(lines) + eol).encode())
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cubes")
    vols = {uid: phantom_volume(i, nodules) for i, (uid, nodules) in enumerate(NODULES.items())}
    store = store_with(tmp, vols)
    rows = [(uid, c, d) for uid, ns in NODULES.items() for c, d in ns] + [OUTSIDE, UNKNOWN]
    ann = _csv(tmp / "annotations.csv", rows)
    excl = _csv(tmp / "excluded.csv", [("scanB", (-30.0, 40.0, -50.0), -1)])
    return tmp, store, vols, ann, excl


@pytest.fixture(autouse=True)
def _quiet_outside_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*outside the volume")
        yield


def _build(dataset, out, seed=3, **kw):
    tmp, store, _, ann, excl = dataset
    kw.setdefault("negatives_per_volume", 6)
    return build_cubes(store, read_annotations(ann), tmp / out, cube_mm=CUBE_MM,
                       excluded=read_annotations(excl), seed=seed, **kw)


def test_annotations_parse_crlf_and_unknown_diameters(dataset):
    tmp, *_ , ann, excl = dataset
    rows = read_annotations(ann)
    assert [r.series_uid for r in rows][:3] == ["scanA", "scanA", "scanB"]
    assert rows[0].world_xyz == (-52.3, 48.4, -60.9) and rows[0].diameter_mm == 8.0
    ex = read_annotations(excl)[0]
    assert ex.diameter_mm == -1 and ex.clearance_diameter_mm > 0
    bad = tmp / "bad.csv"
    bad.write_text("uid,x,y\n1,2,3\n")
    with pytest.raises(ReadError, match="missing column"):
        read_annotations(bad)


def test_positive_cubes_match_simpleitk_hand_cut(dataset):
    tmp, _, vols, *_ = dataset
    with pytest.warns(UserWarning, match="outside the volume"):
        report = _build(dataset, "pos.zarr")
    assert report.rows_unknown_series == 1 and len(report.rows_outside) == 1
    cs = CubeSet.open(tmp / "pos.zarr")
    assert cs.cube_shape == EDGE
    recs = cs.records()
    positives = [i for i, r in enumerate(recs) if r.kind == "positive"]
    assert len(positives) == 3
    for i in positives:
        r = recs[i]
        vol = vols[r.series_uid]
        img = sitk_image(vol)
        centre = sitk_centre_zyx(img, (r.world_x, r.world_y, r.world_z))
        expected = hand_cube(np.asarray(vol.data[0]), centre, EDGE, pad=0.0)
        np.testing.assert_array_equal(cs.read([i])[0], expected)
        assert cs.labels()[i] == 1
    # the nodule at z index 2 reaches past the border: the cube is padded, not shifted
    near_border = [i for i in positives if recs[i].world_z == -96.0][0]
    assert (cs.read([near_border])[0][:2] == 0.0).all()


def test_negatives_are_clear_of_findings_and_inside_body(dataset):
    tmp, _, vols, ann, excl = dataset
    _build(dataset, "neg.zarr", negatives_per_volume=8)
    cs = CubeSet.open(tmp / "neg.zarr")
    findings = read_annotations(ann) + read_annotations(excl)
    negs = [(i, r) for i, r in enumerate(cs.records()) if r.kind == "negative"]
    assert len(negs) == 16
    for i, r in negs:
        vol = vols[r.series_uid]
        img = sitk_image(vol)
        centre = np.array(sitk_centre_zyx(img, (r.world_x, r.world_y, r.world_z)))
        for f in (f for f in findings if f.series_uid == r.series_uid):
            # independent check in mm along the image axes, using SimpleITK's geometry
            fidx = np.array(img.TransformPhysicalPointToContinuousIndex(f.world_xyz)[::-1])
            gap = np.abs(centre - fidx) * np.array(vol.spacing)
            assert (gap > CUBE_MM / 2 + max(f.diameter_mm, 0) / 2).any(), (r, f)
        cube = cs.read([i])[0]
        assert cs.labels()[i] == 0
        assert np.asarray(vol.data[0])[tuple(centre)] > 0.05  # the centre is body (tissue or lung)
        np.testing.assert_array_equal(cube, hand_cube(np.asarray(vol.data[0]), centre, EDGE, 0.0))


def test_same_seed_same_cubes_other_seed_other_negatives(dataset):
    tmp = dataset[0]
    for out, seed in (("s1.zarr", 5), ("s2.zarr", 5), ("s3.zarr", 6)):
        _build(dataset, out, seed=seed, augment_copies=2)
    a, b, c = (CubeSet.open(tmp / o) for o in ("s1.zarr", "s2.zarr", "s3.zarr"))
    np.testing.assert_array_equal(a.read(range(len(a))), b.read(range(len(b))))
    assert a.records() == b.records()
    assert [r for r in a.records() if r.kind == "negative"] != [r for r in c.records() if r.kind == "negative"]


def test_augmented_cubes_are_flipped_turned_shifted_positives(dataset):
    tmp, _, vols, ann, _ = dataset
    _build(dataset, "aug.zarr", augment_copies=3)
    cs = CubeSet.open(tmp / "aug.zarr")
    recs = cs.records()
    aug = [(i, r) for i, r in enumerate(recs) if r.kind == "augmented"]
    assert len(aug) == 9 and all(cs.labels()[i] == 1 for i, _ in aug)
    nodules = {(a.series_uid, a.world_xyz) for a in read_annotations(ann)}
    diameters = [(a.series_uid, a.world_xyz, a.diameter_mm) for a in read_annotations(ann)]
    for i, r in aug:
        vol = vols[r.series_uid]
        w = np.array([r.world_x, r.world_y, r.world_z])
        assert any(uid == r.series_uid and np.all(np.abs(w - np.array(c)) <= 3.0 + 1e-6) for uid, c in nodules)
        # and by at most a quarter of the diameter per axis: the nodule stays at the centre
        assert any(uid == r.series_uid and np.linalg.norm(w - np.array(c)) <= np.sqrt(3) * d / 4 + 1e-6
                   for uid, c, d in diameters)
        raw = hand_cube(np.asarray(vol.data[0]), sitk_centre_zyx(sitk_image(vol), w), EDGE, 0.0)
        cube = cs.read([i])[0]
        assert any(np.array_equal(cube, v) for v in _orientations_about_centre_voxel(raw))


def _orientations_about_centre_voxel(raw):
    """Every flip/quarter-turn of ``raw`` about its centre voxel ``n // 2`` by index
    arithmetic: voxel ``c + d`` goes to ``c + d'`` with ``d'`` the flipped/turned offset."""
    n = np.array(raw.shape)
    c = n // 2
    idx = np.stack(np.meshgrid(*(np.arange(k) for k in n), indexing="ij"), -1)
    d = idx - c
    for flips in itertools.product((1, -1), repeat=3):
        for k in range(4):
            dz, dy, dx = d[..., 0] * flips[0], d[..., 1] * flips[1], d[..., 2] * flips[2]
            for _ in range(k):  # a quarter turn in (y, x): (dy, dx) -> (-dx, dy), as np.rot90
                dy, dx = -dx, dy
            out = np.empty_like(raw)
            src = np.stack([dz, dy, dx], -1) + c
            out[tuple(np.moveaxis(src % n, -1, 0))] = raw  # wrap: the outermost layer of an even edge
            yield out


def test_chunk_groups_cover_only_touched_chunks():
    rng = np.random.default_rng(0)
    shape, chunks, edge = (40, 64, 70), (16, 16, 16), (8, 16, 16)
    starts = rng.integers(-10, 60, size=(200, 3))
    groups = chunk_groups(starts, edge, shape, chunks)
    for key, members in groups.items():
        for i in members:
            for ax in range(3):
                lo, hi = max(starts[i, ax], 0), min(starts[i, ax] + edge[ax], shape[ax])
                if hi <= lo:
                    assert key == ()
                    break
                k0, k1 = key[2 * ax], key[2 * ax + 1]
                assert k0 % chunks[ax] == 0 and k0 <= lo and hi <= k1
                assert k0 == lo // chunks[ax] * chunks[ax]  # no chunk before the cube
                assert k1 == min(-(-hi // chunks[ax]) * chunks[ax], shape[ax])  # none after it


def test_reads_run_on_the_dask_scheduler(dataset):
    calls = []
    with Callback(pretask=lambda key, dsk, state: calls.append(key)):
        _build(dataset, "sched.zarr", negatives_per_volume=2)
    assert any("_read_group" in str(k) for k in calls)


def test_clearance_rule_by_hand():
    spacing = (2.0, 1.0, 1.0)
    # finding at index (10, 10, 10), 6 mm: limit = 8 + 3 = 11 mm per axis
    f, d = np.array([[10, 10, 10]]), np.array([6.0])
    cases = {(10, 10, 22): True, (10, 10, 21): False, (16, 10, 10): True, (15, 20, 20): False}
    got = clear_of_findings(np.array(list(cases)), f, d, spacing, 16.0)
    assert list(got) == list(cases.values())


def test_cubeset_append_and_batches(tmp_path):
    cs = CubeSet.create(tmp_path / "c.zarr", (2, 3, 4), "float32")
    a = np.arange(2 * 24, dtype=np.float32).reshape(2, 2, 3, 4)
    cs.append(a, [CubeRecord("s", 1, "positive", 1, 2, 3), CubeRecord("s", 0, "negative", 4, 5, 6)])
    cs2 = CubeSet.open(tmp_path / "c.zarr", mode="a")
    cs2.append(a[:1] + 100, [CubeRecord("t", 0, "hard_negative", 7, 8, 9)])
    cs3 = CubeSet.open(tmp_path / "c.zarr")
    assert len(cs3) == 3 and list(cs3.labels()) == [1, 0, 0]
    assert [r.kind for r in cs3.records()] == ["positive", "negative", "hard_negative"]
    np.testing.assert_array_equal(cs3.read([2, 0]), np.stack([a[0] + 100, a[0]]))
    got = list(cs3.batches([2, 1, 0], batch_size=2))
    assert [len(x) for x, _ in got] == [2, 1] and list(got[0][1]) == [0, 0]


def test_cli_cubes_end_to_end(dataset, capsys):
    tmp, store, _, ann, excl = dataset
    rc = main(["nodules", "cubes", "--store", str(store.path), "--annotations", str(ann), "--out", str(tmp / "cli.zarr"),
               "--cube-mm", str(CUBE_MM), "--negatives-per-volume", "3", "--augment", "1",
               "--excluded", str(excl), "--seed", "1"])
    out = capsys.readouterr()
    assert rc == 0
    assert "outside the volume" in out.err and "1 annotation row(s)" in out.err
    cs = CubeSet.open(tmp / "cli.zarr")
    assert len(cs) == 3 + 3 + 6
    header = (tmp / "cli.zarr" / "index.csv").read_text().splitlines()[0]
    assert header == "series_uid,label,kind,world_x,world_y,world_z"


def test_cli_pipeline_on_project_phantoms(tmp_path, capsys):
    """phantoms -> ingest -> preprocess -> cubes, positives checked with SimpleITK on the
    preprocessed volumes."""
    scans, store_path, cubes = tmp_path / "scans", tmp_path / "s.zarr", tmp_path / "cubes.zarr"
    assert main(["ct", "phantoms", "--out", str(scans), "--n", "2", "--seed", "4"]) == 0
    assert main(["ingest", str(scans), "--store", str(store_path)]) == 0
    assert main(["ct", "preprocess", "--store", str(store_path)]) == 0
    assert main(["nodules", "cubes", "--store", str(store_path), "--annotations", str(scans / "annotations.csv"),
                 "--excluded", str(scans / "annotations_excluded.csv"), "--out", str(cubes),
                 "--negatives-per-volume", "2", "--seed", "0"]) == 0
    capsys.readouterr()
    rows = read_annotations(scans / "annotations.csv")
    cs = CubeSet.open(cubes)
    assert cs.cube_shape == (48, 48, 48)
    store = voxelstream.open_store(store_path)
    positives = [(i, r) for i, r in enumerate(cs.records()) if r.kind == "positive"]
    assert len(positives) == len(rows)
    for i, r in positives:
        vol = store.open(r.series_uid, "iso")
        centre = sitk_centre_zyx(sitk_image(vol), (r.world_x, r.world_y, r.world_z))
        np.testing.assert_array_equal(cs.read([i])[0], hand_cube(np.asarray(vol.data[0]), centre, (48,) * 3, 0.0))
