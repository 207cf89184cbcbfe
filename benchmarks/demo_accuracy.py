"""The nodule demo with some of its settings changed: what each accuracy lever gives.

    .venv/bin/python benchmarks/demo_accuracy.py OUT [key=value ...]

``key`` is a field of ``voxelstream_nodules.demo_cmd.DemoConfig`` (``stitch=0``,
``near_misses=0``, ``flips=False``, ``train_scans=16``, ``train_nodules=(1,3)``,
``lung_margin_mm=None`` ...); values are Python literals. Phantoms already generated in OUT
are reused (same seed and counts give the same files, so ingest and preprocess skip them);
everything after preprocessing runs again. Prints the demo's table; ``OUT/summary.json`` has
the numbers (CPM under the LUNA16 protocol, ``cpm_distractors_as_fp`` with every mark on a
distractor counted as a false positive, FP/scan at the fixed sensitivity).
"""
from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import voxelstream_ct.phantom as phantom
from voxelstream_nodules.demo_cmd import DemoConfig, run_demo

_generate = phantom.generate_dataset


def _reuse(out_dir, n, **kw):
    ann = Path(out_dir) / "annotations.csv"
    if ann.exists() and len({ln for ln in (Path(out_dir) / "seriesuids.csv").read_text().split()}) == n:
        return ann
    return _generate(out_dir, n, **kw)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    out = Path(argv[0])
    kw = {}
    for arg in argv[1:]:
        key, value = arg.split("=", 1)
        if key not in DemoConfig.__dataclass_fields__:
            print(f"error: {key}: not a DemoConfig field ({', '.join(DemoConfig.__dataclass_fields__)})")
            return 2
        kw[key] = value if key == "scheduler" else ast.literal_eval(value)
    cfg = DemoConfig(**kw)
    for stale in ("cubes.zarr", "model-round0", "model-round1"):
        shutil.rmtree(out / stale, ignore_errors=True)
    phantom.generate_dataset = _reuse
    print(cfg)
    run_demo(out, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
