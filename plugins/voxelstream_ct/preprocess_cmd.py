"""``voxelstream ct preprocess``: resample every stored CT volume and window its HU."""

from __future__ import annotations

import argparse

from voxelstream import CommandSpec, add_common_options, lazy_callable
from voxelstream.constants import DEFAULT_CHUNK

from .outputs import ISO_OUTPUT, LUNG_MASK_OUTPUT
from .presets import DEFAULT_PRESET, DTYPES, PRESETS

# dask and zarr are imported when the command runs, not when the CLI lists it
StageCall = lazy_callable("voxelstream.pipeline:StageCall")
run_pipeline = lazy_callable("voxelstream.pipeline:run_pipeline")
use_scheduler = lazy_callable("voxelstream.scheduler:use_scheduler")
open_store = lazy_callable("voxelstream.store:open_store")

__all__ = ["PREPROCESS", "preprocess_stages"]


def preprocess_stages(
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    order: int = 1,
    window: tuple[float, float] | None = None,
    preset: str | None = DEFAULT_PRESET,
    dtype: str = "float32",
    chunks: int = DEFAULT_CHUNK,
) -> list[StageCall]:
    """The stage chain ``preprocess`` runs: ``resample`` (output chunks of ``chunks``, the
    store's chunk, so writes stay chunk-aligned) then ``hu_window`` (skipped when neither
    ``window`` nor ``preset`` is given)."""
    resample = {"spacing": [float(s) for s in spacing], "order": int(order), "chunks": int(chunks)}
    stages = [StageCall("resample", resample)]
    if window is not None:
        stages.append(StageCall("hu_window", {"lo": float(window[0]), "hi": float(window[1]), "dtype": dtype}))
    elif preset is not None:
        stages.append(StageCall("hu_window", {"preset": preset, "dtype": dtype}))
    return stages


def _add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_options(p, store_help="the store written by 'voxelstream ingest'")
    p.add_argument("--spacing", nargs=3, type=float, default=(1.0, 1.0, 1.0), metavar=("Z", "Y", "X"),
                   help="output voxel size in mm (default 1 1 1)")
    p.add_argument("--order", type=int, choices=(0, 1, 3), default=1,
                   help="interpolation: 0 nearest (label masks), 1 linear (default), 3 cubic B-spline")
    win = p.add_mutually_exclusive_group()
    win.add_argument("--window", nargs=2, type=float, metavar=("LO", "HI"), help="HU window, e.g. -1000 400")
    win.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help=f"named HU window (default {DEFAULT_PRESET}: "
                     + ", ".join(f"{k} [{lo:g}, {hi:g}]" for k, (lo, hi) in PRESETS.items()) + ")")
    win.add_argument("--no-window", action="store_true", help="only resample; keep HU")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="windowed output type (default float32; float16 errs <= 2.4e-4, uint8 stores 0..255)")
    p.add_argument("--input", default="image", help="which stored output to read (default image)")
    p.add_argument("--name", default=ISO_OUTPUT, help=f"output name: writes volumes/<id>/NAME (default {ISO_OUTPUT})")
    p.add_argument("--lung-mask", action="store_true",
                   help=f"also write the lungs' mask (stage lung_mask on NAME, uint8) as volumes/<id>/{LUNG_MASK_OUTPUT}")
    p.add_argument("--lung-margin", type=float, default=0.0, metavar="MM",
                   help="with --lung-mask: grow the mask by MM (e.g. the largest nodule radius sought; default 0)")
    p.add_argument("--chunks", type=int, default=DEFAULT_CHUNK, metavar="N",
                   help=f"output chunk edge in voxels (default {DEFAULT_CHUNK})")
    p.add_argument("--force", action="store_true", help="recompute volumes already done with the same parameters")


def _run(args: argparse.Namespace) -> int:
    preset = None if (args.no_window or args.window) else (args.preset or DEFAULT_PRESET)
    window = tuple(args.window) if args.window else None
    stages = preprocess_stages(tuple(args.spacing), args.order, window, preset, args.dtype, args.chunks)
    store = open_store(args.store)
    accepts = {"modality": "CT", "spatial_ndim": 3, "units": "mm"}
    with use_scheduler(args.scheduler):
        report = run_pipeline(store, stages, input=args.input, output=args.name, chunks=args.chunks,
                              force=args.force, command="preprocess", accepts=accepts)
        code = report.exit_code
        if args.lung_mask:  # from NAME: same grid and chunks; lung_mask reads a windowed NAME too
            mask = [StageCall("lung_mask", {"margin_mm": float(args.lung_margin)})]
            report = run_pipeline(store, mask, input=args.name, output=LUNG_MASK_OUTPUT, chunks=args.chunks,
                                  force=args.force, command="preprocess", accepts=accepts)
            code = max(code, report.exit_code)
    return code


PREPROCESS = CommandSpec(
    name="preprocess",
    help="resample every stored volume (default 1 mm) and window its HU (default lung) into volumes/<id>/iso",
    description=(
        "For every volume in --store with a complete 'image', resample it to --spacing (same origin and\n"
        "direction; linear interpolation by default, edge values extended past the last slice) and clip\n"
        "its HU to a window scaled to [0, 1] (default: lung [-1000, 400]), streaming chunk by chunk:\n"
        "memory depends on --chunks and the scheduler's workers, not on the volume's size.\n"
        "Writes volumes/<id>/<--name> (OME-Zarr with scale/translation; the full affine and the stage\n"
        "parameters under the 'voxelstream' attributes), prints '[n/N] <id>\\t<shape>' per volume and a\n"
        "manifest under runs/. Volumes already done with the same parameters are skipped (--force\n"
        "redoes them); a volume that fails is reported on stderr and the others finish (exit status 1).\n"
        "The same work as a pipeline file: examples/preprocess.toml with 'voxelstream run'.\n"
        f"--lung-mask also writes volumes/<id>/{LUNG_MASK_OUTPUT}: 1 inside the lungs (stage lung_mask).\n\n"
        "example:\n"
        "  voxelstream ct preprocess --store data.zarr --spacing 1 1 1 --preset lung"
    ),
    add_arguments=_add_arguments,
    run=_run,
)
