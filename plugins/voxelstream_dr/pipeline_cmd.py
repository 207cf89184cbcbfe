"""The commands of the ``dr`` task: ``preprocess``, ``train``, ``predict``, ``evaluate`` and
``phantoms`` (``demo`` is in :mod:`voxelstream_dr.demo_cmd`). Heavy modules (dask, JAX) are
imported when a command runs, never when the CLI is built."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from voxelstream import CommandSpec, VoxelstreamError, add_common_options

from .options import BALANCES, DEFAULT_NAME, DEFAULT_RADIUS, TARGETS, TrainOptions

__all__ = ["PREPROCESS", "TRAIN", "PREDICT", "EVALUATE", "PHANTOMS", "COMMANDS"]


def _preprocess_options(p: argparse.ArgumentParser, radius_help: str) -> None:
    p.add_argument("--radius", type=int, default=None, metavar="R", help=radius_help)
    p.add_argument("--name", default=DEFAULT_NAME,
                   help=f"the preprocessed output: volumes/<id>/NAME (default {DEFAULT_NAME})")


def _note(lines: list[str]) -> None:
    for line in lines:
        print(f"note: {line}", file=sys.stderr, flush=True)


# -- preprocess ----------------------------------------------------------------------------
def _preprocess_arguments(p: argparse.ArgumentParser) -> None:
    add_common_options(p, store_help="the store 'voxelstream ingest' wrote the photographs into; with PHOTO, "
                                     "the store the outputs go to (created if missing)")
    _preprocess_options(p, f"fundus radius of the output in pixels: (3, 2R, 2R) (default {DEFAULT_RADIUS})")
    p.add_argument("--force", action="store_true", help="redo photographs already done with the same parameters")
    p.add_argument("photos", nargs="*", metavar="PHOTO",
                   help="photographs or folders to preprocess straight from the files, without storing them at "
                        "full size (the store is created if missing); without PHOTO, the store's ingested images")
    p.add_argument("--no-draft", dest="draft", action="store_false",
                   help="with PHOTO: decode JPEGs at full size (default: at 1/2..1/8 while decoding, keeping at "
                        "least 4R rows; about 0.3 grey levels of difference on average, several times faster)")


def _preprocess_run(args: argparse.Namespace) -> int:
    from voxelstream.scheduler import use_scheduler
    from voxelstream.store import open_store

    from .preprocess import preprocess_files, preprocess_store

    radius = args.radius or DEFAULT_RADIUS
    with use_scheduler(args.scheduler):
        if args.photos:
            report = preprocess_files(open_store(args.store, create=True), args.photos, radius=radius, name=args.name,
                                      draft=args.draft, force=args.force)
        else:
            report = preprocess_store(open_store(args.store), radius=radius, name=args.name, force=args.force)
    return report.exit_code


PREPROCESS = CommandSpec(
    name="preprocess",
    help="crop and scale every fundus photograph to a fixed radius and subtract the local average colour",
    description=(
        "For every colour photograph in --store (modality OP, or 2-D in pixels), the seed's recipe:\n"
        "the fundus radius from the middle row (pixels brighter than a tenth of the row's mean), scaled\n"
        "to --radius R, a 2R x 2R crop around the fundus (black outside the photograph), 4 * image -\n"
        "4 * gaussian(image, R/30) + 128, and 128 outside 0.9 R. Writes volumes/<id>/NAME (3, 2R, 2R)\n"
        "uint8, chunk by chunk; photographs already done with the same parameters are skipped; a bad\n"
        "one prints 'error: <id>: reason' and the others finish (exit status 1).\n\n"
        "example:\n"
        "  voxelstream ingest photos/ --store dr.zarr && voxelstream dr preprocess --store dr.zarr --radius 256\n"
        "  voxelstream dr preprocess photos/ --store dr.zarr --radius 256   # straight from the files (faster)"
    ),
    add_arguments=_preprocess_arguments,
    run=_preprocess_run,
)


# -- train ---------------------------------------------------------------------------------
def _train_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainOptions()
    add_common_options(p, store_help="the store holding the photographs (preprocessed here where missing)")
    p.add_argument("--labels", required=True, metavar="CSV", help="Kaggle trainLabels.csv (image,level) or APTOS train.csv (id_code,diagnosis)")
    p.add_argument("--out", required=True, metavar="MODEL", help="model directory to write (model.json, weights.npz, "
                   "split.json, metrics.json, training_curve.png)")
    _preprocess_options(p, f"fundus radius the network sees, input 2R x 2R (default {DEFAULT_RADIUS})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"at most this many epochs (default {d.epochs})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"stop after this many epochs without a better validation kappa (default {d.patience})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate, cosine-decayed (default {d.lr:g})")
    p.add_argument("--target", choices=TARGETS, default=d.target,
                   help="regression: the grade as a number, thresholds fitted on validation (default); "
                   "softmax: 5 classes")
    p.add_argument("--balance", choices=BALANCES, default=d.balance,
                   help="class rebalancing: oversample rare grades (default), weight the loss, or none")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of patients held out for validation, per grade (default {d.val_fraction:g})")
    p.add_argument("--channels", type=int, nargs="+", default=list(d.channels), metavar="C",
                   help=f"filters per conv block (default {' '.join(map(str, d.channels))})")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0): same seed, same model")


def _store_photos(store: Any, name: str, grades: dict[str, int] | None = None) -> Any:
    """The preprocessed photographs of ``store`` (those graded in ``grades`` when given)."""
    from .labels import match_ids
    from .photos import Photos

    have = store.volume_ids(name=name)
    if grades is not None:
        matched = match_ids(grades, have)
        _note(matched.report())
        have = matched.both
    if not have:
        raise VoxelstreamError(f"{store.path}: no preprocessed photograph ({name!r})" +
                               (" with a grade in the labels" if grades is not None else ""))
    return Photos.from_store(store, have, name)


def _train_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from voxelstream.scheduler import use_scheduler
    from voxelstream.store import open_store

    from .labels import read_grades
    from .preprocess import preprocess_store
    from .train import train

    grades = read_grades(args.labels)
    store = open_store(args.store)
    radius = args.radius or DEFAULT_RADIUS
    with use_scheduler(args.scheduler):
        report = preprocess_store(store, radius=radius, name=args.name)
    if report.failed:
        print(f"warning: {len(report.failed)} photograph(s) could not be preprocessed; training without them",
              file=sys.stderr)
    opts = replace(TrainOptions(), epochs=args.epochs, patience=args.patience, batch_size=args.batch_size, lr=args.lr,
                   target=args.target, balance=args.balance, val_fraction=args.val_fraction,
                   channels=tuple(args.channels), augment=not args.no_augment, seed=args.seed)
    photos = _store_photos(store, args.name, grades)
    train(photos, grades, args.out, opts, extra={"preprocess": {"radius": radius, "name": args.name},
                                                 "labels": str(Path(args.labels).name)})
    print(f"model written to {args.out}")
    return 0


TRAIN = CommandSpec(
    name="train",
    help="train the 2-D CNN grader on preprocessed photographs and a grade table",
    description=(
        "Preprocess what is missing (as 'dr preprocess'), split the graded photographs by patient\n"
        "(<patient>_left/_right on one side) stratified by grade, and train a VGG-like CNN with\n"
        "augmentation (rotation, mirror, zoom, brightness, contrast), class rebalancing and an\n"
        "ordinal target; early stopping on validation quadratic kappa. Writes MODEL/model.json\n"
        "(with the thresholds fitted on validation), weights.npz, split.json, metrics.json (per\n"
        "epoch) and training_curve.png. Same seed, same model on the CPU.\n\n"
        "example:\n"
        "  voxelstream dr train --store dr.zarr --labels trainLabels.csv --out model/ --epochs 30"
    ),
    add_arguments=_train_arguments,
    run=_train_run,
)


# -- predict -------------------------------------------------------------------------------
def _predict_arguments(p: argparse.ArgumentParser) -> None:
    add_common_options(p, store_help="the store holding the photographs to grade (preprocessed here where missing)")
    p.add_argument("--model", required=True, action="append", metavar="MODEL",
                   help="a model directory from 'dr train'; repeat to average several models")
    p.add_argument("--out", required=True, metavar="CSV", help="predictions: image,level,value,score_0..score_4")
    p.add_argument("--tta", type=int, default=1, metavar="N",
                   help="test-time augmentation: average N views (rotations, mirrored every other; default 1)")
    p.add_argument("--name", default=None, help="the preprocessed output to read (default: the model's)")
    p.add_argument("--batch-size", type=int, default=32, help="default 32")


def _predict_run(args: argparse.Namespace) -> int:
    from voxelstream.scheduler import use_scheduler
    from voxelstream.store import open_store

    from .predict import check_compatible, model_info, predict, write_predictions
    from .preprocess import preprocess_store

    infos = [model_info(m) for m in args.model]
    check_compatible(infos)
    radius = int(infos[0].preprocess.get("radius", DEFAULT_RADIUS))
    name = args.name or infos[0].preprocess.get("name", DEFAULT_NAME)
    store = open_store(args.store)
    with use_scheduler(args.scheduler):
        report = preprocess_store(store, radius=radius, name=name)
    pred = predict(_store_photos(store, name), args.model, tta=args.tta, batch_size=args.batch_size)
    write_predictions(args.out, pred)
    counts = ", ".join(f"{g}: {int((pred.levels == g).sum())}" for g in range(5))
    print(f"{len(pred.ids)} photographs graded ({counts}) -> {args.out}")
    return report.exit_code


PREDICT = CommandSpec(
    name="predict",
    help="grade every photograph of a store with one or more models and test-time augmentation",
    description=(
        "Preprocess what is missing (with the model's radius), grade every photograph with every\n"
        "--model through --tta views, and write CSV: image,level (as a Kaggle submission), value\n"
        "(the grade as a number) and score_0..score_4 (regression models: the share of views x\n"
        "models voting for each grade; softmax models: the mean probabilities).\n\n"
        "example:\n"
        "  voxelstream dr predict --store test.zarr --model m1/ --model m2/ --tta 8 --out predictions.csv"
    ),
    add_arguments=_predict_arguments,
    run=_predict_run,
)


# -- evaluate ------------------------------------------------------------------------------
def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", required=True, metavar="CSV", help="the CSV 'dr predict' wrote (image,level,...)")
    p.add_argument("--labels", required=True, metavar="CSV", help="reference grades (Kaggle or APTOS layout)")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/metrics.json and DIR/confusion.png")


def format_confusion(cm: list[list[int]]) -> str:
    """The confusion matrix as aligned text, rows the true grade."""
    lines = ["true\\pred " + " ".join(f"{g:>5}" for g in range(len(cm)))]
    lines += [f"{i:>9} " + " ".join(f"{v:>5}" for v in row) for i, row in enumerate(cm)]
    return "\n".join(lines)


def _evaluate_run(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    metrics, notes = evaluate(args.predictions, args.labels, args.out)
    _note(notes)
    kappa = "n/a" if metrics["kappa"] is None else f"{metrics['kappa']:.4f}"
    print(f"quadratic weighted kappa {kappa}, accuracy {metrics['accuracy']:.4f}, n = {metrics['n']}")
    print(format_confusion(metrics["confusion"]))
    print(f"-> {Path(args.out) / 'metrics.json'}, {Path(args.out) / 'confusion.png'}")
    return 0


EVALUATE = CommandSpec(
    name="evaluate",
    help="quadratic weighted kappa, accuracy, confusion matrix and recall per grade of predictions",
    description=(
        "Compare predicted grades with reference grades (images on one side only are counted and\n"
        "left out) and write DIR/metrics.json: kappa (quadratic weighted Cohen's kappa, the Kaggle\n"
        "metric), accuracy, confusion (5x5, rows the true grade), recall per grade and n; and\n"
        "DIR/confusion.png.\n\n"
        "example:\n"
        "  voxelstream dr evaluate --predictions predictions.csv --labels testLabels.csv --out eval/"
    ),
    add_arguments=_evaluate_arguments,
    run=_evaluate_run,
)


# -- phantoms ------------------------------------------------------------------------------
def _phantoms_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (created if missing)")
    p.add_argument("--n", type=int, default=20, metavar="N", help="number of photographs, two per patient (default 20)")
    p.add_argument("--width", type=int, default=512, metavar="PX", help="about this many pixels wide (default 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same files")


def _phantoms_run(args: argparse.Namespace) -> int:
    from .phantoms import write_phantoms

    if args.n < 1:
        raise VoxelstreamError(f"--n {args.n}: give at least one photograph")
    csv = write_phantoms(args.out, args.n, seed=args.seed, width=args.width)
    print(f"{args.n} phantom fundus photographs and {csv.name} written to {args.out}")
    return 0


PHANTOMS = CommandSpec(
    name="phantoms",
    help="draw synthetic fundus photographs graded 0-4 and their trainLabels.csv",
    description=(
        "Draw --n synthetic colour fundus photographs (<patient>_left.jpeg / _right.jpeg): a vignetted\n"
        "disc, vessel tree, optic disc and macula, and lesions whose number and kind grow with the\n"
        "grade (microaneurysms, haemorrhages, hard exudates, cotton-wool spots, new vessels), varied in\n"
        "size, brightness and crop; with trainLabels.csv (image,level) as Kaggle's.\n\n"
        "example:\n"
        "  voxelstream dr phantoms --out photos/ --n 40 && voxelstream ingest photos/ --store dr.zarr"
    ),
    add_arguments=_phantoms_arguments,
    run=_phantoms_run,
)

COMMANDS = (PHANTOMS, PREPROCESS, TRAIN, PREDICT, EVALUATE)
