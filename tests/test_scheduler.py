"""The same graph gives the same store on the threaded scheduler and on dask.distributed."""

import numpy as np
import pytest
import SimpleITK as sitk

import voxelstream as vs
from voxelstream.cli.main import main


def _write_mhd(path, seed):
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1500, (23, 30, 27)).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((-100.0, 20.0, -300.5))
    img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(img, str(path))
    return arr


@pytest.mark.distributed
def test_threads_and_local_cluster_give_identical_stores(tmp_path, capsys):
    scans = tmp_path / "scans"
    scans.mkdir()
    arrays = {f"scan{i}": _write_mhd(scans / f"scan{i}.mhd", i) for i in range(2)}
    pipe = tmp_path / "p.toml"
    results = {}
    for sched in ("threads", "local:2"):
        store_path = tmp_path / f"{sched.replace(':', '')}.zarr"
        assert main(["ingest", str(scans), "--store", str(store_path), "--chunks", "16", "--scheduler", sched]) == 0
        pipe.write_text(
            f'[pipeline]\nstore = "{store_path}"\noutput = "smooth"\nscheduler = "{sched}"\n'
            '[[stages]]\nname = "gaussian"\nsigma = 1.0\n'
        )
        assert main(["run", str(pipe)]) == 0
        store = vs.open_store(store_path)
        results[sched] = {
            vid: (store.open(vid).data.compute(), store.open(vid, "smooth").data.compute(), store.open(vid).affine)
            for vid in store.volume_ids()
        }
    assert sorted(results["threads"]) == sorted(arrays)
    for vid, (image, smooth, affine) in results["threads"].items():
        d_image, d_smooth, d_affine = results["local:2"][vid]
        np.testing.assert_array_equal(image[0], arrays[vid])
        np.testing.assert_array_equal(d_image, image)
        np.testing.assert_array_equal(d_smooth, smooth)
        np.testing.assert_array_equal(d_affine, affine)


@pytest.mark.parametrize("spec, msg", [("local:0", "N >= 1"), ("gpu-cluster", "unknown"), ("tcp://127.0.0.1:1", "cannot reach")])
def test_bad_scheduler_is_a_one_line_error(tmp_path, capsys, spec, msg):
    scans = tmp_path / "scans"
    scans.mkdir()
    _write_mhd(scans / "a.mhd", 0)
    code = main(["ingest", str(scans), "--store", str(tmp_path / "s.zarr"), "--scheduler", spec])
    err = capsys.readouterr().err
    assert code == 1 and msg in err and "Traceback" not in err


