"""Running one job per volume so that a bad input is reported and the others finish."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .errors import VoxelstreamError
from .privacy import printable

__all__ = ["Outcome", "BatchReport", "run_batch", "describe_error"]


@dataclass
class Outcome:
    """What happened to one item: ``status`` is ``done``, ``skipped`` or ``failed``."""

    item: str
    status: str
    detail: str = ""
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchReport:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_record(self) -> dict[str, Any]:
        return {"items": [o.__dict__ for o in self.outcomes]}


def describe_error(exc: BaseException) -> str:
    """One line for a user: our own errors as they are, anything else with its type."""
    if isinstance(exc, VoxelstreamError):
        return str(exc)
    if isinstance(exc, (OSError, ValueError)):
        return f"{type(exc).__name__}: {exc}"
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return f"unexpected error ({last}); please report it with the input that caused it"


def run_batch(
    items: Iterable[tuple[str, Callable[[], Outcome | None]]],
    *,
    err: TextIO | None = None,
    label: str = "",
    verbose_errors: bool = False,
) -> BatchReport:
    """Run each ``(name, job)``; a job returns an :class:`Outcome` (or None for done) or
    raises. Failures print ``error: NAME: reason`` on stderr and the batch goes on."""
    err = err or sys.stderr
    report = BatchReport()
    for name, job in items:
        t0 = time.perf_counter()
        try:
            outcome = job() or Outcome(name, "done")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one bad input must not stop the batch
            outcome = Outcome(name, "failed", describe_error(exc))
            print(printable(f"error: {name}: {outcome.detail}"), file=err, flush=True)
            if verbose_errors:
                traceback.print_exc(file=err)
        outcome.seconds = round(time.perf_counter() - t0, 3)
        report.outcomes.append(outcome)
    return report
