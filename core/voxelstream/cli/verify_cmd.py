"""``voxelstream verify``: check every chunk and metadata document of a store."""

from __future__ import annotations

import argparse
import sys

from ..specs import CommandSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="PATH", help="the store to check")
    p.add_argument("--repair", action="store_true",
                   help="mark damaged outputs incomplete, so that re-running the command that made them "
                        "rebuilds them (nothing else is changed)")


def run(args: argparse.Namespace) -> int:
    from ..store import open_store
    from ..store.verify import verify_store

    store = open_store(args.store)
    outputs = chunks = 0
    damaged = []
    for vid, name, n, dmg in verify_store(store):
        outputs += bool(name)
        chunks += n
        if dmg is not None:
            damaged.append(dmg)
            print(dmg.line(), flush=True)
    if args.repair:
        for dmg in damaged:
            if dmg.name:
                store.mark_incomplete(dmg.volume_id, dmg.name)
                print(f"repaired: {dmg.volume_id}/{dmg.name}: marked incomplete; re-run the command that makes it")
            elif store.rebuild_volume_group(dmg.volume_id) is not None:
                print(f"repaired: {dmg.volume_id}: its volume document was written again from its outputs")
            else:
                print(f"not repaired: {dmg.volume_id}: its volume document is damaged and no output names the "
                      f"volume; re-ingest it (or delete the folder volumes/{dmg.volume_id})", file=sys.stderr)
    print(f"{outputs} output(s), {chunks} chunk(s) checked: "
          + (f"{len(damaged)} damaged" if damaged else "no damage found"))
    return 1 if damaged else 0


COMMAND = CommandSpec(
    name="verify",
    help="check every chunk (checksums) and metadata document of a store",
    description=(
        "Read every metadata document and every chunk of every output in --store, checking each\n"
        "chunk's crc32c checksum and that it decodes to the right size. Prints one line per damaged\n"
        "output ('damaged: <id>/<output>: reason') and exits 1 when anything is damaged.\n"
        "With --repair, damaged outputs are marked incomplete: re-running the command that made them\n"
        "(ingest, run, a task command) rebuilds exactly those.\n\n"
        "example:\n"
        "  voxelstream verify --store data.zarr --repair && voxelstream ingest scans/ --store data.zarr"
    ),
    add_arguments=add_arguments,
    run=run,
)
