"""Dense sliding-window inference (``voxelstream nodules infer``): speed and memory.

Parts (``--parts``, default all):

* ``dense``:   dense tiled inference vs the classifier cube by cube (``score_points``) on the
  same grid of a 96^3 iso volume; cube by cube is timed on a random sample of grid points and
  extrapolated to the whole grid. Also: 1 vs 2 tiles evaluated at once, and tile sizes.
* ``monai``:   the same network in PyTorch (random weights), dense (fully convolutional) and
  through MONAI ``sliding_window_inference`` (every 48^3 window separately, stride 4), on the
  output grid of a 48^3 volume, against voxelstream's dense inference on that volume.
* ``flops``:   GFLOP/s of the dense network (convolution FLOPs counted analytically) against a
  4096^2 float32 matrix multiply (JAX and numpy) measured in the same run.
* ``rss``:     peak RSS of ``infer`` (a fresh process per scan, ``os.wait4``) on a 0.16 GB and
  a 1.2 GB float32 iso volume.

``--append`` adds the tables, the command, the date and the machine to benchmarks/RESULTS.md.
Needs ``pip install -e ".[bench]"`` (torch, monai) for the ``monai`` part; skipped without.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import machine, run_child as run_measured

HERE = Path(__file__).resolve().parent
DEFAULT_NET = {"cube": 48, "channels": [8, 16], "convs_per_block": 2, "head_channels": 32}
# the 1.2 GB scan with the default network would take ~30 min on 2 cores: a thin network
THIN_NET = {"cube": 48, "channels": [2, 4], "convs_per_block": 2, "head_channels": 4}


# -- fixtures ------------------------------------------------------------------------------------


def make_model(model_dir: Path, net: dict[str, Any], seed: int = 0) -> Path:
    """A random-weight model with random batch-norm statistics, saved for ``load_model``."""
    from flax import nnx

    from voxelstream.models import save_model
    from voxelstream_nodules.model import MODEL_NAME, NetConfig, build

    cfg = NetConfig.from_dict(net)
    model = build(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.BatchNorm):
            n = node.mean[...].shape[0]
            node.mean[...] = rng.normal(0, 0.3, n).astype(np.float32)
            node.var[...] = rng.uniform(0.5, 2, n).astype(np.float32)
    model.eval()
    return save_model(model_dir, MODEL_NAME, cfg.to_dict(), model)


def make_store(path: Path, shape: tuple[int, int, int], seed: int = 0):
    """A store with one windowed-looking [0, 1] float32 ``iso`` volume, written chunk by chunk."""
    import dask.array as da

    import voxelstream

    data = da.random.default_rng(seed).random(shape, chunks=64, dtype=np.float32)
    vol = voxelstream.Volume.from_itk_geometry(data, spacing=(1.0, 1.0, 1.0), origin_xyz=(-150.0, -150.0, -300.0))
    store = voxelstream.open_store(path, create=True)
    store.write(vol, "scan", "iso", chunks=64)
    return store


def conv_flops(net: dict[str, Any], tile: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of the dense network on one tile of ``tile^3`` outputs."""
    from voxelstream_nodules.model import NetConfig, layer_sizes

    cfg = NetConfig.from_dict(net)
    stride = 2 ** len(cfg.channels)
    size = (tile - 1) * stride + cfg.cube
    flops, cin = 0.0, 1
    for cout in cfg.channels:
        for _ in range(cfg.convs_per_block):
            size -= 2
            flops += 2.0 * size**3 * 27 * cin * cout
            cin = cout
        size //= 2
    k = layer_sizes(cfg)[-1]
    flops += 2.0 * tile**3 * k**3 * cin * cfg.head_channels  # head
    flops += 2.0 * tile**3 * cfg.head_channels  # 1x1x1 output
    return flops


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def infer_once(store, model_dir: Path, tile: int) -> float:
    from voxelstream_nodules.inference import infer_store

    t0 = time.perf_counter()
    report = infer_store(store, model_dir, tile=tile, force=True, out=open(os.devnull, "w"))
    assert not report.failed, report.failed
    return time.perf_counter() - t0


# -- parts -------------------------------------------------------------------------------------


