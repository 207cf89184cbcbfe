"""What every benchmark here shares: a fresh measured child process and the machine line.

Each measured run happens in its own process so that peak RSS (``ru_maxrss`` from
``os.wait4``, the same figure ``/usr/bin/time -v`` prints) belongs to that run alone.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30


@dataclass(frozen=True)
class ChildRun:
    """One finished child: its output, wall and CPU seconds, and peak RSS."""

    stdout: str
    stderr: str
    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_gib: float

    def last_line(self) -> str:
        """The child's last stdout line (where the benchmarks print their JSON answer)."""
        lines = self.stdout.strip().splitlines()
        return lines[-1] if lines else ""


def run_child(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> ChildRun:
    """Run ``python argv...`` in a fresh process and measure it (imports included)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a chatty child cannot block
        proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=err,
                                env={**os.environ, **(env or {})}, text=True)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # reaps the child with its own rusage
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    wall = time.perf_counter() - t0
    if check and code:
        raise SystemExit(f"child {argv} failed ({code}):\n{stderr[-2000:]}")
    return ChildRun(stdout, stderr, code, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / GIB)


def machine() -> str:
    """One line: host, cores, CPU model, RAM, Python."""
    cpu = "unknown CPU"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}"


def append_results(title: str, command: str, notes: str, body: str) -> None:
    """Append a section to ``benchmarks/RESULTS.md``: title with today's date, the command,
    this machine, ``notes`` on the setup, then ``body`` (a Markdown table)."""
    with open(Path(__file__).with_name("RESULTS.md"), "a") as fh:
        fh.write(f"\n## {title} ({dt.date.today()})\n\nCommand: `{command}`  \nMachine: {machine()}; "
                 f"{notes}\n\n{body}\n")
