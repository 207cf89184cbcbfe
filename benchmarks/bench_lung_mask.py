"""Lung masks side by side: voxelstream's ``lung_mask`` stage (store to store, slabs of whole
slices) against the whole-volume way a user would write with scipy.

Methods (each run in its own subprocess; time = the work after imports, peak RSS = the
child's ``ru_maxrss`` from ``os.wait4``):

* ``voxelstream``: ``run_pipeline(store, [lung_mask], input="image", output="lung")`` -- what
  ``voxelstream ct preprocess --lung-mask`` runs -- threaded scheduler, 64^3 store chunks.
* ``scipy-3d``: ``np.load`` the HU volume, air < -400 HU, **3-D** connected components
  (labels touching a y/x face of the volume are the outside), ``binary_closing`` with a
  5 mm ball, holes filled per axial slice, ``np.save``. The exact 3-D version of the
  per-slice rule, all in RAM.

Agreement: Dice between the two masks and against the phantom's analytic lungs.

Inputs: realistic phantoms (``NoduleMix()``) at 1 mm, 320 x 320 per slice; NZ = 160 rendered,
NZ = 480 by mirroring it along z (as ``bench_preprocess.py`` does).

Usage::

    .venv/bin/python benchmarks/bench_lung_mask.py [--work DIR] [--repeats 2] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchlib import append_results, run_child

SIZES = {"160 slices (33 MB)": 160, "480 slices (98 MB)": 480}
METHODS = ("voxelstream", "scipy-3d")


def make_inputs(work: Path, nz: int) -> None:
    import numpy as np

    import voxelstream as vs
    from voxelstream_ct.phantom import NoduleMix, make_ct_phantom

    if (work / f"in-{nz}.npy").is_file():
        return
    ph = make_ct_phantom((160, 320, 320), (1.0, 1.0, 1.0), seed=3, n_nodules=4,
                         nodule_diameters_mm=(3.0, 30.0), nodule_mix=NoduleMix())
    reps = -(-nz // 160)
    hu = np.concatenate([ph.hu if i % 2 == 0 else ph.hu[::-1] for i in range(reps)])[:nz]
    lung = np.concatenate([ph.lung if i % 2 == 0 else ph.lung[::-1] for i in range(reps)])[:nz]
    np.save(work / f"in-{nz}.npy", hu)
    np.save(work / f"truth-{nz}.npy", lung)
    vs.Volume.from_array(hu, spacing=(1.0, 1.0, 1.0), meta={"modality": "CT", "units": "HU"}).to_zarr(
        work / f"in-{nz}.zarr", "scan", chunks=64)


def child_voxelstream(work: Path, nz: int) -> None:
    import numpy as np

    import voxelstream as vs
    from voxelstream.pipeline import StageCall, run_pipeline

    store = vs.open_store(work / f"in-{nz}.zarr")
    t = time.perf_counter()
    run_pipeline(store, [StageCall("lung_mask", {})], input="image", output="lung", force=True,
                 out=open("/dev/null", "w"))
    dt = time.perf_counter() - t
    np.save(work / f"vs-{nz}.npy", np.asarray(store.open("scan", "lung").data)[0])
    print(json.dumps({"seconds": dt}))


def child_scipy(work: Path, nz: int) -> None:
    import numpy as np
    from scipy import ndimage

    t = time.perf_counter()
    hu = np.load(work / f"in-{nz}.npy")
    air = hu < -400
    labels, n = ndimage.label(air)
    faces = np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(),
                            labels[:, :, -1].ravel()])
    keep = np.ones(n + 1, bool)
    keep[np.unique(faces)] = False
    keep[0] = False
    inner = keep[labels]
    r = 5
    zz, yy, xx = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    ball = zz * zz + yy * yy + xx * xx <= r * r
    closed = ndimage.binary_closing(np.pad(inner, r), structure=ball)[r:-r, r:-r, r:-r]
    for k in range(closed.shape[0]):
        closed[k] = ndimage.binary_fill_holes(closed[k])
    np.save(work / f"scipy-{nz}.npy", closed.astype(np.uint8))
    print(json.dumps({"seconds": time.perf_counter() - t}))


def _dice(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_lung_mask"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "NZ"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, nz = args.child[0], int(args.child[1])
        (child_voxelstream if method == "voxelstream" else child_scipy)(args.work, nz)
        return
    import numpy as np

    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, nz in SIZES.items():
        make_inputs(args.work, nz)
        for method in METHODS:
            runs = [run_child([__file__, "--work", str(args.work), "--child", method, str(nz)])
                    for _ in range(args.repeats)]
            secs = statistics.median(json.loads(r.last_line())["seconds"] for r in runs)
            rss = statistics.median(r.peak_rss_gib for r in runs)
            rows.append((label, method, secs, rss))
            print(f"{label} {method}: {secs:.1f} s, {rss:.2f} GiB", flush=True)
        vs_mask = np.load(args.work / f"vs-{nz}.npy")
        sp_mask = np.load(args.work / f"scipy-{nz}.npy")
        truth = np.load(args.work / f"truth-{nz}.npy")
        agree = (f"Dice voxelstream vs scipy-3d {_dice(vs_mask, sp_mask):.4f}; vs the phantom's lungs: "
                 f"voxelstream {_dice(vs_mask, truth):.4f}, scipy-3d {_dice(sp_mask, truth):.4f}")
        rows.append((label, "agreement", agree, None))
        print(agree, flush=True)
    body = ["| input | method | median s (work after imports) | median peak RSS GiB |", "|---|---|---|---|"]
    body += [f"| {a} | {m} | {s:.1f} | {r:.2f} |" for a, m, s, r in rows if r is not None]
    body += [""] + [f"- {a}: {s}" for a, _, s, r in rows if r is None]
    if not args.no_write:
        append_results("Lung mask: voxelstream lung_mask vs whole-volume scipy (issue 12)",
                       f"python benchmarks/bench_lung_mask.py --repeats {args.repeats}",
                       f"Median of {args.repeats} runs, each a fresh process; 1 mm phantoms, 320 x 320 per slice.",
                       "\n".join(body))


if __name__ == "__main__":
    sys.exit(main())
