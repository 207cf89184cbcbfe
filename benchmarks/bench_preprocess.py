"""CT preprocessing side by side: resample (0.7, 0.7, 2.5) mm -> 1 mm, linear, then window
[-1000, 400] HU -> [0, 1] float32, file to file.

Methods (each run in its own subprocess; time = the work after imports, peak RSS = the
child's ``ru_maxrss`` from ``os.wait4``):

* ``voxelstream``: store to store, ``resample`` + ``hu_window`` streamed chunk by chunk
  (threaded scheduler, 64^3 chunks), exactly what ``voxelstream ct preprocess`` runs.
* ``simpleitk``: ``ReadImage`` (.mhd) -> ``Resample`` (sitkLinear, float32) ->
  ``IntensityWindowing`` -> ``WriteImage`` (.mhd), all in RAM.
* ``scipy``: the seeds' way: read the .mhd with SimpleITK, ``scipy.ndimage.zoom(order=1)``,
  numpy window, ``np.save``.
* ``dask-image``: ``dask_image.ndinterp.affine_transform`` (order 1, 128^3 output chunks)
  from the same Zarr array voxelstream reads, numpy window per block, ``to_zarr``.

Inputs: 512 x 512 x NZ int16 CT phantoms (a 100-slice ``make_ct_phantom`` slab repeated,
mirrored, along z): NZ = 300 (0.16 GB) and NZ = 2300 (1.2 GB).

Usage::

    .venv/bin/python benchmarks/bench_preprocess.py [--work DIR] [--repeats 3]
        [--large-repeats 1] [--methods voxelstream,simpleitk,scipy,dask-image] [--no-write]

Appends a section to benchmarks/RESULTS.md (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import machine, run_child

SPACING_ZYX = (2.5, 0.7, 0.7)
OUT_SPACING = (1.0, 1.0, 1.0)
WINDOW = (-1000.0, 400.0)
SIZES = {"0.16 GB": 300, "1.2 GB": 2300}
METHODS = ("voxelstream", "simpleitk", "scipy", "dask-image")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


# -- inputs ---------------------------------------------------------------------------------
def make_inputs(work: Path, nz: int) -> dict[str, str]:
    """Write the phantom once as a voxelstream store and as a MetaImage; reuse if present."""
    import dask.array as da
    import numpy as np
    import SimpleITK as sitk

    import voxelstream as vs
    from voxelstream_ct.phantom import make_ct_phantom

    store_path, mhd = work / f"in-{nz}.zarr", work / f"in-{nz}.mhd"
    if not (store_path.exists() and mhd.exists()):
        slab = make_ct_phantom((100, 512, 512), SPACING_ZYX, seed=0, n_nodules=3).hu
        reps = [slab if i % 2 == 0 else slab[::-1] for i in range(-(-nz // 100))]
        arr = np.concatenate(reps)[:nz]
        vol = vs.Volume.from_itk_geometry(da.from_array(arr, chunks=64), spacing=SPACING_ZYX,
                                          origin_xyz=(-180.0, -180.0, -400.0), meta={"modality": "CT"})
        vol.to_zarr(store_path, "ct", chunks=64)
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(SPACING_ZYX[::-1])
        img.SetOrigin((-180.0, -180.0, -400.0))
        sitk.WriteImage(img, str(mhd))
    return {"store": str(store_path), "mhd": str(mhd)}


# -- the methods (run in a child process) ---------------------------------------------------
def run_voxelstream(inputs: dict[str, str], out: Path) -> tuple[int, ...]:
    import voxelstream as vs
    from voxelstream.pipeline import StageCall, run_pipeline
    from voxelstream.scheduler import use_scheduler

    store = vs.open_store(inputs["store"])
    stages = [StageCall("resample", {"spacing": list(OUT_SPACING), "order": 1, "chunks": 64}),
              StageCall("hu_window", {"lo": WINDOW[0], "hi": WINDOW[1]})]
    with use_scheduler("threads"):
        run_pipeline(store, stages, output="iso-bench", force=True, out=open(os.devnull, "w"))
    return store.open("ct", "iso-bench").shape


def _sitk_out_size(img) -> list[int]:
    return [int(n * s / o + 0.5) for n, s, o in zip(img.GetSize(), img.GetSpacing(), OUT_SPACING[::-1])]


def run_simpleitk(inputs: dict[str, str], out: Path) -> tuple[int, ...]:
    import SimpleITK as sitk

    img = sitk.ReadImage(inputs["mhd"])
    res = sitk.Resample(img, _sitk_out_size(img), sitk.Transform(), sitk.sitkLinear, img.GetOrigin(),
                        OUT_SPACING[::-1], img.GetDirection(), 0.0, sitk.sitkFloat32)
    del img
    win = sitk.IntensityWindowing(res, WINDOW[0], WINDOW[1], 0.0, 1.0)
    del res
    sitk.WriteImage(win, str(out / "sitk.mhd"))
    return tuple(win.GetSize()[::-1])


def _window(a):
    import numpy as np

    a = np.clip(a, *WINDOW, out=a)
    a -= WINDOW[0]
    a *= 1.0 / (WINDOW[1] - WINDOW[0])
    return a


def run_scipy(inputs: dict[str, str], out: Path) -> tuple[int, ...]:
    import numpy as np
    import SimpleITK as sitk
    from scipy import ndimage

    arr = sitk.GetArrayFromImage(sitk.ReadImage(inputs["mhd"]))
    zoom = [s / o for s, o in zip(SPACING_ZYX, OUT_SPACING)]
    res = ndimage.zoom(arr.astype(np.float32), zoom, order=1, mode="nearest")
    del arr
    res = _window(res)
    np.save(out / "scipy.npy", res)
    return res.shape


def run_dask_image(inputs: dict[str, str], out: Path) -> tuple[int, ...]:
    import dask
    import dask.array as da
    import numpy as np
    import zarr
    from dask_image.ndinterp import affine_transform

    src = zarr.open_array(store=inputs["store"], path="volumes/ct/image/0", mode="r")
    image = da.from_zarr(src)
    ratios = [o / s for s, o in zip(SPACING_ZYX, OUT_SPACING)]
    shape = tuple(int(n * s / o + 0.5) for n, s, o in zip(image.shape, SPACING_ZYX, OUT_SPACING))
    res = affine_transform(image.astype(np.float32), np.diag(ratios), output_shape=shape, order=1,
                           output_chunks=128, mode="nearest")
    res = res.map_blocks(lambda b: _window(b.astype(np.float32)), dtype=np.float32)
    with dask.config.set(scheduler="threads"):
        res.to_zarr(str(out / "dask-image.zarr"), overwrite=True)
    return shape


RUNNERS = {"voxelstream": run_voxelstream, "simpleitk": run_simpleitk, "scipy": run_scipy,
           "dask-image": run_dask_image}


def child(method: str, inputs_json: str, out: str) -> None:
    """Entry point of one measured run: prints ``{"seconds", "shape"}`` as JSON."""
    import numpy  # noqa: F401  (imports are not timed)

    inputs = json.loads(inputs_json)
    if method in ("voxelstream", "dask-image"):
        import dask.array  # noqa: F401
        import distributed  # noqa: F401  (dask's first compute imports it to look for a client)
    if method == "voxelstream":  # loading the plugins is an import too: not timed
        import voxelstream.plugins

        voxelstream.plugins.stages()
    t0 = time.perf_counter()
    shape = RUNNERS[method](inputs, Path(out))
    print(json.dumps({"seconds": time.perf_counter() - t0, "shape": list(shape)}))


# -- the driver -----------------------------------------------------------------------------
def measure(method: str, inputs: dict[str, str], out: Path) -> dict:
    """One run in a fresh process: wall seconds of the work and the child's peak RSS."""
    for old in (out, Path(inputs["store"]) / "volumes" / "ct" / "iso-bench"):
        if old.exists():  # the previous run's output: deleting it is not part of the work
            shutil.rmtree(old)
    out.mkdir(parents=True)
    run = run_child([__file__, "_child", method, json.dumps(inputs), str(out)], check=False)
    if run.returncode:
        raise RuntimeError(f"{method} failed:\n{run.stderr[-2000:]}")
    result = json.loads(run.last_line())
    result["peak_rss_gib"] = run.peak_rss_gib
    result["cpu_s"] = run.cpu_s  # whole child, imports included
    shutil.rmtree(out)
    return result


