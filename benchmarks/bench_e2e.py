"""End to end, one process per command, as a user runs it: ``voxelstream ingest`` of a CT
``.mhd`` and ``voxelstream ct preprocess`` (1 mm linear + lung window) against SimpleITK doing
the same work in its own process (issue 13, items 3 and 4).

Steps (each a fresh process; wall time from spawn to exit, interpreter start and imports
included; CPU = user + system of the child; peak RSS = its ``ru_maxrss``):

* ``ingest``: ``voxelstream ingest in.mhd --store S`` against a child that runs
  ``sitk.ReadImage`` and writes the array to Zarr with the same chunks and codecs
  (read from the array voxelstream wrote: Blosc + crc32c, 64^3 chunks).
* ``preprocess``: ``voxelstream ct preprocess --store S`` (the ingested store) against
  ``ReadImage`` -> ``Resample`` (sitkLinear, float32, 1 mm, same origin and direction) ->
  ``IntensityWindowing`` [-1000, 400] -> [0, 1] -> the same Zarr write.

The SimpleITK child imports only SimpleITK and zarr (never voxelstream or dask). Outputs of
the previous run are deleted before each run (not timed). Methods alternate per repeat
(round-robin), so a load spike on the shared machine hits both.

Inputs: the CT phantoms of ``bench_preprocess.py`` (512 x 512 x 300 = 0.16 GB and
512 x 512 x 2300 = 1.2 GB int16, spacing (2.5, 0.7, 0.7) mm).

Usage::

    .venv/bin/python benchmarks/bench_e2e.py [--work DIR] [--repeats 5] [--large-repeats 3]
        [--sizes "0.16 GB,1.2 GB"] [--steps ingest,preprocess] [--no-write]

Appends a section to benchmarks/RESULTS.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench_preprocess import SIZES, add_size_arguments, parse_with_work
from benchlib import append_results, run_child

HERE = Path(__file__).resolve().parent
VOXELSTREAM = str(Path(sys.executable).with_name("voxelstream"))  # the console script users run
STEPS = ("ingest", "preprocess")
WINDOW = (-1000.0, 400.0)
VOLUME_ID = "in-{nz}"  # the id voxelstream gives in-<nz>.mhd


# -- the SimpleITK child (imports SimpleITK and zarr only) -----------------------------------
def sitk_child(step: str, mhd: str, out: str, codecs_json: str) -> None:
    """ReadImage (-> Resample -> window) -> Zarr with the given bytes-to-bytes codecs."""
    import SimpleITK as sitk
    import zarr

    img = sitk.ReadImage(mhd)
    if step == "preprocess":
        size = [int(n * s / 1.0 + 0.5) for n, s in zip(img.GetSize(), img.GetSpacing())]
        res = sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), (1.0, 1.0, 1.0),
                            img.GetDirection(), 0.0, sitk.sitkFloat32)
        del img
        img = sitk.IntensityWindowing(res, WINDOW[0], WINDOW[1], 0.0, 1.0)
        del res
    arr = sitk.GetArrayViewFromImage(img)[None]  # (1, Z, Y, X) like the store's arrays
    codecs = json.loads(codecs_json)
    for c in codecs:  # typesize follows the dtype written
        c.get("configuration", {}).pop("typesize", None)
    out_arr = zarr.create_array(store=out, shape=arr.shape, chunks=(1, 64, 64, 64), dtype=arr.dtype,
                                compressors=codecs, fill_value=0, overwrite=True)
    out_arr[...] = arr


# -- the driver ------------------------------------------------------------------------------
def store_codecs(store: Path, nz: int) -> str:
    """The bytes-to-bytes codecs of the image voxelstream ingested (JSON list)."""
    meta = json.loads((store / "volumes" / VOLUME_ID.format(nz=nz) / "image" / "0" / "zarr.json").read_text())
    return json.dumps([c for c in meta["codecs"] if c["name"] != "bytes"])


#: Bytecode cached (under the scratch folder) as on a user's machine: this environment may set
#: PYTHONDONTWRITEBYTECODE, which recompiles every source module at every start (bench_startup.py does the same).
CHILD_ENV = {"PYTHONDONTWRITEBYTECODE": ""}


def run(argv: list[str]) -> dict:
    r = run_child(argv, env=CHILD_ENV, check=False)
    if r.returncode:
        raise SystemExit(f"{argv} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return {"seconds": r.wall_s, "cpu": r.cpu_s, "rss": r.peak_rss_gib}


def measure(step: str, method: str, mhd: Path, work: Path, nz: int, codecs: str) -> dict:
    """One run of one step by one method, in a fresh process. For voxelstream also the fixed
    cost of the command: the same command run again with nothing left to do (start-up,
    plugin loading, the store's checks)."""
    if method == "simpleitk":
        out = work / "sitk-out.zarr"
        shutil.rmtree(out, ignore_errors=True)
        res = run([__file__, "_sitk", step, str(mhd), str(out), codecs])
        shutil.rmtree(out, ignore_errors=True)
        return res
    if step == "ingest":
        store = work / f"ingest-{nz}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        argv = [VOXELSTREAM, "ingest", str(mhd), "--store", str(store), "--no-progress"]
    else:
        store = work / f"pre-{nz}.zarr"
        shutil.rmtree(store / "volumes" / VOLUME_ID.format(nz=nz) / "iso", ignore_errors=True)
        argv = [VOXELSTREAM, "ct", "preprocess", "--store", str(store), "--no-progress"]
    res = run(argv)
    res["fixed"] = run(argv)["seconds"]
    if step == "ingest":
        shutil.rmtree(store, ignore_errors=True)
    return res


def prepare(work: Path, nz: int) -> tuple[Path, str]:
    """The .mhd input (made by bench_preprocess), a store with it ingested, and its codecs."""
    made = subprocess.run([sys.executable, str(HERE / "bench_preprocess.py"), "_inputs", str(work), str(nz)],
                          check=True, capture_output=True, text=True)
    mhd = Path(json.loads(made.stdout.strip().splitlines()[-1])["mhd"])
    store = work / f"pre-{nz}.zarr"
    if not (store / "volumes" / VOLUME_ID.format(nz=nz) / "image").exists():
        shutil.rmtree(store, ignore_errors=True)
        run([VOXELSTREAM, "ingest", str(mhd), "--store", str(store), "--no-progress"])
    return mhd, store_codecs(store, nz)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_size_arguments(ap, repeats=5, large_repeats=3)
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of " + ", ".join(STEPS))
    args, work = parse_with_work(ap)
    CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    steps = [s for s in args.steps.split(",") if s]
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    rows = []
    for label in [s for s in args.sizes.split(",") if s]:
        nz = SIZES[label]
        mhd, codecs = prepare(work, nz)
        repeats = args.repeats if nz == min(SIZES.values()) else args.large_repeats
        runs: dict[tuple[str, str], list[dict]] = {(s, m): [] for s in steps for m in ("voxelstream", "simpleitk")}
        for i in range(repeats):
            for step in steps:
                order = ("voxelstream", "simpleitk") if i % 2 == 0 else ("simpleitk", "voxelstream")
                for method in order:
                    r = measure(step, method, mhd, work, nz, codecs)
                    runs[(step, method)].append(r)
                    print(f"{label} {step:10} {method:11} run {i + 1}: {r['seconds']:.2f} s, CPU {r['cpu']:.2f} s, "
                          f"{r['rss']:.2f} GiB", flush=True)
        for step in steps:
            med = {m: statistics.median(r["seconds"] for r in runs[(step, m)]) for m in ("voxelstream", "simpleitk")}
            cpu = {m: statistics.median(r["cpu"] for r in runs[(step, m)]) for m in ("voxelstream", "simpleitk")}
            for m in ("voxelstream", "simpleitk"):
                rs = runs[(step, m)]
                fixed = [r["fixed"] for r in rs if "fixed" in r]
                rows.append({"size": label, "step": step, "method": m, "seconds": med[m], "cpu": cpu[m],
                             "rss": max(r["rss"] for r in rs), "ratio": med["simpleitk"] / med[m],
                             "cpu_ratio": cpu["simpleitk"] / cpu[m], "runs": [round(r["seconds"], 2) for r in rs],
                             "fixed": statistics.median(fixed) if fixed else None})
    body = render(rows)
    print(body)
    if not args.no_write:
        append_results(
            "End to end, one process per command: voxelstream vs SimpleITK (issue 13)",
            "python benchmarks/bench_e2e.py " + " ".join(sys.argv[1:]),
            f"load average before the runs {load}. Wall = spawn to exit of each command's process "
            "(interpreter start and imports included), median of the runs listed, methods alternating; "
            "CPU = user + system of the child (median); peak RSS = max `ru_maxrss` over the runs; "
            "fixed cost = the same voxelstream command run again right after, with nothing left to do (median). "
            "SimpleITK = ReadImage (-> Resample linear float32 -> IntensityWindowing) -> zarr-python write "
            "with the same chunks and codecs.",
            body,
        )
    return 0


def render(rows: list[dict]) -> str:
    # the CPU ratio too: on a loaded machine (CPU shared per session) wall time is mostly queueing
    lines = ["| input | step | method | wall s | SimpleITK wall / this | CPU s | SimpleITK CPU / this | peak RSS GiB | "
             "fixed cost s (nothing to do) | runs (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fixed = "-" if r["fixed"] is None else f"{r['fixed']:.2f}"
        lines.append(f"| {r['size']} | {r['step']} | {r['method']} | {r['seconds']:.2f} | {r['ratio']:.2f}x | "
                     f"{r['cpu']:.2f} | {r['cpu_ratio']:.2f}x | {r['rss']:.2f} | {fixed} | {r['runs']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_sitk":
        sitk_child(*sys.argv[2:6])
        sys.exit(0)
    sys.exit(main())
