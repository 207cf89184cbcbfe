"""Diabetic-retinopathy preprocessing and training throughput, side by side.

1. Ingest + preprocess of full-size synthetic fundus JPEGs (``--width`` px, 4:3) to
   ``(3, 2R, 2R)``, each way in a fresh measured process (wall time, images/s, peak RSS):

   * voxelstream CLI: ``voxelstream ingest`` (full-size photographs into the store) then
     ``voxelstream dr preprocess --radius R`` (two processes; RSS is the larger);
   * voxelstream CLI without the full-size copy: ``voxelstream dr preprocess PHOTOS`` (one
     process; each photograph decoded once, JPEG ``draft`` to at least 4R rows, one numpy pass,
     written without a dask graph), and the same with ``--no-draft``;
   * the seed's way: Pillow per image in a loop (decode, radius from the middle row, resize,
     Pillow's Gaussian blur, ``4 * img - 4 * blur + 128``, circle mask, centre crop, PNG out);
   * the same with Pillow's JPEG ``draft`` (the decoder scales by 1/2..1/8 while decoding).

   Medians over ``--repeats`` runs.
2. JPEG decode of one full-size photograph: full size vs ``draft`` to about the size the
   radius needs (median of 5).
3. Training throughput at 512 px (R = 256): ``dr train``'s loop on preprocessed phantoms,
   with and without augmentation; images/s of the epochs after the first (which compiles).

    .venv/bin/python benchmarks/bench_dr.py [--n 12] [--width 4000] [--append]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from benchlib import append_results, run_child

HERE = Path(__file__).resolve()


# -- children ----------------------------------------------------------------------------------
def _seed_way(src: Path, dst: Path, radius: int, draft: bool) -> None:
    """The seed's loop (Ben Graham's recipe), with Pillow in place of OpenCV."""
    from PIL import Image, ImageFilter

    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.jpeg")):
        with Image.open(f) as im:
            if draft:
                w, h = im.size
                im.draft("RGB", (w * 2 * radius // h, 2 * radius))  # fundus radius ~ h / 2 stays >= R
            im = im.convert("RGB")
        a = np.asarray(im)
        x = a[a.shape[0] // 2].sum(1).astype(np.float64)
        r = (x > x.mean() / 10).sum() / 2
        s = radius / r
        img = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BILINEAR)
        blur = img.filter(ImageFilter.GaussianBlur(radius / 30))
        out = np.clip(4.0 * np.asarray(img, np.float32) - 4.0 * np.asarray(blur, np.float32) + 128, 0, 255)
        h, w = out.shape[:2]
        yy, xx = np.ogrid[:h, :w]
        out[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 > (0.9 * radius) ** 2] = 128
        crop = np.zeros((2 * radius, 2 * radius, 3), np.uint8)  # centre crop, black padding
        y0, x0 = h // 2 - radius, w // 2 - radius
        sy, sx = max(0, y0), max(0, x0)
        piece = out[sy:y0 + 2 * radius, sx:x0 + 2 * radius]
        crop[sy - y0:sy - y0 + piece.shape[0], sx - x0:sx - x0 + piece.shape[1]] = piece.astype(np.uint8)
        Image.fromarray(crop).save(dst / f"{f.stem}.png", compress_level=1)


def _decode(path: Path, radius: int) -> None:
    """Pillow's JPEG decode (what the photo reader runs), full size vs draft; the reader's own
    function is not timed because it keeps its last results."""
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
    out = {}
    for label, draft in (("full", None), ("draft", (w * 2 * radius // h, 2 * radius))):
        times, shape = [], None
        for _ in range(5):
            t0 = time.perf_counter()
            with Image.open(path) as im:
                if draft:
                    im.draft("RGB", draft)
                shape = np.asarray(im.convert("RGB")).shape
            times.append(time.perf_counter() - t0)
        out[label] = {"s": statistics.median(times), "shape": list(shape)}
    print(json.dumps(out))


def _train(workdir: Path, n: int, radius: int, augment: bool, epochs: int) -> None:
    from voxelstream_dr.fundus import preprocess_array
    from voxelstream_dr.options import TrainOptions
    from voxelstream_dr.phantoms import draw_fundus
    from voxelstream_dr.photos import Photos
    from voxelstream_dr.train import train

    cache = workdir / f"train{radius}_{n}.npz"
    if not cache.exists():
        rng = np.random.default_rng(0)
        grades = rng.integers(0, 5, n)
        imgs = np.stack([preprocess_array(draw_fundus(int(g), np.random.default_rng(i), width=int(4.4 * radius))[0]
                                          .transpose(2, 0, 1), radius).transpose(1, 2, 0) for i, g in enumerate(grades)])
        np.savez(cache, imgs=imgs, grades=grades)
    d = np.load(cache)
    ids = [f"{i}_left" for i in range(n)]
    opts = TrainOptions(epochs=epochs, batch_size=16, patience=99, augment=augment, val_fraction=0.2)
    metrics = train(Photos.from_array(ids, d["imgs"]), dict(zip(ids, map(int, d["grades"]))),
                    workdir / f"model-aug{int(augment)}", opts, log=lambda s: None)
    print(json.dumps({"first_s": metrics[0]["seconds"], "per_s": [m["train_images_per_s"] for m in metrics[1:]]}))


# -- parent ------------------------------------------------------------------------------------
def _phantoms(folder: Path, n: int, width: int) -> None:
    from PIL import Image

    from voxelstream_dr.phantoms import draw_fundus

    if folder.is_dir() and len(list(folder.glob("*.jpeg"))) == n:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(n):
        arr, _ = draw_fundus(i % 5, np.random.default_rng([9, i]), width=width)
        Image.fromarray(arr).save(folder / f"{i}_{'left' if i % 2 == 0 else 'right'}.jpeg", quality=90)


def _draft_difference(a: Path, b: Path) -> str:
    """How the draft-decoded outputs differ from the full-size-decoded ones (grey levels)."""
    import voxelstream

    sa, sb = voxelstream.open_store(a), voxelstream.open_store(b)
    whole = (slice(None),) * 3
    d = np.concatenate([np.abs(sa.read_region(v, "fundus", whole).astype(np.int16)
                               - sb.read_region(v, "fundus", whole).astype(np.int16)).ravel()
                        for v in sorted(sb.volume_ids())])
    return (f"mean |difference| {d.mean():.2f}, 99th percentile {np.percentile(d, 99):.0f}, max {d.max()}, "
            f"{100 * (d > 8).mean():.2f} % of values differ by more than 8")


def _cli(*args: str) -> list[str]:
    return ["-m", "voxelstream.cli.main", *args]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind in ("seed", "seed-draft"):
            _seed_way(Path(rest[0]), Path(rest[1]), int(rest[2]), kind == "seed-draft")
        elif kind == "decode":
            _decode(Path(rest[0]), int(rest[1]))
        elif kind == "train":
            _train(Path(rest[0]), int(rest[1]), int(rest[2]), rest[3] == "1", int(rest[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vs-bench-dr"))
    ap.add_argument("--n", type=int, default=12, help="photographs (default 12)")
    ap.add_argument("--width", type=int, default=4000, help="photograph width in px (default 4000, 4:3)")
    ap.add_argument("--radius", type=int, default=256, help="output fundus radius (default 256: 512 x 512)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-n", type=int, default=80, help="photographs for the training benchmark")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--parts", nargs="+", default=["preprocess", "decode", "train"])
    ap.add_argument("--append", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = ap.parse_args()
    wd = args.workdir
    wd.mkdir(parents=True, exist_ok=True)
    src = wd / f"photos{args.width}"
    _phantoms(src, args.n, args.width)
    me = str(HERE)
    load = os.getloadavg()
    sections = []

    if "preprocess" in args.parts:
        runs: dict[str, list[tuple[float, float]]] = {}
        stores: dict[str, Path] = {}
        for rep in range(args.repeats):
            for k, label in enumerate(("voxelstream CLI: ingest + dr preprocess", "voxelstream CLI: dr preprocess PHOTOS",
                          "voxelstream CLI: dr preprocess PHOTOS --no-draft",
                          "seed's way: Pillow per image", "seed's way + JPEG draft")):
                out = wd / f"out-{rep}-{k}"
                shutil.rmtree(out, ignore_errors=True)
                if label.startswith("voxelstream CLI: dr preprocess PHOTOS"):
                    c = run_child(_cli("dr", "preprocess", str(src), "--store", str(out / "d.zarr"), "--radius",
                                       str(args.radius), *(["--no-draft"] if "no-draft" in label else [])))
                    wall, rss = c.wall_s, c.peak_rss_gib
                    stores[label] = out / "d.zarr"
                elif label.startswith("voxelstream CLI"):
                    a = run_child(_cli("ingest", str(src), "--store", str(out / "s.zarr")))
                    b = run_child(_cli("dr", "preprocess", "--store", str(out / "s.zarr"), "--radius", str(args.radius)))
                    wall, rss = a.wall_s + b.wall_s, max(a.peak_rss_gib, b.peak_rss_gib)
                    print(f"  ingest {a.wall_s:.1f} s {a.peak_rss_gib:.2f} GiB, preprocess {b.wall_s:.1f} s "
                          f"{b.peak_rss_gib:.2f} GiB", flush=True)
                else:
                    kind = "seed-draft" if "draft" in label else "seed"
                    c = run_child([me, "--child", kind, str(src), str(out / "png"), str(args.radius)])
                    wall, rss = c.wall_s, c.peak_rss_gib
                runs.setdefault(label, []).append((wall, rss))
                print(f"{label}: {wall:.1f} s, {args.n / wall:.2f} images/s, peak RSS {rss:.2f} GiB", flush=True)
        rows = ["| way | wall s (median) | images/s | peak RSS GiB (median) | runs (s) |", "|---|---|---|---|---|"]
        for label, rs in runs.items():
            wall = statistics.median(w for w, _ in rs)
            rows.append(f"| {label} | {wall:.1f} | {args.n / wall:.2f} | {statistics.median(r for _, r in rs):.2f} | "
                        f"{', '.join(f'{w:.1f}' for w, _ in rs)} |")
        diff = _draft_difference(stores["voxelstream CLI: dr preprocess PHOTOS"],
                                 stores["voxelstream CLI: dr preprocess PHOTOS --no-draft"])
        rows.append("")
        rows.append(f"Draft vs full-size decode, per output pixel over the {args.n} photographs: {diff}.")
        sections.append(("Ingest + preprocess", f"{args.n} synthetic fundus JPEGs of about {args.width} x "
                         f"{args.width * 3 // 4} px (quality 90) to (3, {2 * args.radius}, {2 * args.radius}); wall "
                         "time of fresh processes, imports included", "\n".join(rows)))

    if "decode" in args.parts:
        c = run_child([me, "--child", "decode", str(next(iter(sorted(src.glob("*.jpeg"))))), str(args.radius)])
        d = json.loads(c.last_line())
        rows = ["| decode | seconds (median of 5) | decoded shape |", "|---|---|---|"]
        rows += [f"| {k} | {v['s']:.3f} | {'x'.join(map(str, v['shape']))} |" for k, v in d.items()]
        sections.append(("JPEG decode, full size vs Pillow draft", "one photograph, Pillow open + load + RGB array",
                         "\n".join(rows)))

    if "train" in args.parts:
        rows = ["| augmentation | first epoch s (compiles) | steady images/s (median) | peak RSS GiB |", "|---|---|---|---|"]
        for augment in (True, False):
            c = run_child([me, "--child", "train", str(wd), str(args.train_n), str(args.radius), str(int(augment)),
                           str(args.epochs)])
            d = json.loads(c.last_line())
            rows.append(f"| {'on' if augment else 'off'} | {d['first_s']:.1f} | {statistics.median(d['per_s']):.1f} | "
                        f"{c.peak_rss_gib:.2f} |")
            print(rows[-1], flush=True)
        sections.append(("Training throughput", f"dr-vgg2d (channels 12-24-32-48-64), {2 * args.radius} px inputs, "
                         f"batch 16, {args.train_n} phantoms (80 % train), AdamW; epochs 2-{args.epochs}",
                         "\n".join(rows)))

    body = "\n\n".join(f"### {t}\n\n{notes}.\n\n{table}" for t, notes, table in sections)
    print(body)
    if args.append:
        title = ("Diabetic retinopathy: preprocessing and training throughput (issue 10, item 7)" if "train" in args.parts
                 else "Diabetic retinopathy: ingest + preprocess vs a Pillow loop (issue 10, item 7)")
        append_results(title,
                       "python benchmarks/bench_dr.py " + " ".join(sys.argv[1:]).replace("--append", "").strip(),
                       f"load average at start {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}.", body)


if __name__ == "__main__":
    main()
