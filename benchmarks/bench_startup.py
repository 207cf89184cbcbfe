"""Start-up benchmark (issue 13, items 1, 2 and 4): one fresh process per command, as a user
runs it from a shell or a job scheduler.

Per command: one warm-up run (file cache), then the median of ``--runs`` runs of wall time,
CPU time and peak RSS (``os.wait4``, as ``/usr/bin/time -v``). Side by side:

* ``python -c pass``: the floor, a bare interpreter start;
* the console script now: ``--help``, ``TASK --help`` for ``ct`` and ``nodules``, ``plugins``,
  and ``ct preprocess`` on an empty store (the fixed cost of a store command with nothing to do);
* with ``--before REV``: the same work at git revision REV (a worktree put first on
  ``PYTHONPATH``; its flat command names: ``preprocess`` for ``ct preprocess``).

Targets: <= 0.3 s for the listing commands, <= 0.6 s for the empty-store command.

    .venv/bin/python benchmarks/bench_startup.py [--runs 5] [--before 452ba1b] [--append]

``--append`` adds the table, the command, the date and the machine to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import append_results, machine, run_child

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = Path(sys.executable).parent / "voxelstream"  # the console script of this environment

TARGETS = {"store": 0.6, "listing": 0.3}


def cases(store: str) -> list[tuple[str, str, list[str], list[str] | None]]:
    """(label, kind, argv now, argv at the old revision or None) per measured command. On an
    empty store ``preprocess`` answers with one error line and status 1 ("ingest first"):
    opening the store, plugins and the command's modules is all it does."""
    return [
        ("voxelstream --help", "listing", ["--help"], ["--help"]),
        ("voxelstream ct --help", "listing", ["ct", "--help"], None),
        ("voxelstream nodules --help", "listing", ["nodules", "--help"], None),
        ("voxelstream plugins", "listing", ["plugins"], ["plugins"]),
        ("voxelstream ct preprocess (empty store)", "store", ["ct", "preprocess", "--store", store],
         ["preprocess", "--store", store]),
    ]


def measure(argv: list[str], runs: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """Median wall, CPU and peak RSS of ``python argv`` over ``runs`` runs after a warm-up."""
    run_child(argv, env=env, check=False)
    done = [run_child(argv, env=env, check=False) for _ in range(runs)]
    # 1 with one "error:" line is the empty store's answer; anything else is a broken run
    bad = [r for r in done if r.returncode != 0 and not (r.returncode == 1 and r.stderr.startswith("error:"))]
    if bad:
        raise SystemExit(f"{argv} failed ({bad[0].returncode}):\n{bad[0].stderr[-2000:]}")
    return {
        "wall": statistics.median(r.wall_s for r in done),
        "cpu": statistics.median(r.cpu_s for r in done),
        "rss": statistics.median(r.peak_rss_gib for r in done) * 1024,
        "min": min(r.wall_s for r in done),
        "max": max(r.wall_s for r in done),
    }


def empty_store(path: Path) -> str:
    """A store with no volume (made by the engine, so the command accepts it)."""
    code = "import sys, voxelstream as vs; vs.open_store(sys.argv[1], create=True)"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    return str(path)


def worktree(rev: str, where: Path) -> dict[str, str]:
    """The environment that runs revision ``rev``'s engine and plugins instead of this tree's.

    Installed plugins that revision does not have (their entry points stay installed) are
    shadowed by packages that fail to import: ``rev``'s engine skips them (as it would have then)
    instead of loading today's code against the old engine."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where / "tree"), rev],
                   check=True, capture_output=True)
    shadow = where / "shadow"
    for ep in _entry_points():
        package = ep.value.split(".")[0]
        if not any((where / "tree" / d / package).is_dir() for d in ("core", "plugins")):
            (shadow / package).mkdir(parents=True, exist_ok=True)
            # raising: an empty package would let the editable finder load today's submodules
            (shadow / package / "__init__.py").write_text(f"raise ImportError('no {package} at {rev}')\n")
    path = os.pathsep.join([str(shadow), str(where / "tree" / "core"), str(where / "tree" / "plugins")])
    return {"PYTHONPATH": path}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="measured runs per command after one warm-up (default 5)")
    ap.add_argument("--before", metavar="REV", help="also measure git revision REV (e.g. the commit before the change)")
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vs-startup-"))
    # bytecode is cached as after a pip install (the warm-up run writes it), but under the
    # temporary folder: this environment may set PYTHONDONTWRITEBYTECODE, which would
    # measure compiling every module at every start
    env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(work / "pycache")}
    try:
        store = empty_store(work / "empty.zarr")
        old_env = {**env, **worktree(args.before, work / "before")} if args.before else None
        rows = [("python -c pass (floor)", "-", measure(["-c", "pass"], args.runs, env), None)]
        for label, kind, now, old in cases(store):
            before = measure([str(SCRIPT), *old], args.runs, old_env) if old_env and old else None
            rows.append((label, kind, measure([str(SCRIPT), *now], args.runs, env), before))
            print(f"{label}: {rows[-1][2]['wall']:.3f} s", file=sys.stderr, flush=True)
    finally:
        if args.before:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "before" / "tree")],
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    head = "| command | target | wall median (min-max) | CPU | peak RSS |" + (
        f" wall at {args.before} | CPU at {args.before} | speed-up (wall) |" if args.before else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, kind, m, before in rows:
        target = f"<= {TARGETS[kind]} s" if kind in TARGETS else "-"
        line = (f"| `{label}` | {target} | {m['wall']:.3f} s ({m['min']:.3f}-{m['max']:.3f}) | {m['cpu']:.3f} s "
                f"| {m['rss']:.0f} MiB |")
        if args.before:
            line += (f" {before['wall']:.3f} s | {before['cpu']:.3f} s | {before['wall'] / m['wall']:.1f}x |"
                     if before else " - | - | - |")
        lines.append(line)
    table = "\n".join(lines)
    print(table)
    print(machine())
    if args.append:
        command = " ".join([".venv/bin/python benchmarks/bench_startup.py", *sys.argv[1:]])
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        append_results(
            "Start-up: one process per command (issue 13, items 1, 2 and 4)", command,
            f"load average at the end {load}; median of {args.runs} runs after a warm-up, each a fresh "
            "process; installed plugins: " + ", ".join(sorted(ep.name for ep in _entry_points())), table)


def _entry_points() -> list:
    import importlib.metadata as md

    return list(md.entry_points(group="voxelstream"))


if __name__ == "__main__":
    main()
