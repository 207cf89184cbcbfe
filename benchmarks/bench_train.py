"""Nodule network throughput on whatever JAX device is present, side by side with PyTorch.

Parts (``--parts``, default all):

* ``step``:  one training step (forward + backward + AdamW) of the default network (channels
  8,16, 48^3 cubes, batch 32, the CLI defaults) in JAX (``voxelstream_nodules.train``'s own
  jitted step) and the same network in PyTorch (oneDNN on the CPU), interleaved: round by
  round one PyTorch step, then one JAX step, so that both see the same machine load.
  Reported: median cubes/s of each and the median of the per-round ratios.
* ``infer``: dense inference of one tile (24^3 output points, a 140^3 input window: what
  ``voxelstream nodules infer`` evaluates per task) by the JAX evaluator vs the same network
  in PyTorch, interleaved likewise; output points per second.
* ``train``: ``voxelstream_nodules.train.train`` end to end on a small synthetic cube set
  streamed from Zarr (what a user sees per epoch), median cubes/s over epochs 2..N.

PyTorch is optional (``pip install torch==2.13.0``; without it only the JAX columns are
filled). The JAX device (``jax.devices()[0]``) is recorded with every result, so the same
script measures a GPU where jax[cuda] is installed.

    .venv/bin/python benchmarks/bench_train.py [--parts step,infer,train] [--rounds 5] [--append]
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import append_results

from voxelstream_nodules.cubeset import CubeRecord, CubeSet
from voxelstream_nodules.options import TrainOptions

NET = {"cube": 48, "channels": [8, 16], "convs_per_block": 2, "head_channels": 32}


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


def device() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', d)} (jax {jax.__version__})"


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def _interleaved(fns: dict[str, Any], rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Wall seconds per call of each function, called in turn, ``rounds`` times (after one
    warm-up call each: compilation and allocator warm-up are not throughput), and the median
    CPU seconds (all threads of this process) per call: under load the wall times mostly
    measure the other jobs, the CPU times still the work (OpenMP's spinning threads count)."""
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return out, {k: statistics.median(v) for k, v in cpu.items()}


def _ratios(times: dict[str, list[float]]) -> dict[str, float]:
    """JAX throughput / PyTorch throughput: the median of per-round ratios, and the ratio of
    the fastest rounds (the least disturbed by other jobs: the best estimate for an idle
    machine; on a loaded one PyTorch's threads suffer more than XLA's)."""
    return {"ratio": statistics.median(t / j for t, j in zip(times["torch"], times["jax"])),
            "best_ratio": min(times["torch"]) / min(times["jax"])}


def part_step(batch: int, rounds: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from voxelstream_nodules.model import NetConfig, build
    from voxelstream_nodules.train import _train_step

    rng = np.random.default_rng(0)
    x = rng.random((batch, 48, 48, 48), np.float32)
    y = (np.arange(batch) % 4 == 0).astype(np.float32)
    model = build(NetConfig.from_dict(NET), seed=0)
    model.train()
    opt = nnx.Optimizer(model, optax.adamw(1e-3, weight_decay=1e-4), wrt=nnx.Param)
    xj, yj, pw = jnp.asarray(x), jnp.asarray(y), jnp.float32(3.0)
    # the step's optional extras (label smoothing, where train has it) at their defaults: off
    extra = (jnp.float32(0.0),) if "smoothing" in inspect.signature(_train_step).parameters else ()
    t0 = time.perf_counter()
    jax.block_until_ready(_train_step(model, opt, xj, yj, pw, *extra))
    compile_s = time.perf_counter() - t0
    fns = {"jax": lambda: jax.block_until_ready(_train_step(model, opt, xj, yj, pw, *extra))}
    torch = _torch()
    if torch is not None:
        from bench_infer import torch_net

        net = torch_net(NET).train()
        topt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
        xt, yt = torch.from_numpy(x)[:, None], torch.from_numpy(y)
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(3.0))

        def torch_step() -> None:
            topt.zero_grad()
            loss_fn(net(xt).reshape(batch), yt).backward()
            topt.step()

        fns = {"torch": torch_step, **fns}
    times, cpu = _interleaved(fns, rounds)
    res: dict[str, Any] = {"batch": batch, "compile_s": compile_s, "times": times, "cpu": cpu,
                           "cubes_per_s": {k: batch / statistics.median(v) for k, v in times.items()}}
    if "torch" in times:
        res.update(_ratios(times))
        res["torch_version"] = torch.__version__
    return res


def part_infer(tile: int, rounds: int, work: Path) -> dict[str, Any]:
    from bench_infer import make_model, torch_net

    from voxelstream_nodules.inference import evaluator

    model_dir = make_model(work / "model", NET)
    ev = evaluator(model_dir)
    edge = (tile - 1) * ev.stride + ev.receptive_field
    x = np.random.default_rng(1).random((1, edge, edge, edge), np.float32)
    fns = {"jax": lambda: ev.probabilities(x)}
    torch = _torch()
    if torch is not None:
        net = torch_net(NET)
        xt = torch.from_numpy(x)[:, None]

        def torch_dense() -> None:
            with torch.inference_mode():
                torch.sigmoid(net(xt))

        fns = {"torch": torch_dense, **fns}
    times, cpu = _interleaved(fns, rounds)
    res: dict[str, Any] = {"tile": tile, "window": edge, "times": times, "cpu": cpu,
                           "points_per_s": {k: tile**3 / statistics.median(v) for k, v in times.items()}}
    if "torch" in times:
        res.update(_ratios(times))
    return res


