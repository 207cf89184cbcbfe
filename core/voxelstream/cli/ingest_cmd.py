"""``voxelstream ingest``."""

from __future__ import annotations

import argparse

from ..constants import DEFAULT_CHUNK
from ..specs import CommandSpec
from .options import add_common_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a file, or a folder searched recursively (may hold several series)")
    add_common_options(p, store_help="the Zarr store to write (created if missing)")
    p.add_argument("--chunks", type=int, default=None, metavar="N",
                   help=f"chunk edge in voxels (default: {DEFAULT_CHUNK} for 3-D volumes; for 2-D images such as "
                   "photographs a few large tiles, the store's default)")
    p.add_argument("--keep-phi", action="store_true",
                   help="also store patient-identifying header fields and source paths (off by default: the store "
                   "and manifests record a salted hash of each path)")
    p.add_argument("--allow-outside-data", action="store_true",
                   help="let an image header (.mhd ElementDataFile, .nhdr data file) point at data outside its own "
                   "folder (off by default: such a header is refused, so no other file of this machine is read)")
    p.add_argument("--force", action="store_true", help="re-ingest volumes that are already stored")
    p.description = f"{p.description}\n\ninstalled readers (highest priority first):\n{installed_readers()}"


def installed_readers(width: int = 92) -> str:
    """One entry per installed reader for ``--help``, from the plugin registry: names and
    descriptions only, so no reader module (nor dask, nor pydicom) is imported."""
    import textwrap

    from ..plugins import registrations

    regs = registrations("readers")
    if not regs:
        return "  none: install a reader plugin (see 'voxelstream plugins')"

    def priority(item: tuple) -> int:
        return -max(getattr(r.spec, "priority", 0) for r in item[1])

    lines = []
    for name, found in sorted(regs.items(), key=lambda item: (priority(item), item[0])):
        plugins = " and ".join(repr(r.plugin) for r in found)
        text = (f"{found[0].description} (plugin {plugins})" if len(found) == 1
                else f"unusable: registered by plugins {plugins}")
        lines.append(textwrap.fill(text, width, initial_indent=f"  {name:<10} ", subsequent_indent=" " * 13))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    # here, not at the top: listing commands must not import dask and zarr
    from ..ingest import ingest
    from ..scheduler import use_scheduler
    from ..store import open_store

    store = open_store(args.store, create=True)
    with use_scheduler(args.scheduler):
        report = ingest(args.inputs, store, chunks=args.chunks, keep_phi=args.keep_phi, force=args.force,
                        allow_outside_data=args.allow_outside_data)
    return report.exit_code


COMMAND = CommandSpec(
    name="ingest",
    help="read image files and series into a Zarr store",
    description=(
        "Read every volume under the INPUTs (each installed reader, listed below, claims its files)\n"
        "and stream it into --store as volumes/<id>/image.\n"
        "Prints '<id>\\t<shape>' per stored volume; a failed input prints 'error: INPUT: reason' on\n"
        "stderr, the others still finish, and the exit status is 1. Re-running skips what is done."
    ),
    add_arguments=add_arguments,
    run=run,
)
