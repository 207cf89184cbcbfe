"""``voxelstream ingest``."""

from __future__ import annotations

import argparse

from ..ingest import ingest
from ..scheduler import SCHEDULER_HELP, use_scheduler
from ..specs import CommandSpec
from ..store import DEFAULT_CHUNK, open_store


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a file, or a folder searched recursively (may hold several series)")
    p.add_argument("--store", required=True, metavar="PATH", help="the Zarr store to write (created if missing)")
    p.add_argument("--chunks", type=int, default=DEFAULT_CHUNK, metavar="N", help=f"chunk edge in voxels (default {DEFAULT_CHUNK})")
    p.add_argument("--scheduler", default="threads", help=SCHEDULER_HELP)
    p.add_argument("--keep-phi", action="store_true", help="also store patient-identifying header fields (off by default)")
    p.add_argument("--force", action="store_true", help="re-ingest volumes that are already stored")


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store, create=True)
    with use_scheduler(args.scheduler):
        report = ingest(args.inputs, store, chunks=args.chunks, keep_phi=args.keep_phi, force=args.force)
    return report.exit_code


COMMAND = CommandSpec(
    name="ingest",
    help="read DICOM series and image files into a Zarr store",
    description=(
        "Read every volume under the INPUTs (DICOM series grouped by SeriesInstanceUID, "
        ".mhd/.mha/.nii/.nii.gz/.nrrd files) and stream it into --store as volumes/<id>/image.\n"
        "Prints '<id>\\t<shape>' per stored volume; a failed input prints 'error: INPUT: reason' on\n"
        "stderr, the others still finish, and the exit status is 1. Re-running skips what is done."
    ),
    add_arguments=add_arguments,
    run=run,
)
