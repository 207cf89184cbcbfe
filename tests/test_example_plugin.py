"""The third-party example package (examples/voxelstream-example), tested as a user meets it:
installed with pip (``make test`` does it), found through its entry point, its reader used by
``voxelstream ingest`` and its task run through the real console script in a child process.

References are independent of the code under test: SimpleITK for geometry, scipy on the whole
image for the stage, numpy matrix products for the model, hand-computed halo depths.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import voxelstream as vs
from voxelstream import plugins
from voxelstream.testing import check_stage, sample_volume

CONSOLE_SCRIPT = Path(sys.executable).parent / "voxelstream"



@pytest.fixture(autouse=True)
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VOXELSTREAM_DEBUG"}
    env["VOXELSTREAM_PROGRESS"] = "0"
    return subprocess.run([str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def write_image(path: Path, array: np.ndarray, **sidecar) -> Path:
    # written by hand, not by the package's helper: the test pins the file format itself
    np.save(path, array)
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def rgb_tile(h: int = 45, w: int = 61, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- registration ----------------------------------------------------------------------------


def test_the_example_is_installed_as_its_own_distribution():
    eps = [ep for ep in md.entry_points(group="voxelstream") if ep.name == "example"]
    assert eps, "examples/voxelstream-example is not installed: run 'make test' (it installs it)"
    assert eps[0].dist.name == "voxelstream-example" and eps[0].value == "voxelstream_example.plugin"


def test_plugins_json_lists_the_example_and_everything_it_registers():
    out = run_cli("plugins", "--json")
    info = json.loads(out.stdout)
    row = next(p for p in info["plugins"] if p["name"] == "example")
    assert "error" not in row, row
    assert md.distribution("voxelstream-example").entry_points.select(group="voxelstream")["example"].value == row["module"]
    assert row["registers"] == {"readers": ["npy"], "stages": ["gaussian"], "models": ["example-mixer"], "tasks": ["example"]}
    for kind, name in (("readers", "npy"), ("stages", "gaussian"), ("models", "example-mixer"), ("tasks", "example")):
        assert info[kind][name]["plugin"] == "example"
    assert info["tasks"]["example"]["modality"] == "SM"
    assert set(info["tasks"]["example"]["commands"]) >= {"smooth", "mix"}


def test_ingest_help_lists_the_installed_readers_including_the_example():
    out = run_cli("ingest", "--help")
    assert out.returncode == 0, out.stderr
    listing = out.stdout.split("installed readers", 1)[1].split("\n\n", 1)[0]  # up to the options
    names = {line.split()[0] for line in listing.splitlines()[1:] if line.startswith("  ") and not line.startswith("   ")}
    assert names == set(json.loads(run_cli("plugins", "--json").stdout)["readers"])
    assert "npy" in names and "(plugin 'example')" in " ".join(listing.split())


def test_task_help_shows_its_commands_and_the_common_options():
    out = run_cli("example", "--help")
    assert "smooth" in out.stdout and "mix" in out.stdout and "SM" in out.stdout
    sub = run_cli("example", "smooth", "--help")
    for option in ("--store", "--scheduler", "--progress", "--no-progress", "--sigma"):
        assert option in sub.stdout


# -- reader --------------------------------------------------------------------------------


def _sitk_points(array_zyx: np.ndarray, spacing, origin, direction, index_rows):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing([float(s) for s in spacing[::-1]])
    img.SetOrigin([float(o) for o in origin[::-1]])
    img.SetDirection([float(d) for d in np.asarray(direction).ravel()])
    return np.array([img.TransformContinuousIndexToPhysicalPoint([float(v) for v in row[::-1]]) for row in index_rows])


def test_ingest_reads_npy_images_2d_and_3d_with_their_geometry_and_reports_bad_ones(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    tile = rgb_tile()
    write_image(src / "tile.npy", tile, channel_axis=-1, modality="sm")
    rng = np.random.default_rng(1)
    ct = rng.normal(0, 300, (9, 14, 12)).astype(np.int16)
    angle = 0.3
    direction = [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    write_image(src / "ct.npy", ct, spacing=[2.5, 0.7, 0.8], origin=[-40.0, 12.0, -100.0], direction=direction,
                modality="CT")
    np.save(src / "lonely.npy", np.zeros((5, 5)))  # no sidecar
    write_image(src / "flat.npy", np.zeros(7), spacing=[1.0])  # 1-D: not an image

    out = run_cli("ingest", str(src), "--store", str(tmp_path / "s.zarr"))
    assert out.returncode == 1  # two bad inputs, the others stored
    stored = dict(line.split("\t") for line in out.stdout.splitlines())
    assert stored == {"tile": "3x45x61", "ct": "1x9x14x12"}
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("lonely.npy" in e and "lonely.json" in e for e in errors)
    assert any("flat.npy" in e and "spatial axes" in e for e in errors)

    store = vs.open_store(str(tmp_path / "s.zarr"))
    vt = store.open("tile")
    np.testing.assert_array_equal(vt.data.compute(), np.moveaxis(tile, -1, 0))
    assert vt.units == ("pixel", "pixel") and vt.meta["modality"] == "SM" and vt.axes == ("y", "x")
    vc = store.open("ct")
    np.testing.assert_array_equal(vc.data.compute()[0], ct)
    assert vc.units == ("mm",) * 3 and vc.meta["modality"] == "CT"
    rows = np.array([[0, 0, 0], [8, 13, 11], [3.5, 2.25, 7.0]])
    np.testing.assert_allclose(vc.index_to_world(rows), _sitk_points(ct, [2.5, 0.7, 0.8], [-40.0, 12.0, -100.0],
                                                                     direction, rows), atol=1e-9)


def test_the_reader_is_lazy_and_reads_one_chunk_at_a_time(tmp_path):
    big = np.arange(700 * 600, dtype=np.float32).reshape(700, 600)
    path = write_image(tmp_path / "big.npy", big, spacing=[0.5, 0.5])
    reader = next(r for r in plugins.readers() if r.name == "npy")
    (src,) = list(reader.discover([path], None))
    vol = src.open()
    assert vol.data.numblocks[1:] == (2, 2)  # not one block of the whole image
    assert vol.units == ("mm", "mm")
    np.testing.assert_array_equal(vol.data[0, 600:610, 500:505].compute(), big[600:610, 500:505])


def test_two_files_of_one_name_stay_two_images_in_one_graph(tmp_path):
    import dask

    for folder, value in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        write_image(tmp_path / folder / "tile.npy", np.full((8, 9), value, dtype=np.int16))
    a, b = vs.read(tmp_path / "a" / "tile.npy"), vs.read(tmp_path / "b" / "tile.npy")
    got_a, got_b = dask.compute(a.data, b.data)  # one graph: shared keys would merge them
    assert got_a.max() == 1 and got_b.max() == 2


# -- stage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,channels,sigma", [((30, 26, 22), 1, [0.0, 1.5, 2.5]), ((40, 36), 3, 1.2),
                                                  ((40, 36), 2, [2.0, 0.5])])
def test_gaussian_conforms_and_equals_scipy_on_the_whole_image(shape, channels, sigma):
    from scipy import ndimage

    vol = sample_volume(shape, channels=channels)
    check_stage("gaussian", vol, params={"sigma": sigma})
    out = vs.get_stage("gaussian")(vol.replace(data=vol.data.rechunk((channels, *(7,) * len(shape)))), sigma=sigma)
    per_axis = (sigma,) * len(shape) if np.isscalar(sigma) else tuple(sigma)
    whole = ndimage.gaussian_filter(vol.data.compute().astype(np.float32), (0, *per_axis), mode="nearest", truncate=4.0)
    np.testing.assert_allclose(out.data.compute(), whole, rtol=0, atol=1e-3)


def test_gaussian_halo_is_per_axis_from_sigma():
    from voxelstream_example.smoothing import halo

    # scipy's radius int(4 sigma + 0.5), by hand: 1.5 -> 6, 2.5 -> 10, 0 -> 0
    assert halo([0.0, 1.5, 2.5]) == (0, 6, 10)
    assert halo(1.5) == 6
    with pytest.raises(ValueError, match="3 values"):
        vs.get_stage("gaussian")(sample_volume((20, 20)), sigma=[1.0, 1.0, 1.0])  # 3 values, 2 axes


# -- model ---------------------------------------------------------------------------------


def test_mixer_builds_saves_and_loads_by_its_registered_name(tmp_path):
    spec = plugins.get_model_spec("example-mixer")
    config = {"channels_in": 3, "channels_out": 2}
    model = spec.build(config, seed=3)
    x = np.random.default_rng(0).random((3, 6, 5)).astype(np.float32)
    before = np.asarray(model(x))

    vs.save_model(tmp_path / "m", "example-mixer", config, model)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["model"] == "example-mixer"
    loaded = vs.load_model(tmp_path / "m")
    np.testing.assert_array_equal(np.asarray(loaded(x)), before)
    # what the model claims to be, by hand: y[k] = sum_c w[c, k] x[c] + b[k]
    saved = np.load(tmp_path / "m" / "weights.npz")
    w, b = saved["linear/kernel"], saved["linear/bias"]
    assert w.shape == (3, 2) and b.shape == (2,)
    np.testing.assert_allclose(before, np.einsum("ck,cyx->kyx", w, x) + b[:, None, None], rtol=1e-5, atol=1e-6)
    assert not np.array_equal(w, np.asarray(spec.build(config, seed=4).linear.kernel.get_value()))  # seeded


def test_mixer_rejects_a_bad_config():
    with pytest.raises(vs.VoxelstreamError, match="channels_in"):
        plugins.get_model_spec("example-mixer").build({"channels_out": 1}, seed=0)


# -- task ----------------------------------------------------------------------------------


@pytest.fixture
def ingested(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "tile.npy", rgb_tile(), channel_axis=-1, modality="SM")
    write_image(src / "ct.npy", np.random.default_rng(2).normal(0, 1, (6, 20, 20)).astype(np.float32),
                spacing=[2.0, 1.0, 1.0], modality="CT")
    write_image(src / "plain.npy", rgb_tile(30, 20, seed=5)[..., 0])  # 2-D, modality unknown
    store = tmp_path / "s.zarr"
    out = run_cli("ingest", str(src), "--store", str(store))
    assert out.returncode == 0, out.stderr
    return store


def test_smooth_command_acts_only_on_its_modality_and_skips_what_is_done(ingested):
    from scipy import ndimage

    out = run_cli("example", "smooth", "--store", str(ingested), "--sigma", "1.5", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "note: ct: modality CT, not SM" in out.stderr
    done = {line.split("\t")[0].split()[-1]: line.split("\t")[1] for line in out.stdout.splitlines()}
    assert done == {"tile": "3x45x61", "plain": "1x30x20"}

    store = vs.open_store(str(ingested))
    got = store.open("tile", "smooth").data.compute()
    ref = ndimage.gaussian_filter(np.moveaxis(rgb_tile(), -1, 0).astype(np.float32), (0, 1.5, 1.5), mode="nearest",
                                  truncate=4.0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-3)
    with pytest.raises(vs.VoxelstreamError):
        store.open("ct", "smooth")

    again = run_cli("example", "smooth", "--store", str(ingested), "--sigma", "1.5")
    assert again.returncode == 0 and again.stdout.count("already done") == 2


def test_smooth_command_errors_are_one_line(tmp_path, ingested):
    out = run_cli("example", "smooth", "--store", str(ingested), "--sigma", "-1")
    assert out.returncode == 1 and out.stderr.strip().startswith("error: --sigma") and "Traceback" not in out.stderr
    # three sigmas for 2-D images: each volume fails on its own line
    out = run_cli("example", "smooth", "--store", str(ingested), "--sigma", "1", "1", "1")
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert sorted(line.split(":")[1].strip() for line in errors) == ["plain", "tile"]
    assert all("--sigma has 3 values" in line for line in errors)
    missing = run_cli("example", "smooth", "--store", str(tmp_path / "nowhere.zarr"))
    assert missing.returncode == 1 and missing.stderr.startswith("error:") and "Traceback" not in missing.stderr


def test_mix_command_applies_a_saved_model_chunk_by_chunk(tmp_path, ingested):
    spec = plugins.get_model_spec("example-mixer")
    config = {"channels_in": 3, "channels_out": 1}
    vs.save_model(tmp_path / "mixer", "example-mixer", config, spec.build(config, seed=1))
    saved = np.load(tmp_path / "mixer" / "weights.npz")

    out = run_cli("example", "mix", "--store", str(ingested), "--model", str(tmp_path / "mixer"))
    assert out.returncode == 1  # 'plain' has one channel: its own error line, 'tile' still done
    assert any(line.startswith("error: plain:") and "channel" in line for line in out.stderr.splitlines())
    got = vs.open_store(str(ingested)).open("tile", "mixed").data.compute()
    x = np.moveaxis(rgb_tile(), -1, 0).astype(np.float32)
    ref = np.einsum("ck,cyx->kyx", saved["linear/kernel"], x) + saved["linear/bias"][:, None, None]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-3)


@pytest.mark.distributed
def test_smooth_on_dask_distributed_workers_equals_threads(ingested):
    # the workers import the plugin from its entry point themselves: nothing of it is pickled
    # but the build function and its arguments
    for name, scheduler in (("threads", "threads"), ("cluster", "local:2")):
        out = run_cli("example", "smooth", "--store", str(ingested), "--sigma", "2", "1", "--name", name,
                      "--scheduler", scheduler)
        assert out.returncode == 0, out.stderr
    store = vs.open_store(str(ingested))
    for vid in ("tile", "plain"):
        np.testing.assert_array_equal(store.open(vid, "cluster").data.compute(), store.open(vid, "threads").data.compute())