def add_size_arguments(ap: argparse.ArgumentParser, repeats: int, large_repeats: int) -> None:
    """The options every benchmark on these phantoms shares: scratch folder, repeats, sizes, no-write."""
    ap.add_argument("--work", default="/tmp/voxelstream-bench", help="scratch folder (inputs are cached there)")
    ap.add_argument("--repeats", type=int, default=repeats, help="runs per method on the 0.16 GB input (median)")
    ap.add_argument("--large-repeats", type=int, default=large_repeats, help="runs per method on the 1.2 GB input")
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma-separated subset of " + ", ".join(SIZES))
    ap.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")


def parse_with_work(ap: argparse.ArgumentParser) -> tuple[argparse.Namespace, Path]:
    """The parsed arguments and the scratch folder (created)."""
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    return args, work


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_size_arguments(ap, repeats=3, large_repeats=1)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    args, work = parse_with_work(ap)
    methods = [m for m in args.methods.split(",") if m]
    rows = []
    for label in [s for s in args.sizes.split(",") if s]:
        nz = SIZES[label]
        # in a child: a big parent would inflate every child's ru_maxrss (Linux copies the
        # parent's high-water mark into a forked child)
        made = subprocess.run([sys.executable, __file__, "_inputs", str(work), str(nz)],
                              check=True, capture_output=True, text=True)
        inputs = json.loads(made.stdout.strip().splitlines()[-1])
        repeats = args.repeats if nz == min(SIZES.values()) else args.large_repeats
        # round-robin over the methods: on a shared machine a load spike then hits them all
        runs: dict[str, list[dict]] = {m: [] for m in methods}
        for _ in range(repeats):
            for method in methods:
                runs[method].append(measure(method, inputs, work / f"out-{method}"))
        for method in methods:
            secs = statistics.median(r["seconds"] for r in runs[method])
            rss = max(r["peak_rss_gib"] for r in runs[method])
            cpu = statistics.median(r["cpu_s"] for r in runs[method])
            shape = runs[method][0]["shape"]
            mvox = (shape[-3] * shape[-2] * shape[-1]) / secs / 1e6  # output voxels (channel axis first since the image contract)
            rows.append({"size": label, "method": method, "seconds": secs, "mvox_s": mvox, "rss": rss, "cpu": cpu,
                         "runs": [round(r["seconds"], 2) for r in runs[method]], "shape": shape})
            print(f"{label:8} {method:12} {secs:7.2f} s  {mvox:6.1f} Mvox/s  CPU {cpu:6.1f} s  peak RSS {rss:5.2f} GiB  "
                  f"runs {rows[-1]['runs']}", flush=True)
    report = render(rows, " ".join(sys.argv[1:]))
    print(report)
    if not args.no_write:
        with RESULTS.open("a") as f:
            f.write(report)
    return 0


