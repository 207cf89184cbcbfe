"""Training throughput of ``voxelstream nodules train`` on the CPU (cubes per second).

A synthetic cube set (positives: a bright ball at the centre; negatives: noise) of ``--cubes``
cubes per size is written once; ``train`` runs ``--epochs`` epochs with validation split and
early stopping disabled in effect (large patience). The first epoch includes XLA compilation,
so the table gives the median over the later epochs of ``train_cubes_per_s`` (streamed from
Zarr, forward + backward + AdamW update) and the first epoch's time.

    .venv/bin/python benchmarks/bench_train.py [--workdir /tmp/vs-bench-train] [--append]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from benchlib import append_results

from voxelstream_nodules.cubeset import CubeRecord, CubeSet
from voxelstream_nodules.options import TrainOptions
from voxelstream_nodules.train import train




def toy_cubes(path: Path, edge: int, n: int) -> None:
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:edge, :edge, :edge] - edge // 2
    ball = (z**2 + y**2 + x**2 <= (edge // 6) ** 2).astype(np.float32) * 0.6
    cs = CubeSet.create(path, (edge,) * 3, "float32")
    per_series = 8
    for s in range(n // per_series):
        labels = [1, 1, 1, 0, 0, 0, 0, 0]
        cubes = np.stack([rng.normal(0.2, 0.05, (edge,) * 3).astype(np.float32) + ball * lab for lab in labels])
        cs.append(cubes, [CubeRecord(f"s{s}", lab, "positive" if lab else "negative", 0, 0, i)
                          for i, lab in enumerate(labels)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vs-bench-train"))
    ap.add_argument("--edges", type=int, nargs="+", default=[16, 48])
    ap.add_argument("--cubes", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    rows = ["| cube | channels | batch | train cubes | first epoch s (with compile) | steady cubes/s |",
            "|---|---|---|---|---|---|"]
    for edge in args.edges:
        path = args.workdir / f"cubes{edge}.zarr"
        toy_cubes(path, edge, args.cubes)
        opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, val_fraction=0.2, seed=0, patience=99)
        metrics = train(path, args.workdir / f"model{edge}", opts, log=lambda line: None)
        steady = statistics.median(m["train_cubes_per_s"] for m in metrics[1:])
        n_train = round(metrics[1]["train_cubes_per_s"] * metrics[1]["seconds"])
        rows.append(f"| {edge}^3 | {','.join(map(str, opts.channels))} | {args.batch_size} | {n_train} | "
                    f"{metrics[0]['seconds']:.1f} | {steady:.1f} |")
        print(rows[-1], flush=True)
    text = "\n".join(rows)
    print(text)
    if args.append:
        append_results(
            "Training throughput on the CPU",
            "python benchmarks/bench_train.py --append",
            "VGG-like 3-D CNN (2 blocks of two 3x3x3 convs, conv head), AdamW, batches streamed from the "
            f"Zarr cube set; median over epochs 2-{args.epochs}.",
            text,
        )


if __name__ == "__main__":
    main()
