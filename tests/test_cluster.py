"""A real dask.distributed cluster: the ``dask scheduler`` and two ``dask worker`` processes
on 127.0.0.1, as a user starts them, running ingest -> ct preprocess with ``--scheduler
tcp://127.0.0.1:PORT``; the store equals the one the threaded scheduler writes.

Runs by default (marked ``distributed``; about 20-30 s here, most of it starting processes).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import voxelstream as vs

pytestmark = pytest.mark.distributed

CLI = [sys.executable, "-m", "voxelstream.cli.main"]
DASK = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_workers(address: str, n: int, timeout: float = 60) -> None:
    from distributed import Client

    with Client(address, timeout="20s") as client:
        client.wait_for_workers(n, timeout=timeout)


@pytest.fixture
def cluster(tmp_path):
    if DASK is None:
        pytest.skip("the 'dask' command line is not installed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "VOXELSTREAM_PROGRESS": "0"}
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], stdout=subprocess.DEVNULL,
                              stderr=open(logs / "scheduler.log", "w"), env=env, cwd=tmp_path)]
    try:
        for i in range(2):
            procs.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny",
                                           "--name", f"w{i}", "--local-directory", str(tmp_path / f"w{i}")],
                                          stdout=subprocess.DEVNULL, stderr=open(logs / f"worker{i}.log", "w"),
                                          env=env, cwd=tmp_path))
        _wait_for_workers(address, 2)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _scans(folder: Path) -> None:
    folder.mkdir()
    for i in range(3):
        arr = np.random.default_rng(i).integers(-1000, 1000, (20 + i, 24, 22)).astype(np.int16)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.9, 0.8, 1.6))
        img.SetOrigin((-50.0, 10.0, 100.0 * i))
        sitk.WriteImage(img, str(folder / f"scan{i}.mhd"))


def _run(*argv: str) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    proc = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "VOXELSTREAM_PROGRESS": "0"})
    print(f"{argv[0]} {argv[-1]}: {time.perf_counter() - t0:.1f} s")
    assert proc.returncode == 0, proc.stderr
    return proc


def test_ingest_then_ct_preprocess_on_a_real_cluster_equals_threads(tmp_path, cluster):
    t0 = time.perf_counter()
    _scans(tmp_path / "scans")
    stores = {}
    for sched in ("threads", cluster):
        store = tmp_path / ("threads.zarr" if sched == "threads" else "cluster.zarr")
        ingest = ["ingest", str(tmp_path / "scans"), "--store", str(store), "--chunks", "16", "--scheduler", sched]
        pre = ["ct", "preprocess", "--store", str(store), "--chunks", "16", "--scheduler", sched]
        if sched == "threads":  # the reference, in this process
            from voxelstream.cli.main import main

            assert main(ingest) == 0 and main(pre) == 0
        else:  # the cluster, from the command line as a user runs it
            assert len(_run(*ingest).stdout.splitlines()) == 3
            assert sum(line.startswith("[") for line in _run(*pre).stdout.splitlines()) == 3
        stores[sched] = vs.open_store(store)
    a, b = stores["threads"], stores[cluster]
    assert a.volume_ids("iso") == b.volume_ids("iso") == ["scan0", "scan1", "scan2"]
    for vid in a.volume_ids():
        for name in ("image", "iso"):
            va, vb = a.open(vid, name), b.open(vid, name)
            np.testing.assert_array_equal(va.data.compute(), vb.data.compute())
            np.testing.assert_array_equal(va.affine, vb.affine)
            assert a.output_attrs(vid, name)["params"] == b.output_attrs(vid, name)["params"]
    # a rerun on the cluster skips everything (the fingerprints match)
    again = _run("ct", "preprocess", "--store", str(b.path), "--chunks", "16", "--scheduler", cluster)
    assert again.stdout.count("(already done)") == 3
    print(f"cluster test body: {time.perf_counter() - t0:.1f} s")


def test_connecting_warms_up_the_scheduler_and_every_worker(cluster):
    """The scheduler unpickles every task and each worker runs them: ``use_scheduler`` has both
    import the engine when it connects, not inside the first volume (real processes here: a
    LocalCluster's scheduler would share this test's imports)."""
    from distributed import Client

    from voxelstream.scheduler import use_scheduler

    def loaded() -> bool:
        import sys

        return "voxelstream.runner" in sys.modules

    with Client(cluster, timeout="30s") as plain:  # a bare connection imports nothing there
        assert not plain.run_on_scheduler(loaded) and not any(plain.run(loaded).values())
    with use_scheduler(cluster) as client:
        assert client.run_on_scheduler(loaded)
        assert list(client.run(loaded).values()) == [True, True]
