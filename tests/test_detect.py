"""Detections from probability maps: world positions, chunking independence, suppression, CLI."""

from __future__ import annotations

import argparse
import csv

import dask.array as da
import numpy as np
import pytest

from voxelstream import Volume, open_store
from voxelstream.errors import VoxelstreamError
from voxelstream_nodules.detection import detect_volume
from voxelstream_nodules.detect_evaluate_cmd import DETECT

SHAPE = (20, 36, 40)
SPACING = (2.5, 0.8, 0.7)  # (z, y, x) mm
ORIGIN = (-30.0, 12.5, -140.0)


def _oblique_direction() -> np.ndarray:
    a, b = np.deg2rad(20.0), np.deg2rad(-12.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _geometry_volume(data) -> Volume:
    return Volume.from_itk_geometry(data, spacing=SPACING, origin_xyz=ORIGIN, direction=_oblique_direction())


def _voxel_world(shape=SHAPE) -> np.ndarray:
    """World (x, y, z) of every voxel centre, (z, y, x, 3), from the affine written out by hand:
    world = origin + D @ (spacing * index_xyz)."""
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    idx_xyz = np.stack([xx * SPACING[2], yy * SPACING[1], zz * SPACING[0]], axis=-1)
    return np.asarray(ORIGIN) + idx_xyz @ _oblique_direction().T


def _blob_map(blobs: list[tuple[tuple[float, float, float], float, float]]) -> np.ndarray:
    """max over isotropic world-space Gaussians (centre xyz, amplitude, sigma mm)."""
    world = _voxel_world()
    out = np.zeros(SHAPE, dtype=np.float32)
    for centre, amp, sigma in blobs:
        d2 = ((world - np.asarray(centre)) ** 2).sum(axis=-1)
        out = np.maximum(out, (amp * np.exp(-d2 / (2 * sigma**2))).astype(np.float32))
    return out


# Blob centres given as fractional voxel indices (z, y, x), far from each other (> 20 mm).
BLOB_INDEX = [(4.3, 8.6, 9.2), (14.6, 26.4, 28.7), (12.2, 9.4, 30.5), (5.0, 28.0, 10.0)]
BLOB_AMP = [0.95, 0.8, 0.65, 0.4]  # the last is below the 0.5 threshold
SIGMA = 3.0


def _blobs() -> tuple[Volume, list]:
    probe = _geometry_volume(np.zeros(SHAPE, np.float32))
    centres = probe.index_to_world(np.asarray(BLOB_INDEX))
    blobs = [(tuple(c), a, SIGMA) for c, a in zip(centres, BLOB_AMP)]
    return probe, blobs


def test_blobs_found_at_their_world_positions_for_any_chunking():
    probe, blobs = _blobs()
    prob = _blob_map(blobs)
    results = []
    for chunks in [(20, 36, 40), (8, 8, 8), (5, 13, 7), (3, 36, 11)]:
        vol = _geometry_volume(da.from_array(prob, chunks=chunks))
        results.append(detect_volume(vol, threshold=0.5, min_distance_mm=10.0))
    for other in results[1:]:
        assert other == results[0]
    found = results[0]
    assert len(found) == 3  # the 0.4 blob is under the threshold
    for (x, y, z, p), (centre, amp, sigma), frac in zip(found, blobs, BLOB_INDEX):
        # within half a voxel of the true centre along every index axis
        offset = probe.world_to_index([[x, y, z]])[0] - np.asarray(frac)
        assert np.all(np.abs(offset) <= 0.5 + 1e-9), offset
        # the probability is the blob's value at the nearest voxel centre, by the formula
        nearest = np.round(frac).astype(int)
        expected = amp * np.exp(-np.sum((_voxel_world()[tuple(nearest)] - centre) ** 2) / (2 * sigma**2))
        assert p == pytest.approx(expected, rel=1e-5)
    assert [p for *_, p in found] == sorted((p for *_, p in found), reverse=True)


def test_min_distance_suppresses_the_weaker_of_two_close_peaks():
    probe = _geometry_volume(np.zeros(SHAPE, np.float32))
    a = probe.index_to_world([[10.0, 18.0, 12.0]])[0]
    direction = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    b = a + 6.0 * direction  # 6 mm apart in the world
    prob = _blob_map([(tuple(a), 0.9, 1.2), (tuple(b), 0.7, 1.2)])
    vol = _geometry_volume(da.from_array(prob, chunks=(6, 9, 9)))
    far = detect_volume(vol, threshold=0.3, min_distance_mm=10.0)
    near = detect_volume(vol, threshold=0.3, min_distance_mm=3.0)
    assert len(far) == 1 and far[0][3] == pytest.approx(prob.max())
    assert len(near) == 2
    dist = np.linalg.norm(np.subtract(near[0][:3], near[1][:3]))
    assert abs(dist - 6.0) < 1.5  # each peak within half a voxel (<= 1.5 mm here) of its blob
    assert np.linalg.norm(np.subtract(far[0][:3], a)) < 1.5


def _brute_force(prob: np.ndarray, threshold: float, d_mm: float) -> list[tuple]:
    """The definition, with all voxel pairs in world mm: a voxel >= threshold that no voxel
    within d_mm exceeds; then greedy by probability (ties: index order), no two within d_mm."""
    world = _voxel_world(prob.shape).reshape(-1, 3)
    p = prob.reshape(-1).astype(float)
    d2 = ((world[:, None, :] - world[None, :, :]) ** 2).sum(-1)
    near = d2 <= d_mm**2
    is_max = np.array([p[i] >= p[near[i]].max() for i in range(len(p))]) & (p >= threshold)
    order = sorted(np.flatnonzero(is_max), key=lambda i: (-p[i], i))
    kept: list[int] = []
    for i in order:
        if not any(d2[i, k] <= d_mm**2 for k in kept):
            kept.append(i)
    return [(*world[i], p[i]) for i in kept]


@pytest.mark.parametrize("d_mm", [1.0, 3.0, 6.0])
def test_noise_map_matches_brute_force_definition(d_mm):
    rng = np.random.default_rng(7)
    shape = (8, 14, 15)
    prob = rng.random(shape).astype(np.float32)
    # chunks smaller than the halo (6 mm: 2, 7, 8 voxels) make dask rechunk first
    vol = Volume.from_itk_geometry(da.from_array(prob, chunks=(3, 5, 4)), spacing=SPACING,
                                   origin_xyz=ORIGIN, direction=_oblique_direction())
    got = detect_volume(vol, threshold=0.6, min_distance_mm=d_mm, refine=False)
    want = _brute_force(prob, 0.6, d_mm)
    assert len(got) == len(want) >= 2
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


def test_refinement_centres_a_plateau_and_beats_the_grid_point():
    # a plateau over two neighbouring grid points: the detection lies between them
    prob = np.zeros((9, 9, 9), np.float32)
    prob[4, 4, 4] = prob[4, 4, 5] = 0.9
    vol = Volume.from_itk_geometry(da.from_array(prob, chunks=4), spacing=(4.0, 4.0, 4.0), origin_xyz=ORIGIN,
                                   direction=_oblique_direction())
    (x, y, z, p), = detect_volume(vol, threshold=0.5, min_distance_mm=10.0)
    np.testing.assert_allclose(vol.world_to_index([[x, y, z]])[0], (4.0, 4.0, 4.5), atol=1e-9)
    assert p == pytest.approx(0.9)
    # off-grid blobs: the refined positions are closer to the truth than the grid maxima
    probe, blobs = _blobs()
    vol = _geometry_volume(da.from_array(_blob_map(blobs), chunks=8))
    refined = detect_volume(vol, threshold=0.5, min_distance_mm=10.0)
    grid = detect_volume(vol, threshold=0.5, min_distance_mm=10.0, refine=False)
    truth = np.array([b[0] for b in blobs[:3]])
    err_refined = np.linalg.norm(np.array([r[:3] for r in refined]) - truth, axis=1)
    err_grid = np.linalg.norm(np.array([g[:3] for g in grid]) - truth, axis=1)
    assert np.all(err_refined < err_grid), (err_refined, err_grid)
    assert [r[3] for r in refined] == [g[3] for g in grid]


def _run_detect(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    DETECT.add_arguments(p)
    return DETECT.run(p.parse_args(argv))


def test_detect_command_writes_luna16_csv(tmp_path):
    _, blobs = _blobs()
    prob = _blob_map(blobs)
    store = open_store(tmp_path / "s.zarr", create=True)
    # scan "b": the map as is, named by its series uid; scan "a": the first blob only
    store.write(_geometry_volume(prob).replace(meta={"series_uid": "1.2.3.9"}), "b", "prob", chunks=16)
    store.write(_geometry_volume(_blob_map(blobs[:1])), "a", "prob", chunks=16)
    store.write(_geometry_volume(prob), "c", "image", chunks=16)  # no prob: not a detection source
    out = tmp_path / "dets.csv"
    assert _run_detect(["--store", str(tmp_path / "s.zarr"), "--out", str(out)]) == 0
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["seriesuid", "coordX", "coordY", "coordZ", "probability"]
    uids = [r[0] for r in rows[1:]]
    assert uids == ["1.2.3.9"] * 3 + ["a"]  # sorted by series uid ('1' < 'a')
    probs = [float(r[4]) for r in rows[1:4]]
    assert probs == sorted(probs, reverse=True)
    for r, (centre, _, _) in zip(rows[1:4], blobs):
        # world mm, nearest voxel to the blob: within half a voxel diagonal (~1.4 mm)
        assert np.linalg.norm(np.asarray(r[1:4], float) - centre) < 0.5 * np.linalg.norm(SPACING) + 1e-3


def test_detect_command_without_prob_outputs_says_run_infer(tmp_path):
    store = open_store(tmp_path / "s.zarr", create=True)
    store.write(_geometry_volume(np.zeros(SHAPE, np.float32)), "a", "image", chunks=16)
    with pytest.raises(VoxelstreamError, match="voxelstream nodules infer"):
        _run_detect(["--store", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "d.csv")])


def test_detect_command_with_a_mask_drops_detections_outside_it(tmp_path):
    _, blobs = _blobs()
    prob = _blob_map(blobs)
    store = open_store(tmp_path / "s.zarr", create=True)
    vol = _geometry_volume(prob)
    store.write(vol, "b", "prob", chunks=16)
    # the mask (on the same grid here; any grid works through world coordinates) is 0 within
    # 4 mm of the first blob's centre only
    world = vol.index_to_world(np.argwhere(np.ones(SHAPE, bool))).reshape(*SHAPE, 3)
    mask = (np.linalg.norm(world - np.asarray(blobs[0][0]), axis=-1) > 4.0).astype(np.uint8)
    store.write(_geometry_volume(mask), "b", "lung", chunks=16)
    full, masked = tmp_path / "all.csv", tmp_path / "masked.csv"
    assert _run_detect(["--store", str(tmp_path / "s.zarr"), "--out", str(full)]) == 0
    assert _run_detect(["--store", str(tmp_path / "s.zarr"), "--out", str(masked), "--mask", "lung"]) == 0
    rows = {p: [list(map(float, r[1:4])) for r in list(csv.reader(p.open()))[1:]] for p in (full, masked)}
    near_first = [np.linalg.norm(np.asarray(r) - blobs[0][0]) < 2.0 for r in rows[full]]
    assert sum(near_first) == 1
    assert rows[masked] == [r for r, near in zip(rows[full], near_first) if not near]
    with pytest.raises(VoxelstreamError, match="--lung-mask"):
        _run_detect(["--store", str(tmp_path / "s.zarr"), "--out", str(masked), "--mask", "nope"])
