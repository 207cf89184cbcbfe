"""The ``detect`` and ``evaluate`` commands (``DETECT``, ``EVALUATE``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voxelstream import CommandSpec, add_common_options, lazy_callable
from voxelstream.errors import VoxelstreamError

from .annotations import read_annotations
from .options import add_mask_option
from .outputs import ISO_OUTPUT, PROB_OUTPUT

# dask, zarr, JAX are imported when a command runs, not when the CLI lists it
open_store = lazy_callable("voxelstream.store:open_store")
task_progress = lazy_callable("voxelstream.progress:task_progress")
use_scheduler = lazy_callable("voxelstream.scheduler:use_scheduler")
Detection = lazy_callable("voxelstream_nodules.detection:Detection")
detect_volume = lazy_callable("voxelstream_nodules.detection:detect_volume")
read_detections = lazy_callable("voxelstream_nodules.detection:read_detections")
write_detections = lazy_callable("voxelstream_nodules.detection:write_detections")
evaluate_froc = lazy_callable("voxelstream_nodules.froc:evaluate_froc")
plot_froc = lazy_callable("voxelstream_nodules.froc:plot_froc")
read_series_list = lazy_callable("voxelstream_nodules.froc:read_series_list")
write_froc_json = lazy_callable("voxelstream_nodules.froc:write_froc_json")
mask_at_world = lazy_callable("voxelstream_nodules.masking:mask_at_world")

__all__ = ["DETECT", "EVALUATE", "PROB_OUTPUT"]


# -- detect --------------------------------------------------------------------------------------


def _add_detect_arguments(p: argparse.ArgumentParser) -> None:
    add_common_options(p, store_help=f"store whose volumes/<id>/{PROB_OUTPUT} maps to read (written by 'voxelstream nodules infer')")
    p.add_argument("--out", required=True, metavar="CSV", help="detections to write (LUNA16 submission format)")
    p.add_argument("--threshold", type=float, default=0.5, metavar="T",
                   help="keep maxima with probability >= T (default: 0.5; lower it for a full FROC curve)")
    p.add_argument("--min-distance-mm", type=float, default=10.0, metavar="D",
                   help="a detection is the largest value within D world mm, and no two detections "
                        "are closer than D (default: 10)")
    add_mask_option(p, "keep detections", "keep all")
    p.add_argument("--no-refine", action="store_true",
                   help="report each maximum at its grid point instead of at the centroid of its peak "
                        "(the map's grid is coarse: stride x spacing)")


def _series_uid(volume_id: str, meta: dict) -> str:
    # LUNA16 names scans by their DICOM SeriesInstanceUID; readers record it when they know it
    return str(meta.get("series_uid") or volume_id)


def _run_detect(args: argparse.Namespace) -> int:
    from voxelstream.runner import stored_jobs

    store = open_store(args.store)
    ids = store.volume_ids(name=PROB_OUTPUT)
    # every CT volume 'infer' acts on (a complete 'iso') needs its map: one missing (an
    # interrupted or failed infer) is an error naming it, never a silently shorter list
    ct = {"modality": "CT", "spatial_ndim": 3, "units": "mm"}
    expected = {j.volume_id for j in stored_jobs(store, ISO_OUTPUT, str, accepts=ct) if j.error is None and j.note is None}
    missing = sorted(expected - set(ids))
    for vid in missing:
        print(f"error: {vid}: no complete '{PROB_OUTPUT}' map (an interrupted or failed infer?); "
              "run 'voxelstream nodules infer'", file=sys.stderr)
    if not ids:
        raise VoxelstreamError(
            f"{store.path}: no complete '{PROB_OUTPUT}' output in the store; run 'voxelstream nodules infer' first"
        )
    found: list[Detection] = []
    with use_scheduler(args.scheduler):
        for n, vid in enumerate(ids, start=1):
            vol = store.open(vid, PROB_OUTPUT)
            with task_progress(f"detect {vid}"):
                rows = detect_volume(vol, args.threshold, args.min_distance_mm, refine=not args.no_refine)
                if args.mask and rows:
                    inside = mask_at_world(store, vid, args.mask, [r[:3] for r in rows])
                    rows = [r for r, ok in zip(rows, inside) if ok]
            uid = _series_uid(vid, vol.meta)
            found.extend(Detection(uid, (x, y, z), p) for x, y, z, p in rows)
            print(f"[{n}/{len(ids)}] {vid}: {len(rows)} detection(s)")
    count = write_detections(args.out, found)
    print(f"wrote {count} detection(s) from {len(ids)} scan(s) to {args.out}")
    if missing:
        print(f"error: {len(missing)} scan(s) without a complete '{PROB_OUTPUT}' map were left out; "
              "run 'voxelstream nodules infer' again, then detect", file=sys.stderr)
    return 1 if missing else 0


DETECT = CommandSpec(
    name="detect",
    help="turn probability maps into LUNA16 detections (local maxima in world mm)",
    description=(
        f"Find the local maxima of every probability map (volumes/<id>/{PROB_OUTPUT} in the store)\n"
        "and write them as LUNA16 submission rows: seriesuid,coordX,coordY,coordZ,probability\n"
        "(world LPS mm at voxel centres), sorted by series then probability (descending).\n"
        "\n"
        "A voxel is a detection when its probability is >= --threshold and no voxel within\n"
        "--min-distance-mm (world mm, whatever the spacing and orientation) is higher. Maps are\n"
        "read chunk by chunk with a halo, so any size fits in memory.\n"
        "\n"
        "example:\n"
        "  voxelstream nodules detect --store data.zarr --out detections.csv --threshold 0.1\n"
        "  voxelstream nodules evaluate --detections detections.csv --annotations annotations.csv --out eval/"
    ),
    add_arguments=_add_detect_arguments,
    run=_run_detect,
)


# -- evaluate ------------------------------------------------------------------------------------


def _add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from .froc import MAX_MARKS_PER_SCAN

    p.add_argument("--detections", required=True, metavar="CSV",
                   help="CAD marks: seriesuid,coordX,coordY,coordZ,probability (e.g. from 'voxelstream nodules detect')")
    p.add_argument("--annotations", required=True, metavar="CSV",
                   help="nodules to find: seriesuid,coordX,coordY,coordZ,diameter_mm (LUNA16 annotations.csv)")
    p.add_argument("--excluded", metavar="CSV",
                   help="findings to ignore (LUNA16 annotations_excluded.csv; diameter -1 counts as 10 mm): "
                        "marks on them are neither hits nor false positives")
    p.add_argument("--series", metavar="FILE",
                   help="the evaluated scans, one series uid per line (LUNA16 seriesuids.csv); default: "
                        "every series in the annotations or detections. Scans without detections still count.")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write froc.json and froc.png")
    p.add_argument("--max-marks-per-scan", type=int, default=MAX_MARKS_PER_SCAN, metavar="N",
                   help=f"keep at most N marks per scan, the most probable, as the challenge did "
                        f"(default: {MAX_MARKS_PER_SCAN}; 0: no cap)")


def _run_evaluate(args: argparse.Namespace) -> int:
    detections = read_detections(args.detections)
    annotations = read_annotations(args.annotations)
    excluded = read_annotations(args.excluded) if args.excluded else []
    series = read_series_list(args.series) if args.series else None
    result = evaluate_froc(detections, annotations, excluded, series,
                           max_marks_per_scan=args.max_marks_per_scan)
    out = Path(args.out)
    write_froc_json(result, out)
    plot_froc(result, out, label=Path(args.detections).stem)
    print(f"{result.n_scans} scans, {result.n_nodules} nodules, {result.n_marks} marks: "
          f"{result.n_nodules_hit} nodules hit, {result.n_false_positives} false positives, "
          f"{result.n_on_excluded} on excluded findings, {result.n_extra_on_nodules} extra on a nodule")
    if result.n_marks_capped:
        print(f"note: {result.n_marks_capped} mark(s) beyond {args.max_marks_per_scan} per scan were dropped")
    if result.n_marks_outside_series:
        print(f"note: {result.n_marks_outside_series} mark(s) on series outside the evaluated list were ignored",
              file=sys.stderr)
    print("FPs/scan  sensitivity")
    for fp, s in zip(result.fps_per_scan, result.sensitivity):
        print(f"{fp:>8g}  {s:.4f}")
    print(f"CPM       {result.cpm:.4f}")
    print(f"wrote {out / 'froc.json'} and {out / 'froc.png'}")
    return 0


EVALUATE = CommandSpec(
    name="evaluate",
    help="score detections with the LUNA16 FROC protocol (sensitivity at 1/8..8 FPs/scan, CPM)",
    description=(
        "Score CAD marks against annotated nodules as the LUNA16 challenge script does:\n"
        "  - a mark hits a nodule when its distance to the centre is below the nodule's radius;\n"
        "  - each nodule counts once (its best mark); other marks on it are ignored, not FPs;\n"
        "  - marks on excluded findings (--excluded) are ignored;\n"
        "  - every other mark is a false positive; FPs/scan divide by all evaluated scans;\n"
        "  - sensitivity is read off the FROC curve at 1/8, 1/4, 1/2, 1, 2, 4, 8 FPs/scan,\n"
        "    and the CPM is their mean.\n"
        "Writes DIR/froc.json and DIR/froc.png and prints the table.\n"
        "\n"
        "example (LUNA16):\n"
        "  voxelstream nodules evaluate --detections detections.csv --annotations annotations.csv \\\n"
        "      --excluded annotations_excluded.csv --series seriesuids.csv --out eval/"
    ),
    add_arguments=_add_evaluate_arguments,
    run=_run_evaluate,
)
