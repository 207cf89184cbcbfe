"""``voxelstream ct phantoms``: write a small LUNA16-like dataset of synthetic CT scans."""

from __future__ import annotations

import argparse
from pathlib import Path

from voxelstream.specs import CommandSpec

__all__ = ["PHANTOMS"]


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (created if missing)")
    p.add_argument("--n", type=int, default=4, metavar="N", help="number of scans (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same files")
    p.add_argument("--format", choices=("dicom", "mhd"), default="dicom",
                   help="dicom: one series per scan under DIR/<PatientID>/<SeriesUID>/ (default); "
                   "mhd: DIR/<SeriesUID>.mhd + .raw")
    p.add_argument("--classic", action="store_true",
                   help="the earlier, easy phantoms: isolated solid nodules of 4-30 mm, 1.0-2.5 mm slices "
                   "(default: LUNA16-like sizes 3-30 mm, juxtapleural/vessel-attached and ground-glass "
                   "nodules, 0.6-2.5 mm slices)")


def _run(args: argparse.Namespace) -> int:
    from .phantom_datasets import generate_dataset  # rendering needs scipy etc.: import only when asked

    csv = generate_dataset(Path(args.out), args.n, seed=args.seed, write_format=args.format,
                           realistic=not args.classic)
    print(f"{args.n} phantom scans ({args.format}) and {csv.name} written to {args.out}")
    return 0


PHANTOMS = CommandSpec(
    name="phantoms",
    help="write synthetic chest CT scans with nodules (DICOM or MetaImage) and LUNA16-style tables",
    description=(
        "Render --n synthetic chest CT scans (lungs, vessels, nodules, noise; spacing varies per scan)\n"
        "and write them with annotations.csv, annotations_excluded.csv and seriesuids.csv, like LUNA16,\n"
        "plus phantom_findings.csv (each nodule's texture and attachment). Nodules follow LUNA16's sizes\n"
        "(3-30 mm, most under 10 mm); some touch the pleura or a vessel, some are ground-glass.\n\n"
        "example:\n"
        "  voxelstream ct phantoms --out scans/ --n 4 && voxelstream ingest scans/ --store data.zarr"
    ),
    add_arguments=_add_arguments,
    run=_run,
)
