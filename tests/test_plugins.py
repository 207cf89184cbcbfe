"""Plugin discovery: entry points, contained failures, conflicts, lazy specs, the third-party example.

Fake plugins are installed as real distributions with entry points (tests/fakeplugins.py);
the console-script tests run ``voxelstream`` in a child process as a user would.
"""

import importlib.metadata as md
import json
import sys
import types

import numpy as np
import pytest

import voxelstream as vs
from voxelstream import plugins
from voxelstream.cli.main import main
from voxelstream.testing import check_stage, sample_volume

from fakeplugins import activate, install, run_cli, unique


@pytest.fixture(autouse=True)
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()


def _stage_module(name, stage_names=()):
    mod = types.ModuleType(name)

    @vs.hookimpl
    def voxelstream_stages():
        return [vs.blockwise_stage(n, lambda b: b + 1) for n in stage_names]

    mod.voxelstream_stages = voxelstream_stages
    return mod


STAGE_PLUGIN = """
import voxelstream as vs

def _plus_one(block):
    return block + 1

@vs.hookimpl
def voxelstream_stages():
    return [vs.blockwise_stage({name!r}, _plus_one)]
"""

RAISING_HOOK = """
import voxelstream as vs

@vs.hookimpl
def voxelstream_stages():
    raise RuntimeError("hook exploded on purpose")
"""


# -- failures are contained -------------------------------------------------------------------


def test_plugin_that_fails_to_import_is_reported_by_the_console_script_and_breaks_nothing(tmp_path):
    bad = unique("broken")
    root = install(tmp_path, {"broken": bad}, {bad: "raise ImportError('needs libfoo 9, which is missing')\n"})

    listing = run_cli(["plugins", "--json"], root)
    assert listing.returncode == 1, listing.stderr
    info = json.loads(listing.stdout)
    row = next(p for p in info["plugins"] if p["name"] == "broken")
    assert "needs libfoo 9" in row["error"] and row["module"] == bad
    assert "error" not in next(p for p in info["plugins"] if p["name"] == "dicom")
    assert {"dicom", "itk"} <= set(info["readers"]) and "resample" in info["stages"]

    helped = run_cli(["--help"], root)
    assert helped.returncode == 0
    assert "usage: voxelstream" in helped.stdout and "ingest" in helped.stdout
    assert "plugin 'broken'" in helped.stderr and "needs libfoo 9" in helped.stderr

    task_help = run_cli(["ct", "--help"], root)
    assert task_help.returncode == 0 and "preprocess" in task_help.stdout


