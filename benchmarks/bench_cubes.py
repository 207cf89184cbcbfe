"""Cube extraction benchmark: voxelstream's chunk-grouped reads against the seeds' way.

The seeds' way (what LUNA16 starter code does): load each preprocessed scan whole into RAM,
then slice the cubes out of it. voxelstream reads, per group of cubes, only the chunks those
cubes touch (``voxelstream_nodules.extract.read_cubes``) on dask's threaded scheduler.

Data: ``--scans`` CT phantoms (voxelstream_ct.phantom) of ``--shape`` voxels at 1 mm,
windowed to [0, 1] float32 and stored with the store's default 64^3 chunks; per scan, 48^3
cubes at its nodules plus ``--negatives`` random centres (the cubes of a typical
``voxelstream nodules cubes`` run). Both methods cut the same cubes (checked equal); each run is timed
in-process, page cache warm, median of ``--runs``. Also times the whole ``build_cubes``.

    .venv/bin/python benchmarks/bench_cubes.py [--workdir /tmp/vs-bench-cubes] [--runs 3] [--append]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from benchlib import append_results

import voxelstream
from voxelstream import Store, Volume
from voxelstream_ct.phantom import make_ct_phantom
from voxelstream_nodules.annotations import Annotation
from voxelstream_nodules.cubes import build_cubes
from voxelstream_nodules.extract import cube_edge, cut_cube, read_cubes




def make_store(workdir: Path, scans: int, shape: tuple[int, int, int]) -> tuple[Store, list[Annotation]]:
    path = workdir / "store.zarr"
    store = voxelstream.open_store(path, create=True)
    window = voxelstream.get_stage("hu_window")
    annotations = []
    for i in range(scans):
        ph = make_ct_phantom(shape, (1.0, 1.0, 1.0), seed=i, n_nodules=3, n_distractors=2)
        uid = f"bench.{i}"
        annotations += [Annotation(uid, n.center_xyz, n.diameter_mm) for n in ph.nodules]
        if store.is_complete(uid, "iso"):
            continue
        vol = Volume.from_itk_geometry(da.from_array(ph.hu, chunks=64), spacing=ph.spacing,
                                       origin_xyz=ph.origin_xyz, direction=ph.direction)
        store.write(window(vol), uid, "iso")
    return store, annotations


def centres_per_scan(store: Store, annotations: list[Annotation], negatives: int) -> dict[str, np.ndarray]:
    out = {}
    for i, uid in enumerate(store.volume_ids("iso")):
        vol = store.open(uid, "iso")
        pos = np.rint(vol.world_to_index([a.world_xyz for a in annotations if a.series_uid == uid])).astype(int)
        neg = np.random.default_rng(i).integers(0, vol.spatial_shape, size=(negatives, 3))
        out[uid] = np.concatenate([pos.reshape(-1, 3), neg])
    return out


def whole_scan_way(store: Store, centres: dict[str, np.ndarray], edge) -> dict[str, np.ndarray]:
    out = {}
    for uid, cs in centres.items():
        scan = store.read_region(uid, "iso", (slice(None),) * 4)[0]  # the whole scan in RAM (one channel)
        starts = cs - np.asarray(edge) // 2
        out[uid] = np.stack([cut_cube(scan, (0, 0, 0), s, edge, 0.0) for s in starts])
    return out


def voxelstream_way(store: Store, centres: dict[str, np.ndarray], edge) -> dict[str, np.ndarray]:
    return {uid: read_cubes(store, uid, "iso", cs, edge, 0.0) for uid, cs in centres.items()}


def timed(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vs-bench-cubes"))
    ap.add_argument("--scans", type=int, default=4)
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 320, 320))
    ap.add_argument("--negatives", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    store, annotations = make_store(args.workdir, args.scans, tuple(args.shape))
    edge = cube_edge(48.0, (1.0, 1.0, 1.0))
    centres = centres_per_scan(store, annotations, args.negatives)
    n_cubes = sum(len(c) for c in centres.values())
    with dask.config.set(scheduler="threads"):
        t_whole, a = timed(lambda: whole_scan_way(store, centres, edge), args.runs)
        t_vs, b = timed(lambda: voxelstream_way(store, centres, edge), args.runs)
        assert all(np.array_equal(a[k], b[k]) for k in a), "the two methods cut different cubes"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_build, report = timed(lambda: build_cubes(store, annotations, args.workdir / "cubes.zarr",
                                                        negatives_per_volume=args.negatives, seed=0), args.runs)
    n_build = report.positives + report.negatives
    rows = [
        ("load each scan whole, then slice (the seeds' way)", t_whole, n_cubes),
        ("voxelstream chunk-grouped reads (extract.read_cubes)", t_vs, n_cubes),
        ("whole `build_cubes` (sampling + body test + cube-set write)", t_build, n_build),
    ]
    table = ["| method | cubes | median s | cubes/s |", "|---|---|---|---|"]
    table += [f"| {m} | {n} | {t:.2f} | {n / t:.1f} |" for m, t, n in rows]
    text = "\n".join(table)
    print(text)
    if args.append:
        append_results(
            "Cubes: 48^3 cubes from a store vs loading each scan whole",
            f"python benchmarks/bench_cubes.py --runs {args.runs} --append",
            f"{args.scans} phantom scans of {tuple(args.shape)} at 1 mm, float32 [0, 1], 64^3 chunks (Blosc LZ4); "
            f"{args.negatives} random + 3 nodule centres per scan; page cache warm; median of {args.runs}.",
            text,
        )


if __name__ == "__main__":
    main()