def part_dense(work: Path, repeats: int, sample: int) -> dict[str, Any]:
    from voxelstream_nodules.inference import dense_grid
    from voxelstream_nodules.scoring import Point, score_points

    model_dir = make_model(work / "model", DEFAULT_NET)
    store = make_store(work / "s96.zarr", (96, 96, 96))
    infer_once(store, model_dir, 24)  # compile
    dense = timed(lambda: infer_once(store, model_dir, 24), repeats)
    iso = store.open("scan", "iso")
    grid = dense_grid(iso.spatial_shape, 4, 48)
    n_points = int(np.prod(grid.shape))
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, n, sample) for n in grid.shape], 1)
    world = iso.index_to_world(grid.centres(idx))
    points = [Point("scan", tuple(w)) for w in world]
    score_points(store, model_dir, points[:16], batch_size=16)  # compile
    cubes = timed(lambda: score_points(store, model_dir, points, batch_size=16), max(1, repeats - 1))
    per_point = statistics.median(cubes) / sample
    res = {"volume": "96^3", "grid": list(grid.shape), "points": n_points, "dense_s": dense,
           "cube_sample": sample, "cube_sample_s": cubes, "cube_extrapolated_s": per_point * n_points}
    res["ratio"] = res["cube_extrapolated_s"] / statistics.median(dense)
    # tile sizes and tiles at once: fresh processes (the evaluator is per process)
    res["variants"] = []
    # on a 192^3 volume (grid 48^3: several tiles, so that 2 at once can overlap)
    child(["mkstore", str(work / "s192.zarr"), "192"])
    for tile, at_once in ((24, 1), (24, 2), (16, 1), (32, 1)):
        out = child(["variant", str(work / "s192.zarr"), str(model_dir), str(tile), str(max(1, repeats - 1))],
                    env={"VOXELSTREAM_INFER_TILES_AT_ONCE": str(at_once)})
        res["variants"].append({"tile": tile, "at_once": at_once, **out})
    return res


def torch_net(net: dict[str, Any]):
    import torch
    from torch import nn

    from voxelstream_nodules.model import NetConfig, layer_sizes

    cfg = NetConfig.from_dict(net)
    layers, cin = [], 1
    for cout in cfg.channels:
        for _ in range(cfg.convs_per_block):
            layers += [nn.Conv3d(cin, cout, 3), nn.BatchNorm3d(cout), nn.ReLU()]
            cin = cout
        layers.append(nn.MaxPool3d(2))
    k = layer_sizes(cfg)[-1]
    layers += [nn.Conv3d(cin, cfg.head_channels, k), nn.BatchNorm3d(cfg.head_channels), nn.ReLU(),
               nn.Conv3d(cfg.head_channels, 1, 1)]
    torch.manual_seed(0)
    return nn.Sequential(*layers).eval()


def part_monai(work: Path, repeats: int) -> dict[str, Any]:
    try:
        import torch
        from monai.inferers import sliding_window_inference
    except ImportError as exc:
        return {"skipped": f"torch/monai not installed ({exc}); pip install -e '.[bench]'"}
    from voxelstream_nodules.inference import dense_grid

    model_dir = make_model(work / "model", DEFAULT_NET)
    store = make_store(work / "s48.zarr", (48, 48, 48), seed=1)
    infer_once(store, model_dir, 24)
    ours = timed(lambda: infer_once(store, model_dir, 24), repeats)
    grid = dense_grid((48, 48, 48), 4, 48)
    # the padded input whose 48^3 windows at stride 4 are exactly our grid's windows
    lo = grid.window_start((0, 0, 0))
    edge = grid.window_edge(grid.shape[0])
    vol = store.open("scan", "iso").data.compute()[0]  # channel-first (1, Z, Y, X)
    padded = np.zeros((edge,) * 3, np.float32)
    padded[-lo[0]:-lo[0] + 48, -lo[1]:-lo[1] + 48, -lo[2]:-lo[2] + 48] = vol
    x = torch.from_numpy(padded)[None, None]
    net = torch_net(DEFAULT_NET)
    torch.set_num_threads(os.cpu_count() or 1)
    with torch.inference_mode():
        dense_out = net(x)
        assert tuple(dense_out.shape[2:]) == grid.shape, dense_out.shape
        torch_dense = timed(lambda: net(x), repeats)
        overlap = 1 - 4 / 48  # MONAI's interval = int(roi * (1 - overlap)) = 4 voxels
        seen = []

        def counted(batch):
            seen.append(batch.shape[0])
            return net(batch)

        sw = sliding_window_inference(x, (48, 48, 48), 8, counted, overlap=overlap)
        assert sum(seen) == int(np.prod(grid.shape)), sum(seen)  # MONAI evaluated exactly our windows
        sw_s = timed(lambda: sliding_window_inference(x, (48, 48, 48), 8, net, overlap=overlap), max(1, repeats - 2))
    windows = int(np.prod(grid.shape))
    return {"volume": "48^3", "grid": list(grid.shape), "windows": windows, "voxelstream_dense_s": ours,
            "torch_dense_s": torch_dense, "monai_sliding_window_s": sw_s, "monai_out_shape": list(sw.shape),
            "torch": torch.__version__}


