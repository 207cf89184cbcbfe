"""Peak memory of ``voxelstream ingest`` on hostile inputs (issue 11, item 4).

Three inputs, each ingested by a fresh ``voxelstream ingest`` child whose peak RSS
(``os.wait4``) is recorded:

* **decompression bomb**: a 2 GiB NIfTI-1 volume (1024^3 uint16, all zero) gzip-compressed
  to about 2 MB: inflated once, sequentially, block by block into the store's chunks;
* **sparse .raw**: a MetaImage whose DimSize promises 4 GiB (4096 x 4096 x 128 int16) of a
  sparse file holding almost nothing; and the same header scaled to 100000^2 x 1000
  (20 TB), which must be refused up front by the output limit;
* **a 20000 x 20000 slice** (uint8, 400 MB): read in bands of rows, not as one block.

The alternative a user would pick, ``SimpleITK.ReadImage`` on the same file, holds the
whole image (2 GiB / 4 GiB / 400 MB) and is recorded side by side where it fits in memory.
Usage: ``python benchmarks/bench_hostile.py [--out DIR] [--no-record]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import struct
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import append_results, run_child  # noqa: E402

GIB = 2**30


def nifti_header(dims: tuple[int, int, int], datatype: int = 512, bitpix: int = 16) -> bytes:
    """A minimal little-endian NIfTI-1 header (+ 4 extension bytes) for ``dims`` (x, y, z)."""
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, 3, *dims, 1, 1, 1, 1)
    struct.pack_into("<hh", h, 70, datatype, bitpix)
    struct.pack_into("<8f", h, 76, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0)
    struct.pack_into("<f", h, 108, 352.0)
    struct.pack_into("<f", h, 112, 1.0)  # scl_slope 1, scl_inter 0: no scaling
    h[344:348] = b"n+1\0"
    return bytes(h)


def write_bomb(path: Path, dims=(1024, 1024, 1024)) -> int:
    """The gzip bomb: header then zeros, compressed while streaming (never whole in memory)."""
    total = dims[0] * dims[1] * dims[2] * 2
    zeros = bytes(64 * 2**20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(nifti_header(dims))
        left = total
        while left:
            n = min(left, len(zeros))
            f.write(zeros[:n])
            left -= n
    return total


def write_sparse_mhd(folder: Path, name: str, dims: tuple[int, int, int], element: str = "MET_SHORT",
                     itemsize: int = 2, mark: bool = True, file_bytes: int | None = None) -> Path:
    """A .mhd + sparse .raw of ``dims``; ``file_bytes``: a shorter .raw (for sizes no file
    system holds: the size limit refuses them before the file is looked at)."""
    raw = folder / f"{name}.raw"
    size = file_bytes or dims[0] * dims[1] * dims[2] * itemsize
    with open(raw, "wb") as f:
        f.truncate(size)
        if mark:  # one non-zero voxel in the middle, so the store holds something to check
            f.seek(size // 2)
            f.write(b"\x07")
    (folder / f"{name}.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"CompressedData = False\nElementSpacing = 0.5 0.5 1\nDimSize = {dims[0]} {dims[1]} {dims[2]}\n"
        f"ElementType = {element}\nElementDataFile = {name}.raw\n")
    return folder / f"{name}.mhd"


def ingest(path: Path, store: Path, *extra: str):
    shutil.rmtree(store, ignore_errors=True)
    return run_child(["-m", "voxelstream.cli.main", "ingest", str(path), "--store", str(store), *extra], check=False)


def sitk_read(path: Path):
    code = "import sys, SimpleITK as s; a = s.GetArrayViewFromImage(s.ReadImage(sys.argv[1])); print(a.shape)"
    return run_child(["-c", code, str(path)], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--skip-sitk", action="store_true", help="do not run the SimpleITK comparison")
    ap.add_argument("--only", default="", help="run only the cases whose label contains this text")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="bench-hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        def bomb() -> tuple[Path, str]:
            path = work / "bomb.nii.gz"
            inflated = write_bomb(path)
            return path, f"{path.stat().st_size / 1e6:.1f} MB -> {inflated / GIB:.0f} GiB"

        cases = [("decompression bomb: 1024^3 uint16 .nii.gz", bomb, ()),
                 ("sparse .raw: DimSize 4096 4096 128 int16",
                  lambda: (write_sparse_mhd(work, "sparse", (4096, 4096, 128)), "4 GiB declared, ~0 on disk"), ()),
                 ("sparse .raw: DimSize 100000 100000 1000 int16",
                  lambda: (write_sparse_mhd(work, "absurd", (100000, 100000, 1000), mark=False, file_bytes=2**20),
                           "20 TB declared: refused by the limit"), ()),
                 ("20000 x 20000 slice, uint8",
                  lambda: (write_sparse_mhd(work, "slice", (20000, 20000, 1), "MET_UCHAR", 1), "400 MB slice"),
                  ("--chunks", "256"))]
        for label, make, extra in cases:
            if args.only not in label:
                continue
            path, what = make()
            run = ingest(path, work / "store.zarr", *extra)
            ok = run.returncode == 0
            line = (run.stderr.strip().splitlines() or [""])[-1] if not ok else ""
            ref = None if args.skip_sitk or "100000" in label else sitk_read(path)
            rows.append({"case": label, "input": what, "exit": run.returncode, "wall_s": round(run.wall_s, 1),
                         "peak_rss_gib": round(run.peak_rss_gib, 3), "message": line[:160],
                         "sitk_peak_rss_gib": None if ref is None else round(ref.peak_rss_gib, 3),
                         "sitk_exit": None if ref is None else ref.returncode})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    if args.no_record:
        return
    body = ["| input | what | ingest exit | wall s | ingest peak RSS GiB | SimpleITK.ReadImage peak RSS GiB | target |",
            "|---|---|---|---|---|---|---|"]
    for r in rows:
        sitk = "-" if r["sitk_peak_rss_gib"] is None else f"{r['sitk_peak_rss_gib']:.2f}"
        met = "met" if r["peak_rss_gib"] <= 1.0 else "**missed**"
        body.append(f"| {r['case']} | {r['input']} | {r['exit']} | {r['wall_s']} | {r['peak_rss_gib']:.2f} | {sitk} | "
                    f"<= 1 GiB: {met} |")
    refused = [r for r in rows if r["exit"] != 0]
    notes = ("each ingest a fresh `voxelstream ingest` child, peak RSS from os.wait4; SimpleITK column: "
             "`SimpleITK.ReadImage` of the same file in its own child (what a user would call instead).")
    if refused:
        body.append("")
        body += [f"- {r['case']}: `{r['message']}`" for r in refused]
    append_results("Hostile inputs: peak RSS of ingest (issue 11, item 4)", "python benchmarks/bench_hostile.py",
                   notes, "\n".join(body))


if __name__ == "__main__":
    main()
