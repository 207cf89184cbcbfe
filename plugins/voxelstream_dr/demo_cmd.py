"""``voxelstream dr demo``: the diabetic-retinopathy job end to end on phantom photographs.

Every step is the command a user would type, echoed and run in this process:

    dr phantoms (train) -> dr phantoms (test) -> ingest -> ingest -> dr train (preprocesses)
    -> dr predict --tta (preprocesses) -> dr evaluate

The test photographs are a separate dataset (other patients, another seed): the kappa is
measured on photographs the model never saw. To stay within minutes on two CPU cores the demo
works at fundus radius 64 (128 x 128 inputs; the CLI default is 256).
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

__all__ = ["DEMO", "DemoConfig", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo draws and how it trains (small enough for 2 CPU cores)."""

    train_photos: int = 480
    test_photos: int = 160
    width: int = 480
    radius: int = 64
    epochs: int = 16
    patience: int = 6
    tta: int = 4
    seed: int = 0
    scheduler: str = "threads"


def _run(spec: CommandSpec, prefix: str, argv: list[str]) -> None:
    """Parse ``argv`` with ``spec``'s own arguments and run it (as the CLI would)."""
    print(f"\n$ voxelstream {prefix}{shlex.join(argv)}", flush=True)
    parser = argparse.ArgumentParser(prog=f"voxelstream {prefix}{spec.name}")
    spec.add_arguments(parser)
    t0 = time.perf_counter()
    code = spec.run(parser.parse_args(argv[1:]))
    if code:
        raise VoxelstreamError(f"demo: 'voxelstream {prefix}{argv[0]}' failed (exit status {code}); see above")
    print(f"({time.perf_counter() - t0:.1f} s)", flush=True)


def run_demo(out: str | Path, cfg: DemoConfig = DemoConfig()) -> dict:
    """Run the demo into ``out``; returns the test metrics (``evaluate``'s metrics.json)."""
    from voxelstream.cli.ingest_cmd import COMMAND as INGEST

    from .pipeline_cmd import EVALUATE, PHANTOMS, PREDICT, TRAIN

    out = Path(out)
    t0 = time.perf_counter()
    train_dir, test_dir = out / "train", out / "test"
    _run(PHANTOMS, "dr ", ["phantoms", "--out", str(train_dir), "--n", str(cfg.train_photos),
                           "--width", str(cfg.width), "--seed", str(cfg.seed)])
    _run(PHANTOMS, "dr ", ["phantoms", "--out", str(test_dir), "--n", str(cfg.test_photos),
                           "--width", str(cfg.width), "--seed", str(cfg.seed + 1000)])
    for d in (train_dir, test_dir):
        _run(INGEST, "", ["ingest", str(d), "--store", str(d) + ".zarr", "--scheduler", cfg.scheduler])
    model = out / "model"
    _run(TRAIN, "dr ", ["train", "--store", str(train_dir) + ".zarr", "--labels", str(train_dir / "trainLabels.csv"),
                        "--out", str(model), "--radius", str(cfg.radius), "--epochs", str(cfg.epochs),
                        "--patience", str(cfg.patience), "--seed", str(cfg.seed), "--scheduler", cfg.scheduler])
    predictions = out / "predictions.csv"
    _run(PREDICT, "dr ", ["predict", "--store", str(test_dir) + ".zarr", "--model", str(model), "--out",
                          str(predictions), "--tta", str(cfg.tta), "--scheduler", cfg.scheduler])
    _run(EVALUATE, "dr ", ["evaluate", "--predictions", str(predictions), "--labels",
                           str(test_dir / "trainLabels.csv"), "--out", str(out / "eval")])
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    minutes = (time.perf_counter() - t0) / 60
    print(f"\ndemo: quadratic weighted kappa {metrics['kappa']:.3f} on {metrics['n']} unseen phantom photographs "
          f"({minutes:.1f} min); confusion matrix, training curve and model under {out}")
    return metrics


def _add_arguments(p: argparse.ArgumentParser) -> None:
    d = DemoConfig()
    p.add_argument("--out", default="dr-demo", metavar="DIR", help="working folder (default dr-demo)")
    p.add_argument("--train", type=int, default=d.train_photos, metavar="N", help=f"training photographs (default {d.train_photos})")
    p.add_argument("--test", type=int, default=d.test_photos, metavar="N", help=f"test photographs (default {d.test_photos})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--radius", type=int, default=d.radius, help=f"fundus radius in pixels (default {d.radius})")
    p.add_argument("--tta", type=int, default=d.tta, help=f"test-time augmentation views (default {d.tta})")
    p.add_argument("--seed", type=int, default=d.seed, help="default 0")
    p.add_argument("--scheduler", default=d.scheduler, metavar="SPEC", help="where the dask graphs run (default threads)")


def _run_cmd(args: argparse.Namespace) -> int:
    cfg = DemoConfig(train_photos=args.train, test_photos=args.test, epochs=args.epochs, radius=args.radius,
                     tta=args.tta, seed=args.seed, scheduler=args.scheduler)
    run_demo(args.out, cfg)
    return 0


DEMO = CommandSpec(
    name="demo",
    help="the DR job end to end on phantom photographs: phantoms, ingest, train, predict (TTA), evaluate",
    description=__doc__ or "",
    add_arguments=_add_arguments,
    run=_run_cmd,
)
