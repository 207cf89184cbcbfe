"""``voxelstream nodules demo``: the LUNA16-style job end to end on generated phantoms.

Every step is the real command a user would type, run in this process and echoed:

    phantoms -> ingest -> preprocess -> cubes -> train -> infer -> detect -> evaluate
             -> mine -> train --init -> infer -> detect -> evaluate

Training and test scans are separate datasets (the FROC is measured on scans the model never
saw); training scans carry 3-6 nodules each (more nodules per minute), test scans 1-3. The
phantoms' distractors (calcified granulomas, blobs on vessels) are listed in
``annotations_excluded.csv``, and ``evaluate`` is given that table as in LUNA16: marks on
excluded findings are neither hits nor false positives. A blob of blood density centred on a
vessel is drawn like a vessel-attached nodule, so no detector can tell them apart. ``cubes``
and ``mine`` get the training scans' table too, so that mining does not teach the model to
suppress what the evaluation ignores (it did: vessel-attached nodules lost their scores and
the FP/scan at fixed sensitivity rose). The table also shows the CPM with every mark on a
distractor counted as a false positive (CPM*).

Preprocessing writes the lungs' mask grown by 10 mm; negatives, mining and detections stay
inside it. To stay within minutes on two CPU cores the demo works at 2 mm isotropic with 32
mm cubes (the CLI defaults are 1 mm and 48 mm); the test maps are shift-and-stitched to a
2 mm grid (``--stitch 2``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from voxelstream.errors import VoxelstreamError
from voxelstream.specs import CommandSpec

__all__ = ["DEMO", "run_demo", "DemoConfig"]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo generates and how it trains (small enough for 2 CPU cores).

    The choices below were measured one by one (benchmarks/RESULTS.md, "Nodule demo
    accuracy"): the shift-and-stitched grid (``stitch``), near-miss negatives, flips about
    the centre voxel and more nodules per training scan each moved the CPM most.
    """

    train_scans: int = 32
    train_nodules: tuple[int, int] = (3, 6)  # per training scan (test scans: 1-3, as in LUNA16)
    test_scans: int = 8
    shape: tuple[int, int, int] = (80, 224, 224)
    spacing_mm: float = 2.0
    cube_mm: float = 32.0
    negatives: int = 12  # random, inside the lungs grown by lung_margin_mm
    near_misses: int = 4  # per nodule: centred 4-12 mm outside it
    structure_negatives: int = 0  # per volume: on vessels and walls inside the lungs
    augment: int = 3
    flips: bool = True  # every batch in random orientations
    label_smoothing: float = 0.0
    epochs: int = 25
    lr: float = 3e-3
    fine_tune_epochs: int = 12
    fine_tune_lr: float = 1e-3  # with a cosine decay: the fine-tune must not forget round 0
    per_volume: int = 8
    mine_validation: bool = True  # so the fine-tune's early stopping sees hard negatives
    mine_stitch: int = 1  # mining needs the false positives, not a 2 mm grid: 8x cheaper
    threshold: float = 0.1
    stitch: int = 2  # test maps on a 2 mm grid (the network's stride is 4 voxels = 8 mm)
    lung_margin_mm: float | None = 10.0  # None: no lung mask
    luna16_exclusions: bool = True  # annotations_excluded.csv to cubes, mine and evaluate (LUNA16)
    seed: int = 0
    scheduler: str = "threads"


def _cli(args: list[str]) -> None:
    from voxelstream.cli.main import main

    print(f"\n$ voxelstream {shlex.join(args)}", flush=True)
    t0 = time.perf_counter()
    code = main(args)
    print(f"({args[0] if args[0] != 'nodules' else args[1]}: {time.perf_counter() - t0:.1f} s)", flush=True)
    if code:
        raise VoxelstreamError(f"demo: 'voxelstream {' '.join(args[:2])}' failed (exit status {code}); see the messages above")


def _fps_at_sensitivity(froc: dict, target: float) -> float:
    """FPs/scan where the FROC curve first reaches ``target`` sensitivity (inf if never)."""
    import numpy as np  # here: every CLI start imports this module

    fps, sens = np.asarray(froc["curve_fps"]), np.asarray(froc["curve_sensitivity"])
    reached = np.flatnonzero(sens >= target)
    return float(fps[reached[0]]) if len(reached) else float("inf")


