"""Entry point of the ``voxelstream`` console script.

Engine commands sit at the top (``ingest``, ``run``, ``plugins``, ...); every installed task
adds a namespace holding its commands (``voxelstream TASK COMMAND``). Building the parser
imports no heavy module: only the chosen command's ``add_arguments`` runs, and plugins
declare what they register cheaply (see :class:`voxelstream.LazySpec`).

Problems with plugins (one that fails to load, two registering one task name) are printed
as ``warning:`` lines before anything else and disable only what they concern.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..privacy import printable  # stdlib only: cheap at every start

from ..errors import PluginConflictError, PluginError, VoxelstreamError
from ..plugins import plugin_errors, registrations, get_task
from ..specs import CommandSpec, TaskSpec
from .options import apply_progress_option

__all__ = ["main", "build_cli", "Cli", "ENGINE_COMMANDS", "DEBUG_ENV"]

#: Engine commands, in the order ``--help`` lists them: each is the module
#: ``voxelstream.cli.<name>_cmd`` exposing ``COMMAND`` (a CommandSpec). A module that does
#: not exist (yet) is skipped, so a command lands by adding its module and its name here.
ENGINE_COMMANDS: tuple[str, ...] = ("ingest", "run", "verify", "plugins")

DEBUG_ENV = "VOXELSTREAM_DEBUG"

EPILOG = """\
examples:
  voxelstream ingest scans/ --store data.zarr        read every image file and series under scans/
  voxelstream run pipeline.toml                       run the stages of a pipeline file
  voxelstream plugins                                 what readers, stages, models and tasks are installed
  voxelstream TASK --help                             the commands of an installed task
  voxelstream TASK COMMAND --help                     every option of one command, with its default

Engine commands are at the top; each installed task (listed above) keeps its commands under
its own name. Set VOXELSTREAM_DEBUG=1 to see tracebacks.
"""


class _VersionAction(argparse.Action):
    """``--version``, reading the installed version only when asked (it scans metadata)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        from .. import __version__

        parser.exit(message=f"voxelstream {__version__}\n")


@dataclass
class _Entry:
    """One runnable command: its spec, its parser, and where it comes from."""

    spec: CommandSpec
    parser: argparse.ArgumentParser | None  # None: another task's command, not parsed this time
    where: str  # "voxelstream ingest", "voxelstream TASK COMMAND"
    plugin: str | None  # None: the engine's own


@dataclass
class Cli:
    """The parser, the problems met building it (printed as warnings) and the commands."""

    parser: argparse.ArgumentParser
    problems: list[str] = field(default_factory=list)
    entries: dict[tuple[str, ...], _Entry] = field(default_factory=dict)
    top: set[str] = field(default_factory=set)  # the first words argparse accepts


def _engine_specs() -> list[CommandSpec]:
    specs = []
    for name in ENGINE_COMMANDS:
        module = f"{__package__}.{name}_cmd"
        if importlib.util.find_spec(module) is None:
            continue
        specs.append(importlib.import_module(module).COMMAND)
    return specs


