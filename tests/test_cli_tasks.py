"""The command line: task namespaces, task-name clashes, plugin command crashes, common options.

Toy tasks come from plugins installed with real entry points (tests/fakeplugins.py); the
tests that check what a user sees run the console script in a child process.
"""

from __future__ import annotations

import argparse
import os
import types

import pytest

import voxelstream as vs
from voxelstream import plugins
from voxelstream.cli.main import main

from fakeplugins import activate, install, run_cli, unique


@pytest.fixture(autouse=True)
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()


# A task plugin with two commands: "hello" echoes its options, "crash" raises a bug.
TASK_PLUGIN = """
import voxelstream as vs

def _hello_args(p):
    p.add_argument("--who", default="world")
    vs.add_common_options(p, store=False)

def _hello(args):
    print("{task} says hello to " + args.who + " scheduler=" + str(args.scheduler))
    return 0

def _crash(args):
    return {{}}["missing key in {task}"]

def _bad_args(p):
    raise RuntimeError("add_arguments of {task} is broken")

@vs.hookimpl
def voxelstream_tasks():
    return [vs.TaskSpec(
        name={task!r}, modality="XC", description="toy task {task}",
        commands=(
            vs.CommandSpec("hello", "say hello", _hello_args, _hello),
            vs.CommandSpec("train", "the same word as another task's command", _hello_args, _hello),
            vs.CommandSpec("crash", "raise a bug", lambda p: None, _crash),
            vs.CommandSpec("badargs", "broken options", _bad_args, _hello),
        ),
    )]
"""


def _task_plugin(task: str) -> str:
    return TASK_PLUGIN.format(task=task)


@pytest.fixture
def two_tasks(tmp_path, monkeypatch):
    """Plugins 'toy-a' (task alpha) and 'toy-b' (task beta), both with a 'train' command."""
    a, b = unique("alpha"), unique("beta")
    root = install(tmp_path, {"toy-a": a, "toy-b": b}, {a: _task_plugin("alpha"), b: _task_plugin("beta")})
    activate(monkeypatch, root)
    return root


