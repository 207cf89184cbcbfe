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
