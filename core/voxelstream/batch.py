"""What a per-volume run reports: one :class:`Outcome` per volume, the :class:`BatchReport`,
and the one-line description of an error (the loop itself is :mod:`voxelstream.runner`)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

from .errors import VoxelstreamError

__all__ = ["Outcome", "BatchReport", "describe_error"]


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
