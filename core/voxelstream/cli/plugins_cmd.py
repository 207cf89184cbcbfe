"""``voxelstream plugins``: what is installed, which plugin registers each name, what failed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..plugins import KINDS, conflicts, models, plugin_report, readers, registrations, stages, tasks
from ..specs import CommandSpec, ReaderSpec, TaskSpec

__all__ = ["COMMAND", "collect"]


def _entry(regs: tuple[Any, ...]) -> dict[str, Any]:
    if len(regs) > 1:
        return {"plugins": [r.plugin for r in regs]}
    reg = regs[0]
    out: dict[str, Any] = {"plugin": reg.plugin}
    if reg.description:
        out["description"] = reg.description
    if isinstance(reg.spec, TaskSpec):
        out["modality"] = reg.spec.modality
        out["commands"] = [c.name for c in reg.spec.commands]
    return out


def _reader_order(item: tuple[str, tuple[Any, ...]]) -> tuple[int, str]:
    spec = item[1][0].spec
    return (-spec.priority if isinstance(spec, ReaderSpec) else 0, item[0])


def collect() -> dict[str, Any]:
    """What is installed, as ``--json`` prints it. Each kind maps a name to the plugin that
    registers it (``plugins`` and ``error`` when several do); failed plugins carry ``error``;
    ``errors`` lists every problem. Imports no lazily registered implementation."""
    report = plugin_report()  # calls every hook: their failures are part of the report
    out: dict[str, Any] = {"plugins": []}
    for kind in KINDS:
        regs = registrations(kind)
        items = sorted(regs.items(), key=_reader_order) if kind == "readers" else sorted(regs.items())
        out[kind] = {name: _entry(r) for name, r in items}
    for info in report:
        row: dict[str, Any] = {"name": info.name, "version": info.version, "module": info.module}
        row["registers"] = {k: [n for n, e in out[k].items() if info.name in (e.get("plugin"), *e.get("plugins", ()))]
                            for k in KINDS}
        if info.error:
            row["error"] = info.error
        out["plugins"].append(row)
    clashes = conflicts()
    for kind in KINDS:
        for name, entry in out[kind].items():
            if "plugins" in entry:
                entry["error"] = next(c for c in clashes if f" {name!r} is registered by" in c)
    out["errors"] = [f"plugin {i.name!r}: {i.error}" for i in report if i.error] + clashes
    return out


def _text(info: dict[str, Any]) -> list[str]:
    lines = []
    for p in info["plugins"]:
        status = f"  FAILED: {p['error']}" if "error" in p else ""
        lines.append(f"{p['name']:<20} {p['version']:<12} {p['module']}{status}")
    for kind in KINDS:
        names = [f"{n} [{e['plugin'] if 'plugin' in e else ' + '.join(e['plugins'])}]" for n, e in info[kind].items()]
        lines.append(f"{kind}: {', '.join(names) or '-'}")
    lines.extend(f"error: {e}" for e in info["errors"])
    return lines


def run(args: argparse.Namespace) -> int:
    if args.check:  # import every lazily registered spec: its failures join the report
        readers(), stages(), models(), tasks()
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(_text(info)))
    return 1 if info["errors"] else 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print JSON: plugins (name, version, module, registers, error), then readers, stages, "
                        "models and tasks, each {name: {plugin, ...}}, and errors")
    p.add_argument("--check", action="store_true",
                   help="also import what plugins register lazily (LazySpec), reporting those that fail "
                        "(slower: imports their dependencies)")


COMMAND = CommandSpec(
    name="plugins",
    help="list installed plugins, what each registers and which failed",
    description=(
        "List the plugins found through the 'voxelstream' entry-point group, their versions, and the\n"
        "readers, stages, models and tasks each registers. A plugin that fails to import, or whose\n"
        "hook raises, is shown with its error; two plugins registering one name is shown as an error\n"
        "naming both (that name fails where it is used; everything else works). Exit status 1 when\n"
        "anything failed."
    ),
    add_arguments=add_arguments,
    run=run,
)