def _sub_parser(sub: argparse._SubParsersAction, name: str, help: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description or help,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_conflicted_task(sub: argparse._SubParsersAction, name: str, message: str) -> None:
    """A task name two plugins register stays a word of the CLI that fails with the conflict."""
    p = _sub_parser(sub, name, f"(unavailable) {message}", message)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> int:
        raise PluginConflictError(message)

    p.set_defaults(_run=run, _where=f"voxelstream {name}", _plugin=None)


def _add_task(cli: Cli, sub: argparse._SubParsersAction, task: TaskSpec, chosen: bool) -> None:
    """The task's word, and its commands' parsers when ``argv`` names this task (building a
    parser per command of every task would be most of what ``voxelstream --help`` costs)."""
    names = ", ".join(c.name for c in task.commands)
    p = _sub_parser(
        sub, task.name, f"{task.description or task.name} [{names}]",
        f"{task.description}\n\nModality: {task.modality}. Plugin: {task.plugin}.".lstrip(),
    )
    p.set_defaults(_help_parser=p)
    task_sub = p.add_subparsers(metavar="COMMAND", title="commands") if chosen else None
    for cmd in task.commands:
        if (task.name, cmd.name) in cli.entries:
            cli.problems.append(f"task {task.name!r} defines command {cmd.name!r} twice; the first one is used")
            continue
        where = f"voxelstream {task.name} {cmd.name}"
        cp = None
        if task_sub is not None:
            cp = _sub_parser(task_sub, cmd.name, cmd.help, cmd.description)
            cp.set_defaults(_run=cmd.run, _where=where, _plugin=task.plugin)
        cli.entries[(task.name, cmd.name)] = _Entry(cmd, cp, where, task.plugin)


def _selected(argv: Sequence[str], cli: Cli) -> tuple[str, ...] | None:
    """The command ``argv`` names: its first word (and a task's command the next word),
    read the way argparse will (top-level and task-level options take no value)."""
    words = [w for w in argv if not w.startswith("-")]
    for n in (1, 2):
        if tuple(words[:n]) in cli.entries and cli.entries[tuple(words[:n])].parser is not None:
            return tuple(words[:n])
    return None


def build_cli(argv: Sequence[str] = ()) -> Cli:
    """The parser with every command listed and the options of the one ``argv`` names."""
    parser = argparse.ArgumentParser(
        prog="voxelstream",
        description="Stream images through pluggable chunk-wise stages (Dask + Zarr v3), store to store.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(metavar="COMMAND", title="commands")
    cli = Cli(parser)
    first = next((w for w in argv if not w.startswith("-")), None)
    for cmd in _engine_specs():
        cp = _sub_parser(sub, cmd.name, cmd.help, cmd.description)
        cp.set_defaults(_run=cmd.run, _where=f"voxelstream {cmd.name}", _plugin=None)
        cli.entries[(cmd.name,)] = _Entry(cmd, cp, f"voxelstream {cmd.name}", None)
        cli.top.add(cmd.name)
    for plugin, errors in plugin_errors(("tasks",)).items():
        cli.problems.extend(f"plugin {plugin!r}: {e}; see 'voxelstream plugins'" for e in errors)
    for name, regs in registrations("tasks").items():
        if (name,) in cli.entries:
            cli.problems.append(f"task {name!r} of plugin {regs[0].plugin!r} has the name of an engine command; "
                                "its commands are not available")
            continue
        try:
            task = get_task(name)
        except PluginConflictError as exc:
            cli.problems.append(str(exc))
            _add_conflicted_task(sub, name, str(exc))
            cli.top.add(name)
            continue
        except PluginError as exc:
            cli.problems.append(f"{exc}; its commands are not available")
            continue
        try:
            _add_task(cli, sub, task, chosen=name == first)
            cli.top.add(name)
        except Exception as exc:  # a malformed TaskSpec (e.g. a command that is not a CommandSpec)
            cli.problems.append(f"plugin {task.plugin!r}: task {name!r} cannot be listed: "
                                f"{traceback.format_exception_only(type(exc), exc)[-1].strip()}")
    chosen = _selected(argv, cli)
    if chosen is not None:
        entry = cli.entries[chosen]
        try:
            entry.spec.add_arguments(entry.parser)
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise PluginError(_bug_line(entry.where, entry.plugin, exc)) from exc
    return cli


def _task_hint(argv: Sequence[str], cli: Cli) -> str | None:
    """For a task's command typed at the top (``voxelstream preprocess``, the names before
    task namespaces): where it lives now. ``None`` when argparse should answer."""
    words = [w for w in argv if not w.startswith("-")]
    if not words or words[0] in cli.top:
        return None
    homes = [key[0] for key in cli.entries if len(key) == 2 and key[1] == words[0]]
    if not homes or words[0] in homes:
        return None
    where = " or ".join(f"'voxelstream {task} {words[0]}'" for task in homes)
    return f"'{words[0]}' is not a top-level command: task commands live under their task: {where}"


def _bug_line(where: str, plugin: str | None, exc: BaseException) -> str:
    what = traceback.format_exception_only(type(exc), exc)[-1].strip()
    owner = f"plugin {plugin!r}" if plugin else "voxelstream"
    return f"{where}: {what} (a bug in {owner}; set {DEBUG_ENV}=1 to see the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cli = build_cli(argv)
    except PluginError as exc:
        print(printable(f"error: {exc}"), file=sys.stderr)
        return 1
    for problem in cli.problems:
        print(f"warning: {problem}", file=sys.stderr)
    hint = _task_hint(argv, cli)
    if hint:
        print(f"error: {hint}", file=sys.stderr)
        return 2
    args = cli.parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:  # no command: a task's or the top-level help
        getattr(args, "_help_parser", cli.parser).print_help()
        return 2
    apply_progress_option(args)
    try:
        return int(run(args) or 0)
    except VoxelstreamError as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(printable(f"error: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: completed outputs are kept; re-run to finish the rest", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line naming whose, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        print(printable(f"error: {_bug_line(args._where, args._plugin, exc)}"), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
