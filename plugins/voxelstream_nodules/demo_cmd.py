"""``voxelstream nodules demo``: the LUNA16-style job end to end on generated phantoms.

Every step is the real command a user would type, run in this process and echoed:

    phantoms -> ingest -> preprocess -> cubes -> train -> infer -> detect -> evaluate
             -> mine -> train --init -> infer -> detect -> evaluate

Training and test scans are separate datasets (the FROC is measured on scans the model never
saw). The phantoms' distractors (calcifications, vessel blobs) are listed in
``annotations_excluded.csv`` but the demo does not pass that table to ``evaluate`` or ``mine``:
they are exactly the nodule-like false positives hard-negative mining is meant to remove.
To stay within minutes on two CPU cores the demo works at 2 mm isotropic with 32 mm cubes
(the CLI defaults are 1 mm and 48 mm).
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
    """What the demo generates and how it trains (small enough for 2 CPU cores)."""

    train_scans: int = 16
    test_scans: int = 8
    shape: tuple[int, int, int] = (80, 224, 224)
    spacing_mm: float = 2.0
    cube_mm: float = 32.0
    negatives: int = 12
    augment: int = 3
    epochs: int = 25
    fine_tune_epochs: int = 12
    lr: float = 3e-3
    per_volume: int = 8
    threshold: float = 0.1
    seed: int = 0
    scheduler: str = "threads"


def _cli(args: list[str]) -> None:
    from voxelstream.cli.main import main

    print(f"\n$ voxelstream {shlex.join(args)}", flush=True)
    code = main(args)
    if code:
        raise VoxelstreamError(f"demo: 'voxelstream {' '.join(args[:2])}' failed (exit status {code}); see the messages above")


def _fps_at_sensitivity(froc: dict, target: float) -> float:
    """FPs/scan where the FROC curve first reaches ``target`` sensitivity (inf if never)."""
    import numpy as np  # here: every CLI start imports this module

    fps, sens = np.asarray(froc["curve_fps"]), np.asarray(froc["curve_sensitivity"])
    reached = np.flatnonzero(sens >= target)
    return float(fps[reached[0]]) if len(reached) else float("inf")


def _evaluate(cfg: DemoConfig, out: Path, test: Path, round_no: int) -> dict:
    from .annotations import read_annotations
    from .detection import read_detections
    from .froc import evaluate_froc, read_series_list

    dets = out / f"detections_round{round_no}.csv"
    _cli(["nodules", "detect", "--store", str(out / "test.zarr"), "--out", str(dets), "--threshold", str(cfg.threshold)])
    _cli(["nodules", "evaluate", "--detections", str(dets), "--annotations", str(test / "annotations.csv"),
          "--series", str(test / "seriesuids.csv"), "--out", str(out / f"eval_round{round_no}")])
    result = evaluate_froc(read_detections(dets), read_annotations(test / "annotations.csv"),
                           series=read_series_list(test / "seriesuids.csv"))
    return {**result.to_json(), "curve_fps": result.curve_fps.tolist(),
            "curve_sensitivity": result.curve_sensitivity.tolist(),
            "false_positives": result.n_false_positives}


def run_demo(out: Path, cfg: DemoConfig = DemoConfig()) -> list[dict]:
    """Run the whole job into ``out``; returns one summary dict per round."""
    from voxelstream_ct.phantom import generate_dataset

    from .demo_plots import plot_frocs, plot_overlay

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train_dir, test_dir = out / "scans-train", out / "scans-test"
    print(f"generating {cfg.train_scans} training and {cfg.test_scans} test phantom CT series (DICOM) in {out}")
    generate_dataset(train_dir, cfg.train_scans, seed=cfg.seed, shape=cfg.shape)
    generate_dataset(test_dir, cfg.test_scans, seed=cfg.seed + 1000, shape=cfg.shape)
    sp = [str(cfg.spacing_mm)] * 3
    sched = ["--scheduler", cfg.scheduler]
    for part, scans in (("train", train_dir), ("test", test_dir)):
        store = str(out / f"{part}.zarr")
        _cli(["ingest", str(scans), "--store", store, *sched])
        _cli(["ct", "preprocess", "--store", store, "--spacing", *sp, "--preset", "lung", *sched])
    train_store, test_store = str(out / "train.zarr"), str(out / "test.zarr")
    cubes = str(out / "cubes.zarr")
    _cli(["nodules", "cubes", "--store", train_store, "--annotations", str(train_dir / "annotations.csv"), "--out", cubes,
          "--cube-mm", str(cfg.cube_mm), "--negatives-per-volume", str(cfg.negatives), "--augment", str(cfg.augment),
          "--seed", str(cfg.seed), *sched])
    common = ["--cubes", cubes, "--batch-size", "32", "--lr", str(cfg.lr), "--val-fraction", "0.25",
              "--patience", "6", "--seed", str(cfg.seed)]
    models = [out / "model-round0", out / "model-round1"]
    _cli(["nodules", "train", *common, "--epochs", str(cfg.epochs), "--out", str(models[0])])
    rounds = []
    for r, model in enumerate(models):
        if r == 1:
            _cli(["nodules", "mine", "--store", train_store, "--model", str(models[0]), "--annotations",
                  str(train_dir / "annotations.csv"), "--cubes", cubes, "--per-volume", str(cfg.per_volume), *sched])
            _cli(["nodules", "train", *common, "--epochs", str(cfg.fine_tune_epochs), "--init", str(models[0]), "--out", str(model)])
        _cli(["nodules", "infer", "--store", test_store, "--model", str(model), *sched])
        froc = _evaluate(cfg, out, test_dir, r)
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
         "hard_negatives_in_cubes": kinds.get("hard_negative", 0) if r else 0}
        for r, f in enumerate(rounds)
    ]


def _print_table(summary: list[dict], seconds: float, out: Path, models: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"voxelstream nodules demo: LUNA16 FROC on {summary[0]['n_scans']} unseen phantom scans "
                        f"({summary[0]['n_nodules']} nodules)")
    table.add_column("round", no_wrap=True)
    table.add_column("CPM", justify="right")
    for fp in summary[0]["fps_per_scan"]:
        table.add_column(f"@{fp:g}", justify="right")
    table.add_column("FP/scan", justify="right")
    table.add_column(f"FP/scan @sens {summary[0]['fixed_sensitivity']:.2f}", justify="right")
    for s in summary:
        label = "0 (random negatives)" if s["round"] == 0 else f"{s['round']} (+{s['hard_negatives_in_cubes']} hard neg.)"
        table.add_row(label, f"{s['cpm']:.3f}", *(f"{v:.2f}" for v in s["sensitivity"]),
                      f"{s['fps_per_scan_at_threshold']:.2f}", f"{s['fps_per_scan_at_fixed_sensitivity']:.2f}")
    console = Console(width=max(Console().width, 130))  # the table is wide; logs have no terminal
    console.print()
    console.print(table)
    console.print("columns @1/8..@8: sensitivity at that many false positives per scan; FP/scan: all "
                  "detections above the threshold that hit no nodule, per scan")
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
