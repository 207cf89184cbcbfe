"""Same command and seed, same numbers (issue 12, item 1): cube sets, probability maps and
detections do not depend on the scheduler, its thread timing or tiles evaluated at once; the
demo run twice in fresh processes prints the same table and writes the same artefacts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_nodule_support import phantom_volume, store_with
from voxelstream.scheduler import use_scheduler
from voxelstream_nodules.annotations import Annotation
from voxelstream_nodules.cubes import build_cubes
from voxelstream_nodules.cubeset import CubeSet

jax = pytest.importorskip("jax")
from voxelstream.models import save_model  # noqa: E402
from voxelstream_nodules.detection import detect_volume  # noqa: E402
from voxelstream_nodules.inference import infer_store  # noqa: E402
from voxelstream_nodules.model import MODEL_NAME, NetConfig, build  # noqa: E402

NODULES = {"scanA": [((-52.3, 48.4, -60.9), 8.0)], "scanB": [((-40.0, 60.0, -70.0), 10.0)]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("determinism")
    return store_with(tmp, {uid: phantom_volume(i, ns) for i, (uid, ns) in enumerate(NODULES.items())})


def _cubes(store, out: Path, scheduler: str) -> tuple[np.ndarray, str]:
    ann = [Annotation(uid, c, d) for uid, ns in NODULES.items() for c, d in ns]
    with use_scheduler(scheduler):
        build_cubes(store, ann, out, cube_mm=16.0, negatives_per_volume=5, augment_copies=2, seed=7)
    cs = CubeSet.open(out)
    return cs.read(np.arange(len(cs))), (out / "index.csv").read_text()


def test_cube_sets_are_the_same_on_every_scheduler(store, tmp_path):
    ref_cubes, ref_index = _cubes(store, tmp_path / "sync.zarr", "sync")
    for scheduler in ("threads",):
        cubes, index = _cubes(store, tmp_path / f"{scheduler}.zarr", scheduler)
        assert index == ref_index
        np.testing.assert_array_equal(cubes, ref_cubes)
    assert len(ref_cubes) == 2 + 2 * 2 + 2 * 5


def test_probability_maps_and_detections_are_the_same_whatever_the_timing(store, tmp_path, monkeypatch):
    cfg = NetConfig(cube=16, channels=(4, 8), head_channels=8)
    model_dir = save_model(tmp_path / "model", MODEL_NAME, cfg.to_dict(), build(cfg, seed=5))
    runs = []
    for scheduler, at_once, out in (("sync", "1", "p1"), ("threads", "2", "p2")):
        monkeypatch.setenv("VOXELSTREAM_INFER_TILES_AT_ONCE", at_once)
        with use_scheduler(scheduler):
            report = infer_store(store, model_dir, out_name=out, tile=5)  # several tiles per volume
            assert not report.failed
            maps = {vid: store.open(vid, out) for vid in NODULES}
            dets = {vid: detect_volume(m, threshold=0.0, min_distance_mm=6.0) for vid, m in maps.items()}
        runs.append(({vid: np.asarray(m.data) for vid, m in maps.items()}, dets))
    for maps, dets in runs[1:]:
        assert dets == runs[0][1]  # exact floats, same order
        for vid in NODULES:
            np.testing.assert_array_equal(maps[vid], runs[0][0][vid])
    assert all(len(d) > 1 for d in runs[0][1].values())


def _demo(out: Path) -> str:
    proc = subprocess.run([str(Path(sys.executable).with_name("voxelstream")), "nodules", "demo", "--out", str(out),
                           "--train-scans", "4", "--test-scans", "2", "--seed", "3"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _table(stdout: str) -> list[str]:
    """The demo's closing table: title, header and one row per round (no paths, no times)."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if "voxelstream nodules demo: LUNA16" in ln)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("└"))
    return lines[start : end + 1]


@pytest.mark.slow
def test_demo_twice_gives_the_same_numbers(tmp_path):
    """The real CLI in two fresh processes: same table, cubes, weights, maps, detections, FROC."""
    a, b = tmp_path / "a", tmp_path / "b"
    out_a, out_b = _demo(a), _demo(b)
    assert _table(out_a) and _table(out_a) == _table(out_b)
    assert json.loads((a / "summary.json").read_text()) == json.loads((b / "summary.json").read_text())
    ca, cb = CubeSet.open(a / "cubes.zarr"), CubeSet.open(b / "cubes.zarr")
    assert (a / "cubes.zarr" / "index.csv").read_text() == (b / "cubes.zarr" / "index.csv").read_text()
    np.testing.assert_array_equal(ca.read(np.arange(len(ca))), cb.read(np.arange(len(cb))))
    for model in ("model-round0", "model-round1"):
        wa, wb = np.load(a / model / "weights.npz"), np.load(b / model / "weights.npz")
        assert wa.files == wb.files and all(np.array_equal(wa[k], wb[k]) for k in wa.files)
    for r in (0, 1):
        assert (a / f"detections_round{r}.csv").read_text() == (b / f"detections_round{r}.csv").read_text()
        assert (a / f"eval_round{r}" / "froc.json").read_text() == (b / f"eval_round{r}" / "froc.json").read_text()