def render(rows: list[dict], argv: str) -> str:
    """The Markdown section appended to RESULTS.md."""
    lines = [
        "",
        "## CT preprocessing: resample (0.7, 0.7, 2.5) -> 1 mm linear + window [-1000, 400] -> [0, 1]",
        "",
        f"`.venv/bin/python benchmarks/bench_preprocess.py {argv}`".replace(" `", "`"),
        f"{dt.date.today().isoformat()}, {machine()}; shared machine (other jobs running), so times are noisy.",
        "Each run is a fresh process, methods taken in turn (round-robin); time = the work after imports",
        "(file in -> file out), median of the runs listed; CPU = user + system seconds of the whole child (imports included; less noisy than",
        "wall time on a shared machine); peak RSS = the child's maximum resident set (`ru_maxrss`).",
        "",
        "| input | method | time (s) | output Mvox/s | vs SimpleITK | CPU (s) | peak RSS (GiB) | runs (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = next((b for b in rows if b["size"] == r["size"] and b["method"] == "simpleitk"), None)
        ratio = f"{base['seconds'] / r['seconds']:.2f}x" if base else "-"
        lines.append(f"| {r['size']} ({'x'.join(map(str, r['shape']))} out) | {r['method']} | {r['seconds']:.2f} | "
                     f"{r['mvox_s']:.1f} | {ratio} | {r['cpu']:.1f} | {r['rss']:.2f} | {r['runs']} |")
    vs_rows = {r["size"]: r for r in rows if r["method"] == "voxelstream"}
    if len(vs_rows) == 2:
        small, large = vs_rows["0.16 GB"]["rss"], vs_rows["1.2 GB"]["rss"]
        lines += ["", f"voxelstream peak RSS, 1.2 GB vs 0.16 GB input: {large:.2f} / {small:.2f} GiB "
                  f"({(large / small - 1) * 100:+.0f} %)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(*sys.argv[2:5])
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "_inputs":
        print(json.dumps(make_inputs(Path(sys.argv[2]), int(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main())