def part_train(edge: int, n_cubes: int, epochs: int, batch: int, work: Path) -> dict[str, Any]:
    from voxelstream_nodules.train import train

    path = work / f"cubes{edge}.zarr"
    toy_cubes(path, edge, n_cubes)
    opts = TrainOptions(epochs=epochs, batch_size=batch, val_fraction=0.2, seed=0, patience=99)
    metrics = train(path, work / f"model{edge}", opts, log=lambda line: None)
    return {"edge": edge, "batch": batch, "first_epoch_s": metrics[0]["seconds"],
            "cubes_per_s": statistics.median(m["train_cubes_per_s"] for m in metrics[1:]),
            "epochs": [m["train_cubes_per_s"] for m in metrics]}


def _runs(v: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in v)


def report(res: dict[str, Any]) -> str:
    lines = [f"JAX device: {res['device']}; load average (1, 5, 15 min) at start {res['load']}, at the end "
             f"{res['load_end']}.", ""]
    if "step" in res:
        s = res["step"]
        lines += [f"### Training step, 48^3 cubes, batch {s['batch']}, channels 8,16 (the CLI defaults), interleaved rounds",
                  "", "| framework | step wall s per round | median cubes/s | median CPU s per step |", "|---|---|---|---|"]
        for k, v in s["times"].items():
            lines.append(f"| {k} | {_runs(v)} | {s['cubes_per_s'][k]:.1f} | {s['cpu'][k]:.2f} |")
        if "ratio" in s:
            lines.append(f"\n**JAX / PyTorch {s['torch_version']} throughput: {s['ratio']:.2f}x** (median of per-round "
                         f"ratios; fastest rounds: {s['best_ratio']:.2f}x; target >= 0.6). JAX compile of the step: "
                         f"{s['compile_s']:.0f} s.")
    if "infer" in res:
        s = res["infer"]
        lines += ["", f"### Dense inference, one tile of {s['tile']}^3 output points ({s['window']}^3 input window), "
                  "compute only, interleaved rounds", "", "| framework | wall s per round | median output points/s | median CPU s |",
                  "|---|---|---|---|"]
        for k, v in s["times"].items():
            lines.append(f"| {k} | {_runs(v)} | {s['points_per_s'][k]:.0f} | {s['cpu'][k]:.2f} |")
        if "ratio" in s:
            lines.append(f"\n**JAX / PyTorch dense inference throughput: {s['ratio']:.2f}x** (median of per-round ratios; "
                         f"fastest rounds: {s['best_ratio']:.2f}x; target >= 0.6).")
    if "train" in res:
        s = res["train"]
        lines += ["", "### `train()` end to end (batches streamed from a Zarr cube set, prefetch thread)", "",
                  "| cube | batch | cubes/s per epoch | first epoch s (with compile) | median cubes/s, epochs 2.. |",
                  "|---|---|---|---|---|",
                  f"| {s['edge']}^3 | {s['batch']} | {_runs(s['epochs'])} | {s['first_epoch_s']:.1f} | {s['cubes_per_s']:.1f} |"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="step,infer,train", help="comma-separated: step,infer,train")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (default 5)")
    ap.add_argument("--batch", type=int, default=TrainOptions().batch_size, help="cubes per step (default: the CLI's)")
    ap.add_argument("--tile", type=int, default=24, help="output points per tile edge for 'infer' (default 24)")
    ap.add_argument("--cubes", type=int, default=160, help="cubes in the synthetic set for 'train' (default 160)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs for 'train' (default 3)")
    ap.add_argument("--append", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = ap.parse_args()
    parts = args.parts.split(",")
    res: dict[str, Any] = {"load": " ".join(f"{v:.1f}" for v in os.getloadavg()), "device": device()}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        if "step" in parts:
            res["step"] = part_step(args.batch, args.rounds)
        if "infer" in parts:
            res["infer"] = part_infer(args.tile, args.rounds, Path(tmp))
        if "train" in parts:
            res["train"] = part_train(48, args.cubes, args.epochs, args.batch, Path(tmp))
    res["load_end"] = " ".join(f"{v:.1f}" for v in os.getloadavg())
    text = report(res)
    print(text)
    if args.append:
        append_results("Nodule network throughput: JAX vs PyTorch, training and dense inference",
                       "python benchmarks/bench_train.py " + " ".join(f"--{k} {v}" for k, v in (("parts", args.parts),
                                                                                              ("rounds", args.rounds))) + " --append",
                       "same network both sides (VGG-like 3-D CNN, 2 blocks of two 3x3x3 convs, 9^3 conv head)", text)


if __name__ == "__main__":
    main()
