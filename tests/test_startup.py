"""Start-up stays cheap: listing commands and plugins imports no heavy module.

Guarded by what is imported, not by timing (timings: benchmarks/bench_startup.py). Each case
runs in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from voxelstream import plugins

from fakeplugins import CONSOLE_SCRIPT

#: What a start must not pay for: each costs 0.1-1.3 s to import on this machine.
HEAVY = ("dask", "zarr", "jax", "flax", "optax", "scipy", "SimpleITK", "pydicom", "numcodecs",
         "distributed", "matplotlib", "rich", "PIL", "sklearn", "numpy")

_PROBE = """
import json, sys
from voxelstream.cli.main import main
try:
    main(json.loads(sys.argv[1]))
except SystemExit:
    pass
with open(sys.argv[2], "w") as f:
    json.dump(sorted(sys.modules), f)
"""


def _heavy(modules) -> list[str]:
    return sorted({m for m in modules if m.split(".")[0] in HEAVY})


def _modules_after(argv: list[str], tmp_path) -> list[str]:
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if k != "VOXELSTREAM_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv), str(out)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def _tasks() -> list[str]:
    plugins.reset()
    return sorted(plugins.registrations("tasks"))


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["plugins", "--json"], ["--version"]]
                         + [[task, "--help"] for task in _tasks()])
def test_listing_imports_no_heavy_module(argv, tmp_path):
    modules = _modules_after(argv, tmp_path)
    assert "voxelstream.plugins" in modules  # the probe did run the CLI
    assert _heavy(modules) == [], f"voxelstream {' '.join(argv)} imported heavy modules"


def test_import_voxelstream_is_light_and_every_public_name_still_resolves(tmp_path):
    code = ("import json, sys, voxelstream as vs\n"
            "before = sorted(sys.modules)\n"
            "values = {n: type(getattr(vs, n)).__name__ for n in vs.__all__}\n"
            f"json.dump([before, values], open({str(tmp_path / 'o.json')!r}, 'w'))\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    before, values = json.loads((tmp_path / "o.json").read_text())
    assert _heavy(before) == []
    assert set(values) == set(__import__("voxelstream").__all__)
    assert values["Volume"] == "type" and values["open_store"] == "function" and values["__version__"] == "str"


def test_console_script_help_imports_no_heavy_module():
    """The real console script, as a user runs it, with Python's own import log."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "usage: voxelstream" in proc.stdout
    imported = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "voxelstream.cli.main" in imported
    assert _heavy(imported) == []


def test_store_command_with_nothing_to_do_imports_no_array_library(tmp_path):
    """Issue 13.2: a store command's fixed cost. Opening a store and finding no work reads JSON
    only; numpy (geometry) and dask (the scheduler) are allowed, zarr and dask.array are not."""
    import voxelstream as vs

    vs.open_store(tmp_path / "empty.zarr", create=True)
    modules = _modules_after(["ct", "preprocess", "--store", str(tmp_path / "empty.zarr")], tmp_path)
    assert "voxelstream.store.store" in modules  # it did open the store
    heavy = [m for m in _heavy(modules) if m.split(".")[0] not in ("numpy", "dask") or m.startswith("dask.array")]
    assert heavy == []


def _not_allowed(modules: list[str], allowed: tuple[str, ...]) -> list[str]:
    return [m for m in _heavy(modules) if m.split(".")[0] not in allowed or m.startswith(("dask.array", "scipy"))]


def test_one_scan_ingest_and_preprocess_build_no_dask_graph(tmp_path):
    """Issue 13.3: an uncompressed .mhd is ingested and then preprocessed (resample + window)
    through block sources and the store's direct writes: dask (dask.array: 0.3 s with the scipy
    modules it imports) is never imported, nor zarr-python, nor SimpleITK by the ingest. Outputs are checked
    against SimpleITK in test_itk_reader.py, test_resample.py and test_preprocess_cli.py."""
    import numpy as np
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 1000, (12, 20, 18)).astype(np.int16))
    img.SetSpacing((0.7, 0.7, 2.5))
    sitk.WriteImage(img, str(tmp_path / "scan.mhd"))
    store = str(tmp_path / "s.zarr")
    modules = _modules_after(["ingest", str(tmp_path / "scan.mhd"), "--store", store], tmp_path)
    assert "voxelstream.store.direct" in modules  # it did write
    # a plain .mhd header: no SimpleITK; no dask at all (its scheduler is set if it is imported)
    assert _not_allowed(modules, ("numpy", "numcodecs")) == []
    modules = _modules_after(["ct", "preprocess", "--store", store], tmp_path)
    assert "voxelstream_resample.source" in modules
    assert _not_allowed(modules, ("numpy", "numcodecs")) == []  # the input's chunks read without zarr