def _evaluate(cfg: DemoConfig, out: Path, test: Path, round_no: int, mask: list[str]) -> dict:
    from .annotations import read_annotations
    from .detection import read_detections
    from .froc import evaluate_froc, read_series_list

    dets = out / f"detections_round{round_no}.csv"
    _cli(["nodules", "detect", "--store", str(out / "test.zarr"), "--out", str(dets), "--threshold", str(cfg.threshold),
          *mask])
    excluded = ["--excluded", str(test / "annotations_excluded.csv")] if cfg.luna16_exclusions else []
    _cli(["nodules", "evaluate", "--detections", str(dets), "--annotations", str(test / "annotations.csv"),
          *excluded, "--series", str(test / "seriesuids.csv"), "--out", str(out / f"eval_round{round_no}")])
    args = (read_detections(dets), read_annotations(test / "annotations.csv"))
    series = read_series_list(test / "seriesuids.csv")
    result = evaluate_froc(*args, read_annotations(test / "annotations_excluded.csv") if excluded else (),
                           series=series)
    # every mark on a distractor counted as a false positive: the stricter reading
    strict = evaluate_froc(*args, series=series)
    return {**result.to_json(), "curve_fps": result.curve_fps.tolist(),
            "curve_sensitivity": result.curve_sensitivity.tolist(),
            "false_positives": result.n_false_positives, "cpm_distractors_as_fp": strict.cpm}


def run_demo(out: Path, cfg: DemoConfig = DemoConfig()) -> list[dict]:
    """Run the whole job into ``out``; returns one summary dict per round."""
    from voxelstream_ct.outputs import LUNG_MASK_OUTPUT
    from voxelstream_ct.phantom import generate_dataset

    from .demo_plots import plot_frocs, plot_overlay

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train_dir, test_dir = out / "scans-train", out / "scans-test"
    print(f"generating {cfg.train_scans} training and {cfg.test_scans} test phantom CT series (DICOM) in {out}")
    generate_dataset(train_dir, cfg.train_scans, seed=cfg.seed, shape=cfg.shape, nodules=cfg.train_nodules)
    generate_dataset(test_dir, cfg.test_scans, seed=cfg.seed + 1000, shape=cfg.shape)
    sp = [str(cfg.spacing_mm)] * 3
    sched = ["--scheduler", cfg.scheduler]
    masked = cfg.lung_margin_mm is not None
    lung = ["--lung-mask", "--lung-margin", str(cfg.lung_margin_mm)] if masked else []
    mask = ["--mask", LUNG_MASK_OUTPUT] if masked else []
    excluded = ["--excluded", str(train_dir / "annotations_excluded.csv")] if cfg.luna16_exclusions else []
    for part, scans in (("train", train_dir), ("test", test_dir)):
        store = str(out / f"{part}.zarr")
        _cli(["ingest", str(scans), "--store", store, *sched])
        _cli(["ct", "preprocess", "--store", store, "--spacing", *sp, "--preset", "lung", *lung, *sched])
    train_store, test_store = str(out / "train.zarr"), str(out / "test.zarr")
    cubes = str(out / "cubes.zarr")
    _cli(["nodules", "cubes", "--store", train_store, "--annotations", str(train_dir / "annotations.csv"), "--out", cubes,
          "--cube-mm", str(cfg.cube_mm), "--negatives-per-volume", str(cfg.negatives), "--augment", str(cfg.augment),
          "--near-misses", str(cfg.near_misses), "--structure-negatives", str(cfg.structure_negatives),
          "--seed", str(cfg.seed), *mask, *excluded, *sched])
    common = ["--cubes", cubes, "--batch-size", "32", "--val-fraction", "0.25", "--seed", str(cfg.seed),
              *(["--flips"] if cfg.flips else []), "--label-smoothing", str(cfg.label_smoothing)]
    models = [out / "model-round0", out / "model-round1"]
    _cli(["nodules", "train", *common, "--lr", str(cfg.lr), "--patience", "6", "--epochs", str(cfg.epochs),
          "--out", str(models[0])])
    rounds = []
    for r, model in enumerate(models):
        if r == 1:
            _cli(["nodules", "mine", "--store", train_store, "--model", str(models[0]), "--annotations",
                  str(train_dir / "annotations.csv"), "--cubes", cubes, "--per-volume", str(cfg.per_volume),
                  "--stitch", str(cfg.mine_stitch), *mask, *excluded,
                  *(["--validation"] if cfg.mine_validation else []), *sched])
            _cli(["nodules", "train", *common, "--lr", str(cfg.fine_tune_lr), "--cosine",
                  "--patience", str(cfg.fine_tune_epochs), "--epochs", str(cfg.fine_tune_epochs),
                  "--init", str(models[0]), "--out", str(model)])
        _cli(["nodules", "infer", "--store", test_store, "--model", str(model), "--stitch", str(cfg.stitch), *sched])
        froc = _evaluate(cfg, out, test_dir, r, mask)
        plot_overlay(test_store, test_dir / "annotations.csv", out / f"probability_overlay_round{r}.png", f"round {r}")
        rounds.append(froc)
    plot_frocs(rounds, out / "froc_rounds.png")
    summary = _summary(rounds, cubes)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_table(summary, time.perf_counter() - t0, out, models)
    return summary