def test_task_commands_live_under_the_task_name(two_tasks, capsys):
    assert main(["alpha", "hello", "--who", "you"]) == 0
    assert capsys.readouterr().out.strip() == "alpha says hello to you scheduler=None"
    # the same command word in two tasks: each runs its own
    assert main(["beta", "train"]) == 0
    assert capsys.readouterr().out.strip() == "beta says hello to world scheduler=None"
    # task commands are not at the top level: the error says where they live
    assert main(["hello"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: 'hello' is not a top-level command: task commands live under their task: "
        "'voxelstream alpha hello' or 'voxelstream beta hello'")
    with pytest.raises(SystemExit) as exit_:  # a word no task knows: argparse's own answer
        main(["nonsense"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


def test_task_help_lists_its_commands_and_the_top_help_lists_tasks(two_tasks, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["alpha", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: voxelstream alpha")
    for cmd in ("hello", "train", "crash", "badargs"):
        assert f"    {cmd} " in out or f"    {cmd}\n" in out
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "alpha" in top and "beta" in top and "ingest" in top and "plugins" in top
    assert main(["alpha"]) == 2  # a task without a command prints its help
    assert capsys.readouterr().out.startswith("usage: voxelstream alpha")


def test_real_first_party_namespaces():
    out = run_cli(["nodules", "--help"])
    assert out.returncode == 0, out.stderr
    for cmd in ("cubes", "train", "infer", "detect", "evaluate", "mine", "demo"):
        assert f"\n    {cmd}" in out.stdout
    out = run_cli(["ct", "--help"])
    assert out.returncode == 0 and "preprocess" in out.stdout and "phantoms" in out.stdout
    old = run_cli(["preprocess", "--help"])  # the name before task namespaces
    assert old.returncode == 2 and "'voxelstream ct preprocess'" in old.stderr and not old.stdout


def test_task_name_clash_is_a_warning_before_help_and_an_error_only_for_that_task(tmp_path):
    a, b, c = unique("clash1"), unique("clash2"), unique("other")
    root = install(tmp_path, {"first-toy": a, "second-toy": b, "other-toy": c},
                   {a: _task_plugin("twin"), b: _task_plugin("twin"), c: _task_plugin("solo")})
    helped = run_cli(["--help"], root, merge=True)
    assert helped.returncode == 0
    lines = helped.stdout.splitlines()
    assert lines[0].startswith("warning: task 'twin' is registered by two plugins")
    assert "'first-toy'" in lines[0] and "'second-toy'" in lines[0]
    assert any(line.startswith("usage: voxelstream") for line in lines[1:])

    used = run_cli(["twin", "hello"], root)
    assert used.returncode == 1
    errors = [line for line in used.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'first-toy'" in errors[0] and "'second-toy'" in errors[0]
    assert "Traceback" not in used.stderr

    other = run_cli(["solo", "hello", "--who", "x"], root)  # every other task keeps working
    assert other.returncode == 0 and other.stdout.strip() == "solo says hello to x scheduler=None"


def test_task_named_like_an_engine_command_does_not_hide_it(capsys):
    mod = types.ModuleType("shadow")
    mod.voxelstream_tasks = vs.hookimpl(lambda: [vs.TaskSpec("plugins", "XC", "would hide the engine's plugins")])
    plugins.register(mod, "shadow")
    assert main(["plugins", "--json"]) in (0, 1)
    captured = capsys.readouterr()
    assert captured.out.lstrip().startswith("{")  # the engine's command ran
    assert "warning: task 'plugins' of plugin 'shadow' has the name of an engine command" in captured.err


def test_exception_in_a_plugin_command_is_one_error_line_naming_the_plugin(two_tasks):
    out = run_cli(["alpha", "crash"], two_tasks)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: voxelstream alpha crash: KeyError:")
    assert "plugin 'toy-a'" in lines[0] and "VOXELSTREAM_DEBUG=1" in lines[0]

    debug = run_cli(["alpha", "crash"], two_tasks, env={"VOXELSTREAM_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "missing key in alpha" in debug.stderr


def test_broken_add_arguments_fails_only_that_command(two_tasks, capsys):
    assert main(["alpha", "badargs"]) == 1
    err = capsys.readouterr().err
    assert "error: voxelstream alpha badargs: RuntimeError: add_arguments of alpha is broken" in err
    assert "plugin 'toy-a'" in err
    with pytest.raises(SystemExit) as exit_:  # listing never calls it
        main(["alpha", "--help"])
    assert exit_.value.code == 0
    assert main(["alpha", "hello"]) == 0


def test_common_options_have_one_default_and_progress_reaches_the_environment(monkeypatch):
    parser = argparse.ArgumentParser()
    vs.add_common_options(parser)
    args = parser.parse_args(["--store", "s.zarr"])
    assert (args.store, args.scheduler, args.progress) == ("s.zarr", None, None)
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --store is required
    with pytest.raises(SystemExit):
        parser.parse_args(["--store", "s", "--progress", "--no-progress"])

    from voxelstream.cli.options import apply_progress_option
    from voxelstream.progress import progress_enabled

    monkeypatch.setenv("VOXELSTREAM_PROGRESS", "1")
    apply_progress_option(parser.parse_args(["--store", "s", "--no-progress"]))
    assert os.environ["VOXELSTREAM_PROGRESS"] == "0" and not progress_enabled()
    apply_progress_option(parser.parse_args(["--store", "s", "--progress"]))
    assert progress_enabled()


@pytest.mark.parametrize("argv", [["ingest"], ["run"], ["ct", "preprocess"], ["nodules", "cubes"],
                                  ["nodules", "infer"], ["nodules", "detect"], ["nodules", "mine"],
                                  ["nodules", "score"]])
def test_store_commands_share_the_common_options(argv, capsys):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert "--scheduler SPEC" in out and "(default: threads)" in out
    assert "--progress" in out and "--no-progress" in out
    if argv[0] != "run":
        assert "--store PATH" in out
