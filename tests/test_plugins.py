"""Plugin discovery: entry points, conflicts, broken plugins, the third-party example."""

import importlib.metadata as md
import json
import subprocess
import sys
import types

import numpy as np
import pytest

import voxelstream as vs
from voxelstream import plugins
from voxelstream.cli.main import main
from voxelstream.testing import check_stage, sample_volume


@pytest.fixture(autouse=True)
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()


def _module(name, stage_names=()):
    mod = types.ModuleType(name)

    @vs.hookimpl
    def voxelstream_stages():
        return [vs.blockwise_stage(n, lambda b: b + 1) for n in stage_names]

    mod.voxelstream_stages = voxelstream_stages
    return mod


def test_two_plugins_registering_one_name_is_an_error_naming_both():
    plugins.register(_module("first", ["smooth"]), "first-plugin")
    plugins.register(_module("second", ["smooth"]), "second-plugin")
    with pytest.raises(vs.PluginConflictError) as err:
        vs.get_stage("smooth")
    assert "first-plugin" in str(err.value) and "second-plugin" in str(err.value)


def test_plugins_command_reports_conflict_but_other_commands_work(capsys):
    plugins.register(_module("first", ["smooth"]), "first-plugin")
    plugins.register(_module("second", ["smooth"]), "second-plugin")
    assert main(["plugins", "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    assert any("first-plugin" in e and "second-plugin" in e for e in info["errors"])
    assert "dicom" in info["readers"]  # readers are unaffected by a stage conflict


def test_broken_plugin_is_reported_and_does_not_break_others(monkeypatch, tmp_path, capsys):
    real = md.entry_points

    def with_broken(**kw):
        eps = list(real(**kw))
        if kw.get("group") == "voxelstream":
            eps.append(md.EntryPoint(name="broken", value="no_such_module_for_voxelstream.plugin", group="voxelstream"))
        return eps

    monkeypatch.setattr(md, "entry_points", with_broken)
    assert main(["plugins", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    broken = [p for p in info["plugins"] if p["name"] == "broken"]
    assert broken and "no_such_module_for_voxelstream" in broken[0]["error"]
    assert {"name", "version"} <= set(broken[0])
    ok = [p for p in info["plugins"] if p["name"] == "dicom"]
    assert ok and "error" not in ok[0]
    # an unrelated command still runs
    sample_volume((4, 4, 4)).to_zarr(tmp_path / "s.zarr", "v")
    assert main(["run", str(_pipeline(tmp_path))]) == 0


def _pipeline(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[pipeline]\nstore = "s.zarr"\noutput = "smooth"\n[[stages]]\nname = "gaussian"\nsigma = 1.0\n')
    return p


def test_unknown_stage_lists_what_is_installed():
    with pytest.raises(vs.UnknownNameError, match="installed: .*gaussian"):
        vs.get_stage("no-such-stage")


def test_plugins_json_shape_from_the_console_script():
    out = subprocess.run([sys.executable, "-m", "voxelstream.cli.main", "plugins", "--json"], capture_output=True, text=True, check=False)
    info = json.loads(out.stdout)
    assert set(info) >= {"plugins", "readers", "stages", "models", "tasks"}
    assert {"dicom", "itk"} <= set(info["readers"])
    for p in info["plugins"]:
        assert {"name", "version"} <= set(p)


def test_third_party_example_is_found_through_its_entry_point():
    eps = [ep for ep in md.entry_points(group="voxelstream") if ep.name == "gaussian"]
    assert eps, "examples/voxelstream-gaussian is not installed: run 'make test' (it installs it)"
    assert eps[0].dist.name == "voxelstream-gaussian"  # a separate distribution, not ours
    assert vs.get_stage("gaussian").plugin == "gaussian"


def test_third_party_stage_matches_scipy_on_the_whole_volume_and_conforms():
    from scipy import ndimage

    vol = sample_volume((30, 26, 22))
    out = vs.get_stage("gaussian")(vol.replace(data=vol.data.rechunk(7)), sigma=1.5)
    whole = ndimage.gaussian_filter(vol.data.compute().astype(np.float32), 1.5, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(out.data.compute(), whole, rtol=0, atol=1e-3)
    assert out.meta["history"][-1] == {"stage": "gaussian", "params": {"sigma": 1.5}, "plugin": "gaussian", "version": "0.1.0"}
    check_stage("gaussian", vol, params={"sigma": 1.5})