def part_flops(work: Path, repeats: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from voxelstream_nodules.inference import evaluator

    a = jnp.asarray(np.random.default_rng(0).random((4096, 4096), np.float32))
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    jax_mm = statistics.median(timed(lambda: mm(a).block_until_ready(), repeats))
    an = np.asarray(a)
    np_mm = statistics.median(timed(lambda: an @ an, repeats))
    mm_flops = 2.0 * 4096**3
    model_dir = work / "model"
    if not (model_dir / "weights.npz").exists():
        make_model(model_dir, DEFAULT_NET)
    ev = evaluator(model_dir)
    out = {"matmul_jax_gflops": mm_flops / jax_mm / 1e9, "matmul_numpy_gflops": mm_flops / np_mm / 1e9, "tiles": []}
    for tile in (16, 24, 32):
        x = np.random.default_rng(1).random((1,) + ((tile - 1) * 4 + 48,) * 3, np.float32)
        ev.probabilities(x)
        s = statistics.median(timed(lambda: ev.probabilities(x), repeats))
        f = conv_flops(DEFAULT_NET, tile)
        out["tiles"].append({"tile": tile, "gflop": f / 1e9, "seconds": s, "gflops": f / s / 1e9})
    per_cube = conv_flops(DEFAULT_NET, 1)
    out["work_ratio_cube_vs_dense_t24"] = per_cube / (conv_flops(DEFAULT_NET, 24) / 24**3)
    return out


def part_rss(work: Path, sizes: list[int]) -> dict[str, Any]:
    rows = []
    for edge in sizes:
        net = DEFAULT_NET if edge ** 3 * 4 < 0.5e9 else THIN_NET
        model_dir = make_model(work / f"model-{edge}", net)
        store_path = work / f"s{edge}.zarr"
        child(["mkstore", str(store_path), str(edge)])
        out = child(["rss", str(store_path), str(model_dir)])
        rows.append({"shape": f"{edge}^3", "gb": edge**3 * 4 / 1e9, "net": net, **out})
    return {"rows": rows}


# -- children ----------------------------------------------------------------------------------


def child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run this script's ``_child`` in a fresh process; its JSON answer plus its peak RSS."""
    run = run_measured([__file__, "_child", *args], env=env)
    res = json.loads(run.last_line())
    res.update(wall_s=run.wall_s, peak_rss_gib=run.peak_rss_gib)
    return res


def run_child(args: list[str]) -> None:
    import voxelstream

    kind = args[0]
    if kind == "mkstore":
        edge = int(args[2])
        make_store(Path(args[1]), (edge,) * 3)
        print(json.dumps({}))
    elif kind == "variant":
        store, model_dir, tile, repeats = voxelstream.open_store(args[1]), Path(args[2]), int(args[3]), int(args[4])
        infer_once(store, model_dir, tile)
        print(json.dumps({"seconds": timed(lambda: infer_once(store, model_dir, tile), repeats)}))
    elif kind == "rss":
        from voxelstream_nodules.infer_score_cmd import INFER

        p = argparse.ArgumentParser()
        INFER.add_arguments(p)
        t0 = time.perf_counter()
        code = INFER.run(p.parse_args(["--store", args[1], "--model", args[2], "--force"]))
        print(json.dumps({"infer_s": time.perf_counter() - t0, "exit": code}))


# -- report ------------------------------------------------------------------------------------


def med(v: list[float]) -> float:
    return statistics.median(v)


def report(res: dict[str, Any], command: str) -> str:
    lines = [f"\n## Dense inference: voxelstream nodules infer ({dt.date.today().isoformat()})\n",
             f"Command: `{command}`  ", f"Machine: {machine()}  ",
             f"Load average at start: {res['load']}  ",
             "Network: the nodule VGG-like 3-D CNN, 48^3 receptive field, stride 4, channels 8-16, head 32 "
             "(random weights, random batch-norm statistics); medians of the runs listed.\n"]
    if "dense" in res:
        d = res["dense"]
        lines += ["### Dense vs cube by cube, 96^3 volume, same grid " + "x".join(map(str, d["grid"])) +
                  f" ({d['points']} windows)\n",
                  "| method | runs (s) | median s | |", "|---|---|---|---|",
                  f"| dense `infer_store` (tile 24, read + infer + write) | {', '.join(f'{t:.1f}' for t in d['dense_s'])} "
                  f"| {med(d['dense_s']):.1f} | |",
                  f"| cube by cube `score_points` (batch 16), {d['cube_sample']} random grid points | "
                  f"{', '.join(f'{t:.1f}' for t in d['cube_sample_s'])} | {med(d['cube_sample_s']):.1f} | "
                  f"extrapolated to {d['points']}: {d['cube_extrapolated_s']:.0f} s |",
                  f"\n**Ratio: dense is {d['ratio']:.0f}x faster than cube by cube** (target >= 50x).\n",
                  "Tile size and tiles evaluated at once, 192^3 volume (grid 48^3), fresh process each:\n",
                  "| tile (output points) | tiles at once | runs (s) | median s | peak RSS GiB |", "|---|---|---|---|---|"]
        for v in d["variants"]:
            lines.append(f"| {v['tile']} | {v['at_once']} | {', '.join(f'{t:.1f}' for t in v['seconds'])} | "
                         f"{med(v['seconds']):.1f} | {v['peak_rss_gib']:.2f} |")
    if "monai" in res:
        m = res["monai"]
        if "skipped" in m:
            lines.append(f"\nMONAI: skipped: {m['skipped']}\n")
        else:
            base = med(m["voxelstream_dense_s"])
            lines += [f"\n### Against MONAI sliding_window_inference (PyTorch {m['torch']}, CPU), 48^3 volume, "
                      f"grid {'x'.join(map(str, m['grid']))} ({m['windows']} windows of 48^3, stride 4)\n",
                      "| method | runs (s) | median s | vs voxelstream |", "|---|---|---|---|",
                      f"| voxelstream dense (JAX, read + infer + write) | {', '.join(f'{t:.2f}' for t in m['voxelstream_dense_s'])} | {base:.2f} | 1 |",
                      f"| PyTorch, same network dense (fully convolutional, in RAM) | {', '.join(f'{t:.2f}' for t in m['torch_dense_s'])} | "
                      f"{med(m['torch_dense_s']):.2f} | {base / med(m['torch_dense_s']):.2f}x faster |",
                      f"| MONAI sliding_window_inference (roi 48, sw_batch 8, interval 4, in RAM) | {', '.join(f'{t:.1f}' for t in m['monai_sliding_window_s'])} | "
                      f"{med(m['monai_sliding_window_s']):.1f} | {med(m['monai_sliding_window_s']) / base:.0f}x slower |"]
    if "flops" in res:
        f = res["flops"]
        peak = max(f["matmul_jax_gflops"], f["matmul_numpy_gflops"])
        lines += [f"\n### Achieved GFLOP/s (convolution FLOPs counted analytically, one tile, compute only)\n",
                  f"Matrix multiply 4096^2 float32 in the same run: JAX {f['matmul_jax_gflops']:.0f} GFLOP/s, "
                  f"numpy {f['matmul_numpy_gflops']:.0f} GFLOP/s.\n",
                  "| tile | GFLOP per tile | median s | GFLOP/s | share of matmul peak |", "|---|---|---|---|---|"]
        for t in f["tiles"]:
            lines.append(f"| {t['tile']} | {t['gflop']:.1f} | {t['seconds']:.2f} | {t['gflops']:.1f} | {t['gflops'] / peak:.1%} |")
        lines.append(f"\nWork per window, cube by cube / dense (tile 24): {f['work_ratio_cube_vs_dense_t24']:.0f}x.")
    if "rss" in res:
        lines += ["\n### Peak RSS of `infer` (fresh process, os.wait4; wall time includes imports)\n",
                  "| iso volume | GB float32 | network | infer s | peak RSS GiB |", "|---|---|---|---|---|"]
        for r in res["rss"]["rows"]:
            net = "-".join(map(str, r["net"]["channels"])) + f", head {r['net']['head_channels']}"
            lines.append(f"| {r['shape']} | {r['gb']:.2f} | {net} | {r['infer_s']:.0f} | {r['peak_rss_gib']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        run_child(argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="dense,monai,flops,rss", help="comma-separated: dense,monai,flops,rss")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (default 3)")
    p.add_argument("--sample", type=int, default=64, help="grid points scored cube by cube (default 64)")
    p.add_argument("--rss-sizes", default="342,690", help="iso edges for the RSS part (default 342 = 0.16 GB, 690 = 1.3 GB)")
    p.add_argument("--append", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    res: dict[str, Any] = {"load": " ".join(f"{v:.1f}" for v in os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        work = Path(tmp)
        if "dense" in parts:
            res["dense"] = part_dense(work, args.repeats, args.sample)
        if "monai" in parts:
            res["monai"] = part_monai(work, args.repeats)
        if "flops" in parts:
            res["flops"] = part_flops(work, args.repeats)
        if "rss" in parts:
            res["rss"] = part_rss(work, [int(v) for v in args.rss_sizes.split(",")])
    (Path(tempfile.gettempdir()) / "bench_infer_last.json").write_text(json.dumps(res, indent=1, default=str))
    text = report(res, "python benchmarks/bench_infer.py " + " ".join(argv))
    print(text)
    if args.append:
        with open(HERE / "RESULTS.md", "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
