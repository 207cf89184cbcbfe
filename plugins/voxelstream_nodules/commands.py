"""The CLI commands of the nodule-detection task: ``cubes`` and ``train``."""

from __future__ import annotations

import argparse
import sys
import warnings

from voxelstream.scheduler import SCHEDULER_HELP, use_scheduler
from voxelstream.specs import CommandSpec
from voxelstream.store import open_store

from .annotations import read_annotations
from .cubes import DEFAULT_CUBE_MM, DEFAULT_NEGATIVES, build_cubes

__all__ = ["CUBES", "COMMANDS"]


def _cubes_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="PATH", help="the store holding the preprocessed volumes")
    p.add_argument("--annotations", required=True, metavar="CSV", help="LUNA16 annotations.csv (world LPS mm)")
    p.add_argument("--out", required=True, metavar="CUBES", help="the cube set to write (replaced if it exists)")
    p.add_argument("--name", default="iso", help="which stored output to cut from (default: iso)")
    p.add_argument("--cube-mm", type=float, default=DEFAULT_CUBE_MM, help=f"cube edge in mm (default {DEFAULT_CUBE_MM:g})")
    p.add_argument("--negatives-per-volume", type=int, default=DEFAULT_NEGATIVES, metavar="N",
                   help=f"random negatives per volume (default {DEFAULT_NEGATIVES})")
    p.add_argument("--augment", type=int, default=0, metavar="K", help="augmented copies per positive (default 0)")
    p.add_argument("--excluded", metavar="CSV", help="LUNA16 annotations_excluded.csv: negatives keep clear of these too")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same cubes")
    p.add_argument("--scheduler", default="threads", help=SCHEDULER_HELP)


def _cubes_run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    annotations = read_annotations(args.annotations)
    excluded = read_annotations(args.excluded) if args.excluded else []

    def done(volume_id: str, n: int) -> None:
        print(f"{volume_id}\t{n} cubes", flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report below says the same, once
        with use_scheduler(args.scheduler):
            report = build_cubes(store, annotations, args.out, name=args.name, cube_mm=args.cube_mm,
                                 negatives_per_volume=args.negatives_per_volume, augment_copies=args.augment,
                                 excluded=excluded, seed=args.seed, on_volume=done)
    for line in report.rows_outside + report.short_of_negatives:
        print(f"warning: {line}", file=sys.stderr)
    if report.rows_unknown_series:
        print(f"note: {report.rows_unknown_series} annotation row(s) name series not in the store; ignored",
              file=sys.stderr)
    print(f"{report.volumes} volumes: {report.positives} positive, {report.augmented} augmented, "
          f"{report.negatives} negative cubes -> {args.out}")
    return 0


CUBES = CommandSpec(
    name="cubes",
    help="cut training cubes around annotated nodules and at random places away from them",
    description=(
        "Cut cubes from every volume of --store with a complete --name output (default iso):\n"
        "one positive centred at each annotation (centre voxel = rint(world_to_index(world)),\n"
        "padded with the window minimum past the border), --augment K shifted/flipped/turned\n"
        "copies of each, and --negatives-per-volume N negatives inside the body whose cubes\n"
        "overlap no annotated (or --excluded) finding. Writes a Zarr group: cubes (N, D, H, W),\n"
        "labels (N,) and index.csv. The same --seed gives the same cubes."
    ),
    add_arguments=_cubes_arguments,
    run=_cubes_run,
)

COMMANDS: tuple[CommandSpec, ...] = (CUBES,)
