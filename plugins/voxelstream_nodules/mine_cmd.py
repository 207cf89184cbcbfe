"""``voxelstream nodules mine``: append hard negatives to a cube set (then ``train --init``)."""

from __future__ import annotations

import argparse

from voxelstream import CommandSpec, add_common_options, lazy_callable

from .annotations import read_annotations
from .infer_score_cmd import add_stitch_option
from .options import add_mask_option
from .outputs import ISO_OUTPUT, PROB_OUTPUT

# dask, zarr, JAX are imported when a command runs, not when the CLI lists it
use_scheduler = lazy_callable("voxelstream.scheduler:use_scheduler")
open_store = lazy_callable("voxelstream.store:open_store")
mine_hard_negatives = lazy_callable("voxelstream_nodules.mining:mine_hard_negatives")

__all__ = ["MINE"]


def _arguments(p: argparse.ArgumentParser) -> None:
    from .mining import DEFAULT_MARGIN_MM, DEFAULT_MIN_DISTANCE_MM, DEFAULT_PER_VOLUME, DEFAULT_THRESHOLD

    add_common_options(p, store_help="the store holding the preprocessed volumes")
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="the trained model (its split.json names the training series)")
    p.add_argument("--annotations", required=True, metavar="CSV", help="LUNA16 annotations.csv: detections near these are hits, not mined")
    p.add_argument("--cubes", required=True, metavar="CUBES", help="the cube set to append hard negatives to")
    p.add_argument("--excluded", metavar="CSV", help="annotations_excluded.csv: detections near these are not mined either")
    p.add_argument("--per-volume", type=int, default=DEFAULT_PER_VOLUME, metavar="K",
                   help=f"at most K hard negatives per training volume, most confident first (default {DEFAULT_PER_VOLUME})")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="T",
                   help=f"only detections with probability >= T (default {DEFAULT_THRESHOLD:g})")
    p.add_argument("--margin-mm", type=float, default=DEFAULT_MARGIN_MM,
                   help=f"a detection within radius + this of a finding is not a false positive (default {DEFAULT_MARGIN_MM:g})")
    p.add_argument("--min-distance-mm", type=float, default=DEFAULT_MIN_DISTANCE_MM,
                   help=f"local-maximum suppression distance (default {DEFAULT_MIN_DISTANCE_MM:g})")
    p.add_argument("--name", default=ISO_OUTPUT, help=f"the preprocessed output cubes are cut from (default {ISO_OUTPUT})")
    add_stitch_option(p)
    p.add_argument("--validation", action="store_true",
                   help="also mine the model's validation series: their hard negatives stay on the validation "
                        "side (the split is by series), so the fine-tune's early stopping sees them")
    add_mask_option(p, "mine", "everywhere")
    p.add_argument("--prob-name", default=PROB_OUTPUT, help=f"the probability-map output (default {PROB_OUTPUT}; computed where missing)")


def _run(args: argparse.Namespace) -> int:
    from .inference import infer_store  # JAX only when needed

    store = open_store(args.store)
    annotations = read_annotations(args.annotations)
    excluded = read_annotations(args.excluded) if args.excluded else []
    with use_scheduler(args.scheduler):
        infer_report = infer_store(store, args.model, name=args.name, out_name=args.prob_name,
                                   stitch=args.stitch)
        report = mine_hard_negatives(
            store, args.model, annotations, args.cubes, per_volume=args.per_volume, threshold=args.threshold,
            margin_mm=args.margin_mm, min_distance_mm=args.min_distance_mm, excluded=excluded,
            name=args.name, prob_name=args.prob_name, mask=args.mask,
            validation=args.validation,
        )
    print(f"{report.total} hard negatives appended to {args.cubes} from {len(report.appended)} training volumes; "
          f"fine-tune with: voxelstream nodules train --cubes {args.cubes} --init {args.model} --out NEW_MODEL_DIR")
    return infer_report.exit_code


MINE = CommandSpec(
    name="mine",
    help="hard-negative mining: append the model's false positives on training volumes to a cube set",
    description=(
        "For each training volume of --model (its split.json), find local maxima of the probability\n"
        "map (running 'infer' where it is missing) that lie farther than radius + --margin-mm from\n"
        "every annotation (and --excluded finding), and append the --per-volume most confident as\n"
        "cubes of kind hard_negative to --cubes. Validation volumes are mined only with --validation. Then\n"
        "fine-tune: voxelstream nodules train --cubes CUBES --init MODEL_DIR --out NEW_MODEL_DIR."
    ),
    add_arguments=_arguments,
    run=_run,
)
