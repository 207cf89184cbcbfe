"""Ingest benchmark: ``voxelstream ingest`` against SimpleITK ``ReadImage`` + writing the same Zarr.

Two inputs are generated once (CT-like int16: air, an elliptic body, lungs, noise):
a MetaImage ``.mhd`` + ``.raw`` of about 1.2 GB (2400 x 512 x 512) and a 600-slice DICOM
series (512 x 512, written slice by slice with SimpleITK). Each run is a fresh subprocess
measured like ``/usr/bin/time -v`` does (``os.wait4``: peak RSS, wall time, CPU time = user + system); the two methods
alternate, and the table gives the median of ``--runs`` runs and the wall-time ratio
(SimpleITK / voxelstream: above 1 means voxelstream is faster). On a shared machine the CPU
time is the steadier number: wall time grows with other people's load. Both write the same array: (1, Z, Y, X),
64^3 chunks, the store's codecs (asked of ``voxelstream.store``). voxelstream runs as the ``voxelstream
ingest`` console script; the SimpleITK child imports SimpleITK, numpy and zarr only. The single-scan
and 1.2 GB end-to-end comparison for issue 13 is ``bench_e2e.py``.

    .venv/bin/python benchmarks/bench_ingest.py [--workdir /tmp/vs-bench] [--runs 3] [--append]

``--append`` adds the table, the command, the date and the machine to benchmarks/RESULTS.md.
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
from pathlib import Path

import numpy as np
from benchlib import machine, run_child

HERE = Path(__file__).resolve().parent
MHD_SHAPE = (2400, 512, 512)
DICOM_SHAPE = (600, 512, 512)
SPACING_ZYX = (0.5, 0.7, 0.7)


# -- inputs ------------------------------------------------------------------------------------


def ct_like_slab(z0: int, z1: int, ny: int, nx: int, seed: int = 0) -> np.ndarray:
    """Slices ``[z0:z1]`` of a CT-like int16 volume (HU): compresses like real CT, not like noise."""
    rng = np.random.default_rng(seed + z0)
    y, x = np.ogrid[-1:1:ny * 1j, -1:1:nx * 1j]
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
    out = np.full((z1 - z0, ny, nx), -1000, dtype=np.int16)
    for k, z in enumerate(range(z0, z1)):
        r = 0.28 + 0.04 * np.sin(z / 150)
        lungs = (((np.abs(x) - 0.4) / r) ** 2 + (y / (r * 1.6)) ** 2) < 1
        sl = np.where(body, 40, -1000).astype(np.int16)
        sl[lungs & body] = -850
        out[k] = sl
    out += np.where(out > -1000, rng.normal(0, 20, out.shape), 0).astype(np.int16)
    return out


def make_mhd(path: Path) -> Path:
    nz, ny, nx = MHD_SHAPE
    raw = path.with_suffix(".raw")
    with open(raw, "wb") as f:
        for z0 in range(0, nz, 64):
            f.write(ct_like_slab(z0, min(z0 + 64, nz), ny, nx).tobytes())
    sz, sy, sx = SPACING_ZYX
    path.write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        "CompressedData = False\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = -180 -180 -600\n"
        f"ElementSpacing = {sx} {sy} {sz}\nDimSize = {nx} {ny} {nz}\nModality = MET_MOD_CT\n"
        f"ElementType = MET_SHORT\nElementDataFile = {raw.name}\n"
    )
    return path


def make_dicom(folder: Path) -> Path:
    import SimpleITK as sitk

    nz, ny, nx = DICOM_SHAPE
    folder.mkdir(parents=True, exist_ok=True)
    sz, sy, sx = SPACING_ZYX
    series = "1.2.826.0.1.3680043.8.498.1" + str(abs(hash("bench")) % 10**12)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z0 in range(0, nz, 64):
        slab = ct_like_slab(z0, min(z0 + 64, nz), ny, nx)
        for k, sl in enumerate(slab):
            z = z0 + k
            img = sitk.GetImageFromArray(sl[None])
            img.SetSpacing((sx, sy, sz))
            img.SetOrigin((-180.0, -180.0, -600.0 + z * sz))
            tags = {
                "0008|0060": "CT",
                "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
                "0020|000d": series + ".0",
                "0020|000e": series,
                "0020|0052": series + ".9",
                "0020|0013": str(z + 1),
                "0020|0032": f"-180\\-180\\{-600.0 + z * sz}",
                "0020|0037": "1\\0\\0\\0\\1\\0",
                "0018|0050": str(sz),
                "0028|1052": "0",
                "0028|1053": "1",
                "0008|0018": f"{series}.{z + 1}",
            }
            for key, value in tags.items():
                img.SetMetaData(key, value)
            writer.SetFileName(str(folder / f"slice_{z:04d}.dcm"))
            writer.Execute(img)
    return folder


# -- one run (in its own process) ----------------------------------------------------------------


def run_simpleitk(src: str, store: str, codecs_json: str) -> None:
    """ReadImage (or the series reader) -> zarr-python write with the store's chunks and codecs.

    Imports SimpleITK, numpy and zarr only: importing voxelstream here would charge this
    method dask's import time too."""
    import SimpleITK as sitk
    import zarr

    if os.path.isdir(src):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(src))
        image = reader.Execute()
    else:
        image = sitk.ReadImage(src)
    arr = sitk.GetArrayViewFromImage(image)[None]  # (1, Z, Y, X) like the store's arrays
    codecs = json.loads(codecs_json)
    for c in codecs:  # typesize follows the dtype written
        c.get("configuration", {}).pop("typesize", None)
    out = zarr.create_array(
        store=store, shape=arr.shape, chunks=(1,) + (CHUNK,) * 3, dtype=arr.dtype,
        compressors=codecs, fill_value=0, overwrite=True,
    )
    out[...] = arr
    out.attrs["spacing"] = list(image.GetSpacing())[::-1]