def _summary(rounds: list[dict], cubes: str) -> list[dict]:
    from .cubeset import CubeSet

    kinds: dict[str, int] = {}
    for rec in CubeSet.open(cubes).records():
        kinds[rec.kind] = kinds.get(rec.kind, 0) + 1
    # the fixed sensitivity of the comparison: the highest one every round reaches
    target = float(min(max(f["curve_sensitivity"], default=0.0) for f in rounds))
    return [
        {"round": r, "cpm": f["cpm"], "fps_per_scan": f["fps_per_scan"], "sensitivity": f["sensitivity"],
         "n_scans": f["n_scans"], "n_nodules": f["n_nodules"],
         "fps_per_scan_at_threshold": f["false_positives"] / f["n_scans"],
         "fixed_sensitivity": target,
         "fps_per_scan_at_fixed_sensitivity": _fps_at_sensitivity(f, target),
         "hard_negatives_in_cubes": kinds.get("hard_negative", 0) if r else 0,
         "cpm_distractors_as_fp": f["cpm_distractors_as_fp"]}
        for r, f in enumerate(rounds)
    ]


def _print_table(summary: list[dict], seconds: float, out: Path, models: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"voxelstream nodules demo: LUNA16 FROC on {summary[0]['n_scans']} unseen phantom scans "
                        f"({summary[0]['n_nodules']} nodules)")
    table.add_column("round", no_wrap=True)
    table.add_column("CPM", justify="right")
    table.add_column("CPM*", justify="right")
    for fp in summary[0]["fps_per_scan"]:
        table.add_column(f"@{fp:g}", justify="right")
    table.add_column("FP/scan", justify="right")
    table.add_column(f"FP/scan @sens {summary[0]['fixed_sensitivity']:.2f}", justify="right")
    for s in summary:
        label = "0 (random negatives)" if s["round"] == 0 else f"{s['round']} (+{s['hard_negatives_in_cubes']} hard neg.)"
        table.add_row(label, f"{s['cpm']:.3f}", f"{s['cpm_distractors_as_fp']:.3f}", *(f"{v:.2f}" for v in s["sensitivity"]),
                      f"{s['fps_per_scan_at_threshold']:.2f}", f"{s['fps_per_scan_at_fixed_sensitivity']:.2f}")
    console = Console(width=max(Console().width, 130))  # the table is wide; logs have no terminal
    console.print()
    console.print(table)
    console.print("CPM: LUNA16 protocol, marks on the phantoms' distractors (annotations_excluded.csv: calcified "
                  "granulomas, vessel blobs) are ignored; CPM*: the same marks counted as false positives. "
                  "Columns @1/8..@8: sensitivity at that many false positives per scan; FP/scan: all "
                  "detections above the threshold that hit no nodule and no distractor, per scan")
    console.print(f"done in {seconds / 60:.1f} min. Pictures: {out / 'froc_rounds.png'}, "
                  f"{out / 'probability_overlay_round0.png'}, {out / 'probability_overlay_round1.png'}, "
                  + ", ".join(str(m / 'training_curve.png') for m in models))


def _arguments(p: argparse.ArgumentParser) -> None:
    d = DemoConfig()
    p.add_argument("--out", default="demo-output", help="folder for everything the demo writes (default demo-output)")
    p.add_argument("--train-scans", type=int, default=d.train_scans, help=f"training phantoms (default {d.train_scans})")
    p.add_argument("--test-scans", type=int, default=d.test_scans, help=f"test phantoms (default {d.test_scans})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the phantoms, cubes and training (default 0)")
    p.add_argument("--scheduler", default=d.scheduler, help="dask scheduler for every step (default threads)")


def _run(args: argparse.Namespace) -> int:
    cfg = DemoConfig(train_scans=args.train_scans, test_scans=args.test_scans, seed=args.seed, scheduler=args.scheduler)
    run_demo(Path(args.out), cfg)
    return 0


DEMO = CommandSpec(
    name="demo",
    help="run the lung-nodule job end to end on generated phantoms (what 'make demo' runs)",
    description=__doc__ or "",
    add_arguments=_arguments,
    run=_run,
)