def test_plugin_whose_hook_raises_is_reported_and_the_other_names_work(tmp_path, monkeypatch, capsys):
    raising = unique("raising")
    activate(monkeypatch, install(tmp_path, {"raising": raising}, {raising: RAISING_HOOK}))

    assert main(["plugins", "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    row = next(p for p in info["plugins"] if p["name"] == "raising")
    assert "voxelstream_stages" in row["error"] and "hook exploded on purpose" in row["error"]
    assert info["stages"]["resample"]["plugin"] == "resample"
    assert vs.get_stage("hu_window").plugin == "ct"  # the other plugins' stages still resolve
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0


def test_hook_returning_something_else_than_specs_is_reported(monkeypatch, capsys):
    mod = types.ModuleType("returns_junk")
    mod.voxelstream_models = vs.hookimpl(lambda: ["not a spec"])
    plugins.register(mod, "junk")
    errors = plugins.plugin_errors()
    assert "junk" in errors and "returned str, expected ModelSpec" in errors["junk"][0]
    assert "nodule-vgg3d" in plugins.models()


# -- conflicts: raised where the name is used ---------------------------------------------------


def test_two_plugins_registering_one_stage_is_an_error_naming_both_only_for_that_name(tmp_path, monkeypatch):
    a, b = unique("first"), unique("second")
    activate(monkeypatch, install(tmp_path, {"first-plugin": a, "second-plugin": b},
                                  {a: STAGE_PLUGIN.format(name="smooth"), b: STAGE_PLUGIN.format(name="smooth")}))
    with pytest.raises(vs.PluginConflictError) as err:
        vs.get_stage("smooth")
    assert "'first-plugin'" in str(err.value) and "'second-plugin'" in str(err.value)
    # every other stage keeps working (one clash used to disable all stages)
    vol = sample_volume((6, 5, 4))
    out = vs.get_stage("hu_window")(vol, lo=0, hi=1000)
    expected = np.clip(vol.data.compute().astype(np.float32), 0, 1000) / 1000
    np.testing.assert_allclose(out.data.compute(), expected, atol=1e-6)
    assert "smooth" not in plugins.stages() and "resample" in plugins.stages()


def test_plugins_command_reports_a_conflict_naming_both_and_lists_the_rest(capsys):
    plugins.register(_stage_module("first", ["smooth"]), "first-plugin")
    plugins.register(_stage_module("second", ["smooth"]), "second-plugin")
    assert main(["plugins", "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["stages"]["smooth"]["plugins"] == ["first-plugin", "second-plugin"]
    assert "first-plugin" in info["stages"]["smooth"]["error"] and "second-plugin" in info["stages"]["smooth"]["error"]
    assert any("first-plugin" in e and "second-plugin" in e for e in info["errors"])
    assert info["stages"]["hu_window"]["plugin"] == "ct"
    assert info["readers"]["dicom"]["plugin"] == "dicom"  # readers are unaffected by a stage conflict


def test_two_plugins_registering_one_model_clash_only_on_lookup():
    def models_module(name):
        mod = types.ModuleType(name)
        mod.voxelstream_models = vs.hookimpl(lambda: [vs.ModelSpec("twin", build=lambda config, seed=0: name)])
        return mod

    plugins.register(models_module("m1"), "models-one")
    plugins.register(models_module("m2"), "models-two")
    with pytest.raises(vs.PluginConflictError, match="'models-one' and 'models-two'"):
        plugins.get_model_spec("twin")
    assert plugins.get_model_spec("nodule-vgg3d").plugin == "nodules"


def test_two_plugins_registering_one_reader_fail_only_the_files_it_claims(tmp_path):
    def reader_module(name, reader, suffix, discover):
        mod = types.ModuleType(name)
        mod.voxelstream_readers = vs.hookimpl(lambda: [
            vs.ReaderSpec(reader, claims=lambda p: p.suffix == suffix, discover=discover, priority=50)])
        return mod

    def never(files, options=None):  # pragma: no cover - must never run: the name clashes
        raise AssertionError("a clashing reader was used")

    def plain(files, options=None):
        for f in files:
            yield vs.Source(f.stem, str(f), open=lambda: vs.Volume.from_array(np.arange(60).reshape(3, 4, 5)))

    plugins.register(reader_module("r1", "twin", ".twin", never), "reader-one")
    plugins.register(reader_module("r2", "twin", ".twin", never), "reader-two")
    plugins.register(reader_module("r3", "plain", ".plain", plain), "reader-three")
    (tmp_path / "a.twin").write_bytes(b"x")
    (tmp_path / "b.plain").write_bytes(b"x")

    found = list(vs.discover([tmp_path / "a.twin", tmp_path / "b.plain"]))
    errors = [f for f in found if isinstance(f, vs.SourceError)]
    sources = [f for f in found if isinstance(f, vs.Source)]
    assert len(errors) == 1 and "'reader-one' and 'reader-two'" in errors[0].reason
    assert errors[0].location == str(tmp_path / "a.twin")
    assert [(s.volume_id, s.reader) for s in sources] == [("b", "plain")]


# -- which plugin registered what; lazy specs -----------------------------------------------------


def test_plugins_json_names_the_plugin_of_every_name():
    out = run_cli(["plugins", "--json"])
    info = json.loads(out.stdout)
    assert set(info) >= {"plugins", "readers", "stages", "models", "tasks", "errors"}
    # the plugin of each name, against the entry points that are installed
    eps = {ep.name for ep in md.entry_points(group="voxelstream")}
    for kind in ("readers", "stages", "models", "tasks"):
        for name, entry in info[kind].items():
            assert entry["plugin"] in eps, (kind, name)
    assert info["stages"]["resample"]["plugin"] == "resample"
    assert info["tasks"]["nodules"]["plugin"] == "nodules" and "train" in info["tasks"]["nodules"]["commands"]
    ct = next(p for p in info["plugins"] if p["name"] == "ct")
    assert "hu_window" in ct["registers"]["stages"] and ct["registers"]["tasks"] == ["ct"]
    for row in info["plugins"]:  # each plugin's list is exactly the names that point back to it
        for kind in ("readers", "stages", "models", "tasks"):
            assert sorted(row["registers"][kind]) == sorted(n for n, e in info[kind].items() if e["plugin"] == row["name"])


def test_lazy_spec_is_imported_on_first_use_only(tmp_path, monkeypatch, capsys):
    impl, reg = unique("impl"), unique("reg")
    activate(monkeypatch, install(tmp_path, {"lazy": reg}, {
        impl: STAGE_PLUGIN.format(name="later").replace("@vs.hookimpl\n", "") + "\nLATER = voxelstream_stages()[0]\n",
        reg: f"import voxelstream as vs\n\n@vs.hookimpl\ndef voxelstream_stages():\n"
             f"    return [vs.LazySpec('later', '{impl}:LATER'), vs.LazySpec('missing', 'no_such_module_xyz:STAGE')]\n",
    }))
    assert main(["plugins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"]["later"]["plugin"] == "lazy"
    assert impl not in sys.modules  # listing did not import the implementation
    stage = vs.get_stage("later")
    assert impl in sys.modules and stage.plugin == "lazy"
    vol = sample_volume((4, 4, 4))
    np.testing.assert_array_equal(stage(vol).data.compute(), vol.data.compute() + 1)
    with pytest.raises(vs.PluginError, match="'missing' of plugin 'lazy'.*no_such_module_xyz"):
        vs.get_stage("missing")


def test_plugins_check_imports_lazy_specs_and_reports_the_broken_one(tmp_path, monkeypatch, capsys):
    reg = unique("reg")
    activate(monkeypatch, install(tmp_path, {"lazy": reg}, {
        reg: "import voxelstream as vs\n\n@vs.hookimpl\ndef voxelstream_stages():\n"
             "    return [vs.LazySpec('missing', 'no_such_module_xyz:STAGE')]\n",
    }))
    assert main(["plugins", "--json"]) == 0  # listing names does not import them
    capsys.readouterr()
    assert main(["plugins", "--check", "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    row = next(p for p in info["plugins"] if p["name"] == "lazy")
    assert "'missing'" in row["error"] and "no_such_module_xyz" in row["error"]
    assert "error" not in next(p for p in info["plugins"] if p["name"] == "resample")  # its lazy stage loads


# -- unchanged behaviour ----------------------------------------------------------------------------


def test_unknown_stage_lists_what_is_installed():
    with pytest.raises(vs.UnknownNameError, match="installed: .*gaussian"):
        vs.get_stage("no-such-stage")


def test_third_party_example_is_found_through_its_entry_point():
    eps = [ep for ep in md.entry_points(group="voxelstream") if ep.name == "example"]
    assert eps, "examples/voxelstream-example is not installed: run 'make test' (it installs it)"
    assert eps[0].dist.name == "voxelstream-example"  # a separate distribution, not ours
    assert vs.get_stage("gaussian").plugin == "example"


def test_third_party_stage_matches_scipy_on_the_whole_volume_and_conforms():
    from scipy import ndimage

    vol = sample_volume((30, 26, 22))
    out = vs.get_stage("gaussian")(vol.replace(data=vol.data.rechunk(7)), sigma=1.5)
    whole = ndimage.gaussian_filter(vol.data.compute().astype(np.float32), 1.5, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(out.data.compute(), whole, rtol=0, atol=1e-3)
    assert out.meta["history"][-1] == {"stage": "gaussian", "params": {"sigma": 1.5}, "plugin": "example", "version": "0.1.0"}
    check_stage("gaussian", vol, params={"sigma": 1.5})


def test_every_installed_lazy_spec_resolves_to_its_declared_name(capsys):
    """A LazySpec's target is only imported on use: check them all here (a renamed module or
    attribute would otherwise surface at a user's first lookup)."""
    assert main(["plugins", "--check", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["errors"] == []
    for kind, getter in (("stages", plugins.get_stage), ("models", plugins.get_model_spec), ("tasks", plugins.get_task)):
        for name, entry in info[kind].items():
            assert getter(name).plugin == entry["plugin"]