def _flip_a_byte(path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.distributed
def test_small_volumes_share_tasks_on_a_cluster_and_one_fails_alone(tmp_path):
    """24 small volumes on 2 worker processes: several go to one task (fewer round trips),
    yet each volume reports its own line, a damaged one fails alone with its own error, and
    every other output equals the threaded scheduler's."""
    import io

    from distributed import get_task_stream

    from voxelstream.pipeline import StageCall, run_pipeline
    from voxelstream.scheduler import use_scheduler
    from voxelstream.testing import sample_volume

    store = vs.open_store(tmp_path / "s.zarr", create=True)
    for i in range(24):
        store.write(sample_volume((6, 6, 6), seed=i), f"v{i:02d}", chunks=8)
    stages = [StageCall("gaussian", {"sigma": 1.0})]
    with use_scheduler("threads"):
        assert run_pipeline(store, stages, output="ref", out=io.StringIO()).exit_code == 0

    _flip_a_byte(next(p for p in (store.path / "volumes" / "v07" / "image" / "0" / "c").rglob("*") if p.is_file()))
    out, err = io.StringIO(), io.StringIO()
    with use_scheduler("local:2") as client, get_task_stream(client) as tasks:
        report = run_pipeline(store, stages, output="smooth", out=out, err=err)
    assert report.exit_code == 1
    errors = err.getvalue().strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: v07: ") and "chunk" in errors[0], errors
    done = sorted(line.split("\t")[0].split()[-1] for line in out.getvalue().strip().splitlines())
    assert done == [f"v{i:02d}" for i in range(24) if i != 7]
    keys = {t["key"] for t in tasks.data}
    assert any("-and-" in k for k in keys) and len(keys) < 24, keys  # some tasks carried several volumes
    for vid in done:
        np.testing.assert_array_equal(store.open(vid, "smooth").data.compute(), store.open(vid, "ref").data.compute())


@pytest.mark.distributed
def test_small_scans_are_ingested_several_to_a_task_and_read_as_simpleitk_reads_them(tmp_path):
    import io

    from distributed import get_task_stream

    from voxelstream.ingest import ingest
    from voxelstream.scheduler import use_scheduler

    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(8):
        _write_mhd(scans / f"s{i}.mhd", i)
    store = vs.open_store(tmp_path / "s.zarr", create=True)
    with use_scheduler("local:2") as client, get_task_stream(client) as tasks:
        report = ingest([str(scans)], store, out=io.StringIO(), err=io.StringIO())
    assert report.exit_code == 0
    keys = {t["key"] for t in tasks.data}
    assert any("-and-" in k for k in keys) and len(keys) < 8, keys  # their files' sizes let them share
    assert len(store.volume_ids("image")) == 8
    for i in range(8):
        want = sitk.GetArrayFromImage(sitk.ReadImage(str(scans / f"s{i}.mhd")))
        vid = next(v for v in store.volume_ids("image") if v.endswith(f"s{i}"))
        np.testing.assert_array_equal(store.open(vid).data.compute()[0], want)


@pytest.mark.distributed
def test_a_volume_that_kills_its_worker_fails_alone_though_it_shared_a_task(tmp_path):
    import functools
    import io

    import dask

    from voxelstream.runner import VolumeJob, run_per_volume
    from voxelstream.scheduler import use_scheduler

    def build(vid):  # a closure: travels by value to the workers
        import os

        from voxelstream.testing import sample_volume

        if vid == "v01":
            os._exit(3)  # a crash in native code, say: the worker process dies
        return sample_volume((6, 6, 6), seed=int(vid[1:]))

    store = vs.open_store(tmp_path / "s.zarr", create=True)
    jobs = [VolumeJob(f"v{i:02d}", functools.partial(build, f"v{i:02d}"), nbytes=10) for i in range(16)]
    out, err = io.StringIO(), io.StringIO()
    # no retries, and one task per worker at a time: the task on a dying worker is the one that
    # killed it (by default dask retries a task whose worker died 3 times, so a bystander task
    # queued on that worker runs again elsewhere)
    config = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
    with dask.config.set(config), use_scheduler("local:2"):
        report = run_per_volume(store, jobs, output="img", command="test", params={}, out=out, err=err)
    errors = err.getvalue().strip().splitlines()
    assert report.exit_code == 1
    assert len(errors) == 1 and errors[0].startswith("error: v01: "), errors
    assert store.volume_ids("img") == [f"v{i:02d}" for i in range(16) if i != 1]


def _settings(keys: list[str]) -> dict[str, str]:
    import dask

    return {key: str(dask.config.get(key)) for key in keys}


@pytest.mark.distributed
def test_local_clusters_wake_less_often_but_keep_what_the_user_set(monkeypatch):
    from pathlib import Path

    import dask
    import distributed
    import yaml

    from voxelstream.scheduler import LOCAL_CLUSTER_SETTINGS, use_scheduler

    # dask's shipped defaults, from its own file (what a cluster started by hand would use)
    shipped = yaml.safe_load((Path(distributed.__file__).parent / "distributed.yaml").read_text())

    def default(key: str) -> str:
        node = shipped
        for part in key.split("."):
            node = node[part]
        return str(node)

    keys = list(LOCAL_CLUSTER_SETTINGS)
    mine = "distributed.admin.tick.interval"  # set in this process
    env = "distributed.worker.profile.interval"  # set in the environment, to dask's own default
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL", default(env))
    with dask.config.set({mine: "50ms"}), use_scheduler("local:1") as client:
        got = list(client.run(_settings, keys).values())[0]
        tick = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.periodic_callbacks["tick"].callback_time)
    assert got[mine] == "50ms" and tick == 50  # the user's value, on the workers and the scheduler
    assert got[env] == default(env)  # chosen by the user, though it is the default: kept
    others = [key for key in keys if key not in (mine, env)]
    assert others
    for key in others:
        assert got[key] == LOCAL_CLUSTER_SETTINGS[key][1] != default(key), key
        assert LOCAL_CLUSTER_SETTINGS[key][0] == default(key), key  # still dask's default: it is replaced
    assert _settings([mine, *others]) == {k: default(k) for k in (mine, *others)}  # this process's config as it was