def store_codecs() -> str:
    """The store's bytes-to-bytes codecs as JSON (asked of voxelstream in a throwaway child)."""
    code = ("import json; from voxelstream.store.planning import default_codecs; "
            "print(json.dumps([c.to_dict() for c in default_codecs()]))")
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


METHODS = ("voxelstream", "simpleitk+zarr")
VOXELSTREAM = str(Path(sys.executable).with_name("voxelstream"))  # the console script users run
CHUNK = 64  # the store's default chunk edge


def measure(method: str, src: Path, store: Path, codecs: str) -> dict[str, float]:
    """Run one method in a fresh process (the voxelstream command as a user types it)."""
    shutil.rmtree(store, ignore_errors=True)
    if method == "voxelstream":
        argv = [VOXELSTREAM, "ingest", str(src), "--store", str(store), "--no-progress"]
    else:
        argv = [__file__, "--one", str(src), str(store), codecs]
    run = run_child(argv, check=False)
    if run.returncode:
        raise SystemExit(f"{method} on {src} failed:\n{run.stderr[-2000:]}")
    shutil.rmtree(store, ignore_errors=True)
    return {"seconds": run.wall_s, "cpu_seconds": run.cpu_s, "peak_rss_gib": run.peak_rss_gib}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="/tmp/vs-bench", type=Path)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--append", action="store_true", help="append the results to benchmarks/RESULTS.md")
    p.add_argument("--only", choices=("mhd", "dicom"), help="benchmark one input only")
    p.add_argument("--one", nargs=3, metavar=("SRC", "STORE", "CODECS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        run_simpleitk(*args.one)
        return 0

    args.workdir.mkdir(parents=True, exist_ok=True)
    inputs = {}
    if args.only != "dicom":
        mhd = args.workdir / "long.mhd"
        if not (mhd.exists() and mhd.with_suffix(".raw").stat().st_size == 2 * int(np.prod(MHD_SHAPE))):
            print("writing", mhd, flush=True)
            make_mhd(mhd)
        size_gb = mhd.with_suffix(".raw").stat().st_size / 1e9
        inputs[f"MetaImage .mhd+.raw {'x'.join(map(str, MHD_SHAPE))} int16 ({size_gb:.2f} GB)"] = mhd
    if args.only != "mhd":
        dcm = args.workdir / "dicom"
        if len(list(dcm.glob("*.dcm"))) != DICOM_SHAPE[0]:
            shutil.rmtree(dcm, ignore_errors=True)
            print("writing", dcm, flush=True)
            make_dicom(dcm)
        inputs[f"DICOM series, {DICOM_SHAPE[0]} slices of 512x512"] = dcm

    codecs = store_codecs()
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    rows = []
    for label, src in inputs.items():
        results: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
        for i in range(args.runs):
            order = list(METHODS) if i % 2 == 0 else list(reversed(METHODS))
            for m in order:
                r = measure(m, src, args.workdir / "out.zarr", codecs)
                results[m].append(r)
                print(f"{label} | {m} | run {i + 1}: {r['seconds']:.1f} s, CPU {r['cpu_seconds']:.1f} s, "
                      f"{r['peak_rss_gib']:.2f} GiB", flush=True)
        medians = {m: statistics.median(r["seconds"] for r in rs) for m, rs in results.items()}
        for m, rs in results.items():
            rows.append((label, m, medians[m], statistics.median(r["cpu_seconds"] for r in rs),
                         statistics.median(r["peak_rss_gib"] for r in rs), max(r["peak_rss_gib"] for r in rs),
                         medians["simpleitk+zarr"] / medians[m]))

    table = ["| input | method | median wall s | median CPU s | median peak RSS GiB | max peak RSS GiB "
             "| SimpleITK wall / this wall |", "|---|---|---|---|---|---|---|"]
    table += [f"| {a} | {m} | {s:.1f} | {c:.1f} | {r:.2f} | {x:.2f} | {q:.2f} |" for a, m, s, c, r, x, q in rows]
    text = "\n".join(table)
    print(text)
    keys = ("input", "method", "seconds", "cpu_seconds", "rss_gib", "max_rss_gib", "sitk_over_this")
    print(json.dumps([dict(zip(keys, r)) for r in rows]))
    if args.append:
        cmd = " ".join(["python", "benchmarks/bench_ingest.py", *(argv if argv is not None else sys.argv[1:])])
        with open(HERE / "RESULTS.md", "a") as f:
            f.write(
                f"\n## Ingest: voxelstream vs SimpleITK ReadImage + Zarr write ({dt.date.today().isoformat()})\n\n"
                f"Command: `{cmd}`  \nMachine: {machine()}  \n"
                f"Median of {args.runs} runs, each a fresh process under `/usr/bin/time -v` (wall time includes "
                "interpreter start and imports; CPU = user + system); both write 64^3 chunks with the store's codecs; "
                f"load average before the runs: {load_before}.\n\n"
                f"{text}\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
