"""Every ```python block of docs/plugins.md runs as written.

The blocks run in order in one namespace (later ones use names from earlier ones, as a reader
does), in a fresh Python process (the guide registers a plugin in-process and writes files)
whose working directory is a temporary folder. None is skipped. A failure names the block's
line in the guide: the code is compiled with the guide as its file name and its own lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"

_FENCE = re.compile(r"^```(\S*)\s*$")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first code line number, code)`` of every fenced ```python block, in order.
    An unclosed fence is an error (the rest of the guide would silently not be checked)."""
    blocks: list[tuple[int, str]] = []
    lang, start, lines = None, 0, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = _FENCE.match(line)
        if lang is None:
            if fence:
                lang, start, lines = fence.group(1) or "text", number + 1, []
        elif fence and not fence.group(1):
            if lang == "python":
                blocks.append((start, "\n".join(lines) + "\n"))
            lang = None
        else:
            lines.append(line)
    if lang is not None:
        raise AssertionError(f"{GUIDE.name}:{start - 1}: a ```{lang} fence is never closed")
    return blocks


# Runs in the child: compile each block with its own line numbers, so a traceback points
# into docs/plugins.md; print which block failed.
_DRIVER = textwrap.dedent("""
    import sys, traceback
    from test_docs_snippets import GUIDE, python_blocks

    namespace = {"__name__": "__guide__"}
    for start, code in python_blocks(GUIDE.read_text(encoding="utf-8")):
        try:
            exec(compile("\\n" * (start - 1) + code, str(GUIDE), "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: the block starting at {GUIDE.name}:{start}", file=sys.stderr)
            sys.exit(1)
    print("ALL BLOCKS RAN")
""")


def test_block_extraction_finds_python_blocks_only():
    text = "a\n```python\nx = 1\n```\n```console\n$ ls\n```\n```python\ny = 2\n\nz = 3\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (9, "y = 2\n\nz = 3\n")]


def test_the_guide_has_its_sections_and_closed_fences():
    text = GUIDE.read_text(encoding="utf-8")
    blocks = python_blocks(text)  # raises on an unclosed fence
    assert len(blocks) >= 10
    for topic in ("## 2. The hooks", "## 3. The Volume contract", "## 4. A reader", "## 5. A stage",
                  "## 6. A model", "## 7. A task with commands", "## 8. Which errors to raise",
                  "## 9. Testing with `voxelstream.testing`"):
        assert topic in text


def test_every_python_block_of_the_guide_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VOXELSTREAM_DEBUG"}
    env["VOXELSTREAM_PROGRESS"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", _DRIVER], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "ALL BLOCKS RAN" in out.stdout, out.stderr[-4000:]
