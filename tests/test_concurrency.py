"""Several real processes on one store at once: races, crashes, and what a rerun heals.

The invariant checked after every race: every output marked complete holds exactly the data
an independent reference gives (SimpleITK for ingest, the stage applied in memory to the
stored input for a derived output), ``voxelstream verify`` finds nothing, and no staging
leftovers of finished writers remain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk

import voxelstream as vs

CLI = [sys.executable, "-m", "voxelstream.cli.main"]
ENV = {**os.environ, "VOXELSTREAM_PROGRESS": "0"}


def _scans(folder, n=4, shape=(24, 20, 18)):
    folder.mkdir(exist_ok=True)
    arrays = {}
    for i in range(n):
        arr = np.random.default_rng(i).integers(-1000, 1000, shape).astype(np.int16)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing((0.8, 0.7, 2.0))
        sitk.WriteImage(img, str(folder / f"scan{i}.mhd"))
        arrays[f"scan{i}"] = arr
    return arrays


def _start(*args):
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _check_ingest(store_path, arrays):
    store = vs.open_store(store_path)
    assert store.volume_ids("image") == sorted(arrays)
    for vid, arr in arrays.items():
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(store_path.parent / "scans" / f"{vid}.mhd")))
        np.testing.assert_array_equal(store.open(vid).data.compute()[0], reference)
    verify = subprocess.run([*CLI, "verify", "--store", str(store_path)], capture_output=True, text=True, env=ENV)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("round_", range(3))
def test_racing_ingests_leave_every_volume_complete_and_correct(tmp_path, round_):
    arrays = _scans(tmp_path / "scans")
    store = tmp_path / "s.zarr"
    args = ["ingest", str(tmp_path / "scans"), "--store", str(store), "--chunks", "8"]
    procs = [_start(*args) for _ in range(3)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert "Traceback" not in err
        # every process accounts for every volume: written, or found done by another
        assert sorted(line.split("\t")[0] for line in out.splitlines()) == sorted(arrays)
    # each volume was written once: the others waited for its lock and then skipped it
    written = sum(line.split("\t")[1][:1].isdigit() for out, _ in results for line in out.splitlines())
    assert written == len(arrays)
    _check_ingest(store, arrays)
    assert not any((store / ".staging").rglob("zarr.json"))


def test_forced_ingests_racing_readers_of_a_derived_stage(tmp_path):
    """Two `ingest --force` rewrite the inputs while two `run` make a derived output from
    them: whatever order things happen in, a derived output marked complete and made from the
    current input equals the stage applied to that input."""
    arrays = _scans(tmp_path / "scans")
    store = tmp_path / "s.zarr"
    subprocess.run([*CLI, "ingest", str(tmp_path / "scans"), "--store", str(store), "--chunks", "8"],
                   check=True, capture_output=True, env=ENV)
    pipe = tmp_path / "p.toml"
    pipe.write_text(f'[pipeline]\nstore = "{store}"\noutput = "smooth"\nchunks = 8\n'
                    '[[stages]]\nname = "gaussian"\nsigma = 1.0\n')
    for _ in range(2):
        procs = [_start("ingest", str(tmp_path / "scans"), "--store", str(store), "--chunks", "8", "--force"),
                 _start("run", str(pipe)), _start("run", str(pipe)),
                 _start("ingest", str(tmp_path / "scans"), "--store", str(store), "--chunks", "8", "--force")]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert "Traceback" not in err
            # a run may lose a race against a rewritten input: then it says so for that volume
            assert all("input changed" in line or "removed or replaced" in line
                       for line in err.splitlines() if line.startswith("error:")), err
    # a plain rerun heals whatever the race left undone
    rerun = subprocess.run([*CLI, "run", str(pipe)], capture_output=True, text=True, env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    st = vs.open_store(store)
    _check_ingest(store, arrays)
    for vid in arrays:
        assert st.is_complete(vid, "smooth", fingerprint={"inputs": {"image": st.completion_token(vid, "image")}})
        ref = vs.get_stage("gaussian")(st.open(vid), sigma=1.0).data.compute()
        np.testing.assert_array_equal(st.open(vid, "smooth").data.compute(), ref)


def test_a_killed_writer_leaves_nothing_marked_complete_and_never_blocks(tmp_path):
    arrays = _scans(tmp_path / "scans", n=2, shape=(160, 128, 128))
    store = tmp_path / "s.zarr"
    args = ["ingest", str(tmp_path / "scans"), "--store", str(store), "--chunks", "16"]
    for delay in (0.8, 1.6):
        p = _start(*args, "--force")
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)  # no cleanup of any kind: the kernel drops its locks
        p.communicate()
        if (store / "zarr.json").exists():
            st = vs.open_store(store)
            for vid in st.volume_ids("image"):  # whatever is complete is whole and right
                np.testing.assert_array_equal(st.open(vid).data.compute()[0], arrays[vid])
    t0 = time.perf_counter()
    rerun = subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "waiting for another process" not in rerun.stderr  # the dead writer's lock is gone
    assert time.perf_counter() - t0 < 120
    _check_ingest(store, arrays)
    assert not any((store / ".staging").rglob("zarr.json"))  # the dead writers' leftovers are gone
