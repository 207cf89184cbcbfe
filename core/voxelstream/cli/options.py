"""The options every store command shares, defined once: ``--store``, ``--scheduler`` and
``--progress/--no-progress``. Engine and task commands add them through these helpers
(exported from ``voxelstream``), so the names, defaults and help read the same everywhere.

Cheap to import (no dask): command modules call these from ``add_arguments``.
"""

from __future__ import annotations

import argparse
import os

from ..constants import DEFAULT_SCHEDULER, SCHEDULER_HELP

__all__ = [
    "add_store_option",
    "add_scheduler_option",
    "add_progress_option",
    "add_common_options",
    "apply_progress_option",
    "PROGRESS_ENV",
]

#: The environment variable :func:`voxelstream.progress.progress_enabled` reads; the
#: progress option sets it, so child processes follow the same choice.
PROGRESS_ENV = "VOXELSTREAM_PROGRESS"

_STORE_HELP = "the Zarr store (a folder; see 'voxelstream ingest')"


def add_store_option(parser: argparse.ArgumentParser, *, help: str | None = None, required: bool = True) -> None:
    """``--store PATH`` (required unless ``required=False``). ``help`` says what the command
    does with the store, e.g. "the store holding the preprocessed volumes"."""
    parser.add_argument("--store", required=required, metavar="PATH", help=help or _STORE_HELP)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def add_scheduler_option(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    """``--scheduler SPEC``; unset means :data:`~voxelstream.constants.DEFAULT_SCHEDULER`
    (``args.scheduler`` is ``None`` so that a pipeline file's own setting can apply).
    Pass ``args.scheduler`` to :func:`voxelstream.scheduler.use_scheduler`."""
    text = SCHEDULER_HELP if help is None else f"{SCHEDULER_HELP}; {help}"
    parser.add_argument("--scheduler", default=None, metavar="SPEC", help=f"{text} (default: {DEFAULT_SCHEDULER})")
    parser.add_argument("--in-flight", type=_at_least_one, default=None, metavar="N",
                        help="volumes processed at once (default: 2 on threads, one per worker thread + 1 on "
                        "dask.distributed); memory grows with it")


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress``: show or hide progress bars on stderr (default:
    shown when stderr is a terminal). The CLI applies it before the command runs."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="show progress bars on stderr (default: only when stderr is a terminal)")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress bars")


def add_common_options(
    parser: argparse.ArgumentParser,
    *,
    store: bool = True,
    store_help: str | None = None,
    scheduler: bool = True,
    progress: bool = True,
) -> None:
    """The options a command that works on a store needs: ``--store``, ``--scheduler`` and
    ``--progress/--no-progress`` (each can be left out)."""
    if store:
        add_store_option(parser, help=store_help)
    if scheduler:
        add_scheduler_option(parser)
    if progress:
        add_progress_option(parser)


def apply_progress_option(args: argparse.Namespace) -> None:
    """Make ``--progress``/``--no-progress`` and ``--in-flight`` take effect (no-op when not
    given)."""
    choice = getattr(args, "progress", None)
    if choice is not None:
        os.environ[PROGRESS_ENV] = "1" if choice else "0"
    in_flight = getattr(args, "in_flight", None)  # read by voxelstream.runner.default_in_flight
    if in_flight is not None:
        os.environ["VOXELSTREAM_IN_FLIGHT"] = str(in_flight)
