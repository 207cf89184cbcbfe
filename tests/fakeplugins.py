"""Installing throw-away plugins for tests the way a user installs one: a distribution with
a ``voxelstream`` entry point (``*.dist-info/entry_points.txt``) and its module, found on
``sys.path`` (in this process) or ``PYTHONPATH`` (in a child running the console script)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from voxelstream import plugins

_ids = itertools.count()

#: The console script of this environment (what a user runs).
CONSOLE_SCRIPT = Path(sys.executable).parent / "voxelstream"


def unique(name: str) -> str:
    """A module name no earlier test imported (sys.modules would hand back the old one)."""
    return f"vsfake_{name}_{os.getpid()}_{next(_ids)}"


def install(root: Path, entry_points: dict[str, str], modules: dict[str, str] | None = None,
            dist: str | None = None) -> Path:
    """Write a distribution under ``root``: entry points ``{name: "module"}`` and module
    sources ``{module: source}``. Returns ``root`` (put it on sys.path / PYTHONPATH)."""
    dist = dist or unique("dist")
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[voxelstream]\n{lines}")
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


def activate(monkeypatch, root: Path) -> None:
    """Make this process see the distributions under ``root`` (undone after the test)."""
    monkeypatch.syspath_prepend(str(root))
    plugins.reset()


def run_cli(args: list[str], root: Path | None = None, env: dict[str, str] | None = None,
            merge: bool = False) -> subprocess.CompletedProcess:
    """Run the real console script in a fresh process, seeing the plugins under ``root``;
    ``merge`` sends stderr into stdout (to check what comes first)."""
    full = {k: v for k, v in os.environ.items() if k != "VOXELSTREAM_DEBUG"}
    full.update(env or {})
    if root is not None:
        full["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), full.get("PYTHONPATH")) if p)
    return subprocess.run([str(CONSOLE_SCRIPT), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merge else subprocess.PIPE, text=True, env=full, timeout=120)
