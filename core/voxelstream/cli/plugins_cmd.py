"""``voxelstream plugins``."""

from __future__ import annotations

import argparse
import json

from ..errors import VoxelstreamError
from ..plugins import models, plugin_report, readers, stages, tasks
from ..specs import CommandSpec


def collect() -> dict:
    """What is installed, as the JSON form prints it (conflicts under ``errors``)."""
    out: dict = {
        "plugins": [
            {k: v for k, v in {"name": i.name, "version": i.version, "module": i.module, "error": i.error}.items() if v is not None}
            for i in plugin_report()
        ],
    }
    errors = []
    for key, fn in (("readers", lambda: [r.name for r in readers()]), ("stages", lambda: sorted(stages())),
                    ("models", lambda: sorted(models())), ("tasks", lambda: sorted(tasks()))):
        try:
            out[key] = fn()
        except VoxelstreamError as exc:
            out[key] = []
            errors.append(str(exc))
    if errors:
        out["errors"] = errors
    return out


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for p in info["plugins"]:
            status = f"  FAILED: {p['error']}" if "error" in p else ""
            print(f"{p['name']:<20} {p['version']:<12} {p['module']}{status}")
        for key in ("readers", "stages", "models", "tasks"):
            print(f"{key}: {', '.join(info[key]) or '-'}")
        for e in info.get("errors", []):
            print(f"error: {e}")
    return 1 if info.get("errors") else 0


COMMAND = CommandSpec(
    name="plugins",
    help="list installed plugins and what they register",
    add_arguments=lambda p: p.add_argument("--json", action="store_true", help="print JSON: {plugins, readers, stages, models, tasks}"),
    run=run,
)
