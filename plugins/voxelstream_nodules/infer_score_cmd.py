"""The ``infer`` and ``score`` commands (``INFER``, ``SCORE``)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from voxelstream import CommandSpec, add_common_options, lazy_callable
from voxelstream.errors import VoxelstreamError
from voxelstream.tables import finite_number, read_table

from .outputs import ISO_OUTPUT, PROB_OUTPUT

# dask, zarr, JAX are imported when a command runs, not when the CLI lists it
open_store = lazy_callable("voxelstream.store:open_store")
use_scheduler = lazy_callable("voxelstream.scheduler:use_scheduler")
infer_store = lazy_callable("voxelstream_nodules.inference:infer_store")

__all__ = ["INFER", "SCORE", "read_points_table", "add_stitch_option", "DEFAULT_STITCH"]

POINT_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ")
DEFAULT_STITCH = 1  # a 2-voxel grid for the 2-block network: see benchmarks/RESULTS.md, "Nodule demo accuracy"


# -- infer ---------------------------------------------------------------------------------------


def _add_infer_arguments(p: argparse.ArgumentParser) -> None:
    from .inference import DEFAULT_TILE

    add_common_options(p, store_help="the store holding the preprocessed volumes")
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="a model directory written by 'voxelstream nodules train'")
    p.add_argument("--name", default=ISO_OUTPUT, help=f"which stored output to read (default: {ISO_OUTPUT})")
    p.add_argument("--out-name", default=PROB_OUTPUT, help=f"the output to write (default: {PROB_OUTPUT})")
    p.add_argument("--tile", type=int, default=None, metavar="T",
                   help=f"output grid points per tile edge, also the Zarr chunk edge (default {DEFAULT_TILE} "
                        "times 2^STITCH); larger tiles waste less work on halos but need more memory")
    add_stitch_option(p)
    p.add_argument("--force", action="store_true", help="recompute maps that are already complete")
    p.add_argument("--gpu-resource", action="store_true",
                   help="annotate the inference tasks with the dask.distributed resource GPU=1, so that with "
                        "--scheduler tcp://... only workers started with '--resources GPU=1' run them")


def add_stitch_option(p: argparse.ArgumentParser) -> None:
    """``--stitch L`` (infer and mine): shift-and-stitch levels of the dense evaluation."""
    p.add_argument("--stitch", type=int, default=DEFAULT_STITCH, metavar="L",
                   help="shift-and-stitch the last L poolings of the network: a probability every "
                        "stride/2^L voxels instead of every stride (the network's stride, 4 for 2 blocks), "
                        "so small nodules fall near a grid point; costs more per level "
                        f"(default {DEFAULT_STITCH}; 0 = the plain stride)")


def _run_infer(args: argparse.Namespace) -> int:
    if args.tile is not None and args.tile < 1:
        raise VoxelstreamError(f"--tile {args.tile}: must be at least 1")
    store = open_store(args.store)
    with use_scheduler(args.scheduler):
        report = infer_store(store, args.model, name=args.name, out_name=args.out_name, tile=args.tile,
                             force=args.force, gpu_resource=args.gpu_resource, stitch=args.stitch)
    done = sum(o.status == "done" for o in report.outcomes)
    skipped = sum(o.status == "skipped" for o in report.outcomes)
    print(f"{done} map(s) written, {skipped} already done, {len(report.failed)} failed")
    return report.exit_code


INFER = CommandSpec(
    name="infer",
    help="dense sliding-window inference: a probability map per volume, disk to disk",
    description=(
        "Evaluate the classifier of --model over every volume of --store with a complete --name\n"
        "output (default iso) as a fully convolutional network: one window centred every\n"
        "stride/2^STITCH voxels (the network's output stride, made finer by shift-and-stitch:\n"
        "--stitch L evaluates the last L poolings at all their phases), covering the whole scan, the window\n"
        "minimum past its border, exactly the cubes 'voxelstream nodules cubes' cuts. Tiles of\n"
        "--tile^3 output points are read from Zarr with their receptive-field halo, evaluated\n"
        "by one jit-compiled function (on the GPU when jax has one) and written chunk by chunk\n"
        f"to volumes/<id>/{PROB_OUTPUT} (float32 sigmoid probabilities; an OME-Zarr image whose\n"
        "spacing is stride x the input spacing and whose origin is the first window centre).\n"
        "Memory stays bounded for any scan size. Maps already complete with the same model\n"
        "(directory and weights hash) and tile size are skipped; a failing volume is reported\n"
        "and the others finish.\n"
        "\n"
        "GPU workers on dask.distributed: start them with 'dask worker ... --resources GPU=1'\n"
        "and pass --gpu-resource --scheduler tcp://HOST:PORT.\n"
        "\n"
        "example:\n"
        "  voxelstream nodules infer --store data.zarr --model model/\n"
        "  voxelstream nodules detect --store data.zarr --out detections.csv --threshold 0.1"
    ),
    add_arguments=_add_infer_arguments,
    run=_run_infer,
)


# -- score ---------------------------------------------------------------------------------------


def read_points_table(path: str | Path) -> tuple[list[str], list[list[str]], list[tuple[str, tuple[float, float, float]]]]:
    """``(header, rows, points)`` of a CSV with at least ``seriesuid,coordX,coordY,coordZ``
    (CRLF or LF): every column kept as text in ``rows``, and the parsed world points."""
    table = read_table(path, "points", POINT_COLUMNS)
    rows, points = [], []
    for line_no, values in table.rows():
        uid, *xyz = table.pick(values)
        x, y, z = (finite_number(v, table.where(line_no), c) for v, c in zip(xyz, POINT_COLUMNS[1:]))
        points.append((uid, (x, y, z)))
        rows.append(values[: len(table.header)])
    return list(table.header), rows, points


def _add_score_arguments(p: argparse.ArgumentParser) -> None:
    add_common_options(p, store_help="the store holding the preprocessed volumes")
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="a model directory written by 'voxelstream nodules train'")
    p.add_argument("--points", required=True, metavar="CSV",
                   help="world points: seriesuid,coordX,coordY,coordZ (LPS mm; other columns are kept)")
    p.add_argument("--out", required=True, metavar="CSV", help="the points again with a probability column")
    p.add_argument("--name", default=ISO_OUTPUT, help=f"which stored output to cut cubes from (default: {ISO_OUTPUT})")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="cubes per evaluation (default 16)")


def _run_score(args: argparse.Namespace) -> int:
    from .scoring import Point, score_points

    header, rows, points = read_points_table(args.points)
    store = open_store(args.store)
    with use_scheduler(args.scheduler):
        probs = score_points(store, args.model, [Point(u, w) for u, w in points], name=args.name,
                             batch_size=args.batch_size)
    col = header.index("probability") if "probability" in header else None
    out_header = header if col is not None else header + ["probability"]
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(out_header)
        for row, p in zip(rows, probs):
            row = list(row)
            if col is not None:
                row[col] = f"{p:.6g}"
            else:
                row.append(f"{p:.6g}")
            w.writerow(row)
    print(f"scored {len(rows)} point(s) -> {args.out}")
    return 0


SCORE = CommandSpec(
    name="score",
    help="evaluate the classifier cube by cube at world points (adds a probability column)",
    description=(
        "For every row of --points (seriesuid,coordX,coordY,coordZ in world LPS mm; other\n"
        "columns kept; CRLF or LF), cut the cube 'voxelstream nodules cubes' would cut there (centre\n"
        "voxel rint(world_to_index(world)) of the --name output, edge = the model's receptive\n"
        "field, window minimum past the border), evaluate the classifier of --model on it and\n"
        "write the rows to --out with a probability column (replaced if present). At the world\n"
        "positions of a probability map's grid points this equals 'voxelstream nodules infer'.\n"
        "\n"
        "example:\n"
        "  voxelstream nodules score --store data.zarr --model model/ --points candidates.csv --out scored.csv"
    ),
    add_arguments=_add_score_arguments,
    run=_run_score,
)