def _warm() -> tuple[bool, bool]:
    import sys

    plugins = sys.modules.get("voxelstream.plugins")
    return "voxelstream.runner" in sys.modules, plugins is not None and plugins._State.pm is not None


@pytest.mark.distributed
def test_workers_load_the_engine_and_plugins_when_the_client_connects_and_when_they_join():
    from voxelstream.scheduler import use_scheduler

    with use_scheduler("local:2") as client:
        # nothing was submitted: the warm-up plugin did it, on every worker (the scheduler's
        # import: tests/test_cluster.py, where the scheduler is a process of its own)
        assert list(client.run(_warm).values()) == [(True, True)] * 2
        client.cluster.scale(3)
        client.wait_for_workers(3, timeout=120)
        assert list(client.run(_warm).values()) == [(True, True)] * 3


def test_batches_keep_order_and_bounds_and_send_unknown_or_large_volumes_alone():
    from voxelstream.runner import BATCH_BYTES, MAX_BATCH, TAIL_TASKS, VolumeJob, _batches

    sizes = [10] * 40 + [None] + [10] * 5 + [BATCH_BYTES] + [BATCH_BYTES // 3] * 7 + [10] * 100
    items = [(n, VolumeJob(f"v{n}", nbytes=s), None) for n, s in enumerate(sizes, 1)]
    batches = list(_batches(iter(items), len(items), threads=2))
    assert [item for b in batches for item in b] == items  # every volume once, in order
    for b in batches:
        assert len(b) <= MAX_BATCH
        if len(b) > 1:
            assert all(job.nbytes is not None for _, job, _ in b)
            assert sum(job.nbytes for _, job, _ in b) <= BATCH_BYTES
            # TAIL_TASKS tasks per worker thread remain for what is left when the batch starts
            assert len(b) <= (len(items) - b[0][0] + 1) // (TAIL_TASKS * 2)
    assert any(len(b) == MAX_BATCH for b in batches)
    # the end of the run: one volume per task, TAIL_TASKS per worker thread
    assert [len(b) for b in batches][-int(2 * TAIL_TASKS):] == [1] * int(2 * TAIL_TASKS)
    # the benchmark's case, by hand: 150 volumes of 40x48x48 on 2 threads, each batch at most a
    # third (1.5 tasks per thread) of the volumes not yet sent, at most 32: 150/3 -> 32,
    # 118/3 -> 32, 86/3 = 28, 58/3 = 19, 39/3 = 13, 26/3 = 8, 18/3 = 6, 12/3 = 4, 8/3 = 2, ...
    small = [(n, VolumeJob(f"v{n}", nbytes=4 * 40 * 48 * 48), None) for n in range(1, 151)]  # stored_jobs: 4 bytes a voxel
    assert [len(b) for b in _batches(iter(small), 150, threads=2)] == [32, 32, 28, 19, 13, 8, 6, 4, 2, 2, 1, 1, 1, 1]


_DEFERRED = """
import sys
from voxelstream.scheduler import use_scheduler
with use_scheduler("sync"):
    assert "dask" not in sys.modules  # nothing imported dask yet: the setting waits for it
    import dask, dask.local
    assert dask.config.get("scheduler") is dask.local.get_sync
    assert dask.compute(dask.delayed(lambda: 7)())[0] == 7
assert dask.config.get("scheduler", None) is None  # restored on leaving
import dask.threaded
with use_scheduler("threads"):  # dask already imported: set at once
    assert dask.config.get("scheduler") is dask.threaded.get
assert dask.config.get("scheduler", None) is None and not any(type(f).__name__ == "_AfterImport" for f in sys.meta_path)
print("ok")
"""

_NESTED = """
import sys
from voxelstream.scheduler import use_scheduler
with use_scheduler("threads"):
    with use_scheduler("sync"):
        import dask, dask.local, dask.threaded
        assert dask.config.get("scheduler") is dask.local.get_sync  # the inner block's
    assert dask.config.get("scheduler") is dask.threaded.get  # the outer block's, set on import too
assert dask.config.get("scheduler", None) is None and not any(type(f).__name__ == "_AfterImport" for f in sys.meta_path)
print("ok")
"""


def test_local_scheduler_is_set_when_dask_is_imported_later():
    """use_scheduler does not import dask (a command writing only direct volumes never needs
    it); a dask compute inside the block still runs on the chosen scheduler."""
    import subprocess
    import sys

    for code in (_DEFERRED, _NESTED):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
