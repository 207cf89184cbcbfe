"""Entry point of the ``voxelstream`` console script."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import VoxelstreamError
from ..plugins import tasks
from . import ingest_cmd, plugins_cmd, run_cmd

EPILOG = """\
examples:
  voxelstream ingest scans/ --store data.zarr        read every DICOM series / image file under scans/
  voxelstream plugins                                 what readers, stages, models and tasks are installed
  voxelstream run pipeline.toml                       run stages described in a pipeline file

Task plugins add their own commands (e.g. preprocess, cubes, train, infer); they are listed
above when installed. Set VOXELSTREAM_DEBUG=1 to see tracebacks.
"""

ENGINE_COMMANDS = (ingest_cmd.COMMAND, plugins_cmd.COMMAND, run_cmd.COMMAND)


def build_parser() -> tuple[argparse.ArgumentParser, list[str]]:
    """The parser, and the problems met while adding plugin commands (shown, not fatal)."""
    parser = argparse.ArgumentParser(
        prog="voxelstream",
        description="Stream medical volumes through pluggable chunk-wise stages (Dask + Zarr v3).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"voxelstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    problems: list[str] = []
    commands = list(ENGINE_COMMANDS)
    try:
        for task in tasks().values():
            commands.extend(task.commands)
    except VoxelstreamError as exc:  # a plugin conflict must not hide the engine's commands
        problems.append(str(exc))
    seen: set[str] = set()
    for cmd in commands:
        if cmd.name in seen:
            problems.append(f"command {cmd.name!r} is defined twice; the first definition is used")
            continue
        seen.add(cmd.name)
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser, problems = build_parser()
    args = parser.parse_args(argv)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except VoxelstreamError as exc:
        if os.environ.get("VOXELSTREAM_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: completed outputs are kept; re-run to finish the rest", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
