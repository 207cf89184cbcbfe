"""The CLI commands ``voxelstream nodules cubes`` and ``voxelstream nodules train``."""

from __future__ import annotations

import argparse
import sys
import warnings

from voxelstream import CommandSpec, add_common_options, lazy_callable

from .annotations import read_annotations
from .options import TrainError, TrainOptions, add_mask_option
from .outputs import ISO_OUTPUT

# dask, zarr, JAX are imported when a command runs, not when the CLI lists it
use_scheduler = lazy_callable("voxelstream.scheduler:use_scheduler")
open_store = lazy_callable("voxelstream.store:open_store")
build_cubes = lazy_callable("voxelstream_nodules.cubes:build_cubes")

__all__ = ["CUBES", "TRAIN", "COMMANDS"]


def _cubes_arguments(p: argparse.ArgumentParser) -> None:
    from .cubes import DEFAULT_CUBE_MM, DEFAULT_NEGATIVES

    add_common_options(p, store_help="the store holding the preprocessed volumes")
    p.add_argument("--annotations", required=True, metavar="CSV", help="LUNA16 annotations.csv (world LPS mm)")
    p.add_argument("--out", required=True, metavar="CUBES", help="the cube set to write (replaced if it exists)")
    p.add_argument("--name", default=ISO_OUTPUT, help=f"which stored output to cut from (default: {ISO_OUTPUT})")
    p.add_argument("--cube-mm", type=float, default=DEFAULT_CUBE_MM, help=f"cube edge in mm (default {DEFAULT_CUBE_MM:g})")
    p.add_argument("--negatives-per-volume", type=int, default=DEFAULT_NEGATIVES, metavar="N",
                   help=f"random negatives per volume (default {DEFAULT_NEGATIVES})")
    p.add_argument("--augment", type=int, default=0, metavar="K", help="augmented copies per positive (default 0)")
    p.add_argument("--excluded", metavar="CSV", help="LUNA16 annotations_excluded.csv: negatives keep clear of these too")
    p.add_argument("--near-misses", type=int, default=0, metavar="K",
                   help="K negatives per nodule centred 4-12 mm outside it (the nodule off centre in the cube): "
                        "they teach the classifier to answer only when the nodule is centred (default 0)")
    p.add_argument("--structure-negatives", type=int, default=0, metavar="N",
                   help="with --mask: N more negatives per volume centred on voxels denser than -500 HU inside the "
                        "mask (vessels, airway walls, pleura: where false positives come from; default 0)")
    add_mask_option(p, "draw negative centres", "anywhere in the body")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same cubes")


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
                                 excluded=excluded, seed=args.seed, mask=args.mask,
                                 near_misses_per_nodule=args.near_misses,
                                 structure_negatives=args.structure_negatives, on_volume=done)
    for line in report.rows_outside + report.short_of_negatives:
        print(f"warning: {line}", file=sys.stderr)
    if report.rows_unknown_series:
        print(f"note: {report.rows_unknown_series} annotation row(s) name series not in the store; ignored",
              file=sys.stderr)
    print(f"{report.volumes} volumes: {report.positives} positive, {report.augmented} augmented, "
          f"{report.negatives} negative, {report.near_misses} near-miss cubes -> {args.out}")
    return 0


CUBES = CommandSpec(
    name="cubes",
    help="cut training cubes around annotated nodules and at random places away from them",
    description=(
        "Cut cubes from every volume of --store with a complete --name output (default iso):\n"
        "one positive centred at each annotation (centre voxel = rint(world_to_index(world)),\n"
        "padded with the window minimum past the border), --augment K shifted/flipped/turned\n"
        "copies of each, and --negatives-per-volume N negatives whose cubes overlap no annotated\n"
        "(or --excluded) finding and whose centre is inside the body (the centre voxel and half of\n"
        "the cube's middle are above air, i.e. above -930 HU for the lung window).\n"
        "Writes a Zarr group: cubes (N, D, H, W), labels (N,) and index.csv. The same --seed gives\n"
        "the same cubes."
    ),
    add_arguments=_cubes_arguments,
    run=_cubes_run,
)



def _train_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainOptions()
    p.add_argument("--cubes", required=True, metavar="CUBES", help="the cube set written by 'voxelstream nodules cubes'")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="where the model, split and metrics go")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"at most this many epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"cubes per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr:g})")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of series held out for validation (default {d.val_fraction:g})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"stop after this many epochs without a better validation loss (default {d.patience})")
    p.add_argument("--channels", default=",".join(map(str, d.channels)), metavar="C1,C2,...",
                   help="channels per block, one block per pooling (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0): same seed, same weights")
    p.add_argument("--init", metavar="MODEL_DIR", help="start from this trained model instead of random weights")
    p.add_argument("--label-smoothing", type=float, default=0.0, metavar="A",
                   help="train towards A/2 and 1 - A/2 instead of 0 and 1 (default 0): the logits stay bounded, "
                        "so the probability map does not saturate at 1.0 where detections must be ranked")
    p.add_argument("--cosine", action="store_true",
                   help="decay the learning rate from --lr to 0 over --epochs (cosine): the last epochs take "
                        "small steps, so the kept epoch depends less on where the noise of the steps left it")
    p.add_argument("--flips", action="store_true",
                   help="augment every training batch: each cube flipped along random axes and its axial plane "
                        "transposed at random (16 orientations; labels do not change; seeded, so runs repeat)")


def _train_run(args: argparse.Namespace) -> int:
    try:
        channels = tuple(int(c) for c in args.channels.split(","))
    except ValueError:
        raise TrainError(f"--channels {args.channels!r}: expected comma-separated integers, e.g. 8,16") from None
    opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, val_fraction=args.val_fraction,
                        seed=args.seed, patience=args.patience, channels=channels, init=args.init,
                        flips=args.flips, cosine=args.cosine, label_smoothing=args.label_smoothing)
    from .train import train  # JAX is imported only when training

    metrics = train(args.cubes, args.out, opts, log=lambda line: print(line, flush=True))
    best = min(metrics, key=lambda m: m["val_loss"])
    auc = "n/a (one class)" if best["val_auc"] is None else f"{best['val_auc']:.3f}"
    print(f"best epoch {best['epoch']}: val loss {best['val_loss']:.4f}, val AUC {auc} -> {args.out}")
    return 0


TRAIN = CommandSpec(
    name="train",
    help="train the nodule classifier (3-D CNN) on a cube set",
    description=(
        "Train the VGG-like 3-D CNN on --cubes with AdamW. Series are split into training and\n"
        "validation (no series on both sides); positives are weighted by the class ratio; training\n"
        "stops early when the validation loss stops improving. Writes MODEL_DIR/model.json +\n"
        "weights.npz (the best epoch; load with voxelstream.load_model), split.json, metrics.json\n"
        "and training_curve.png. The same --seed gives the same weights on the CPU."
    ),
    add_arguments=_train_arguments,
    run=_train_run,
)

COMMANDS: tuple[CommandSpec, ...] = (CUBES, TRAIN)
