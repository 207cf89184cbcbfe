"""Refusing outputs and reads whose declared size is absurd, before anything is allocated.

A header field or a parameter (a voxel size of 0.01 mm, a ``DimSize`` of 10^6) can ask for
terabytes; the engine would then allocate and compute for minutes before failing. Whoever
plans an output (a reader, ``ingest``, a task's preprocessing) calls
:func:`check_output_size` with the planned shape and a few words naming the cause; past
the limit it raises :class:`OutputTooLargeError` with one line such as
``--spacing 0.01 0.01 0.01 would write 6.7 TB (shape 1x30000x30000x1860 float32); the
limit is 1.1 TB: ...``.

The limit: ``VOXELSTREAM_MAX_OUTPUT_BYTES`` when set (a number of bytes, or with a unit:
``500GB``, ``2TiB``), otherwise :data:`DEFAULT_MAX_OUTPUT_BYTES` (1 TiB, far above any real
scan or photograph), or what a caller passes (e.g. from a ``--max-output-bytes`` option).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from .errors import VoxelstreamError

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "LIMIT_ENV",
    "OutputTooLargeError",
    "check_output_size",
    "format_bytes",
    "max_output_bytes",
    "parse_bytes",
    "planned_bytes",
]

DEFAULT_MAX_OUTPUT_BYTES = 2**40
LIMIT_ENV = "VOXELSTREAM_MAX_OUTPUT_BYTES"

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50}


class OutputTooLargeError(VoxelstreamError):
    """A planned output or read is larger than the configured limit."""


def parse_bytes(text: str | int) -> int:
    """``"500GB"``, ``"2 TiB"``, ``"1e12"`` or ``1000`` -> bytes; ``ValueError`` otherwise."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"{text!r} is not a size (examples: 500GB, 2TiB, 1000000)")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} is not a positive size")
    return int(value)


def max_output_bytes(limit: int | str | None = None) -> int:
    """The limit in force: ``limit`` when given, else ``$VOXELSTREAM_MAX_OUTPUT_BYTES``, else
    the default. A malformed environment value is an error naming the variable."""
    if limit is not None:
        return parse_bytes(limit)
    env = os.environ.get(LIMIT_ENV)
    if env:
        try:
            return parse_bytes(env)
        except ValueError as exc:
            raise OutputTooLargeError(f"{LIMIT_ENV}: {exc}") from None
    return DEFAULT_MAX_OUTPUT_BYTES


def format_bytes(n: float) -> str:
    """Decimal units, three significant digits: ``6.7 TB``, ``512 MB``, ``0 B``."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 100 else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} EB"  # pragma: no cover - the loop returns


def planned_bytes(shape: Sequence[int], dtype: DTypeLike) -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (exact Python integer, no overflow)."""
    n = 1
    for s in shape:
        n *= int(s)
    return n * np.dtype(dtype).itemsize


def check_output_size(
    shape: Sequence[int],
    dtype: DTypeLike,
    *,
    cause: str,
    limit: int | str | None = None,
    hint: str = "check the parameters, or raise the limit",
) -> int:
    """Raise :class:`OutputTooLargeError` when an array of ``shape``/``dtype`` would pass the
    limit (see :func:`max_output_bytes`); returns its size in bytes otherwise.

    ``cause`` names what asked for it, as the user wrote it (``"--spacing 0.01 0.01 0.01"``,
    ``"scan.mhd: DimSize 100000 100000 500"``); ``hint`` says what to do."""
    size = planned_bytes(shape, dtype)
    cap = max_output_bytes(limit)
    if size > cap:
        dims = "x".join(str(int(s)) for s in shape)
        raise OutputTooLargeError(
            f"{cause} would write {format_bytes(size)} (shape {dims} {np.dtype(dtype).name}); "
            f"the limit is {format_bytes(cap)}: {hint} ({LIMIT_ENV}=SIZE)"
        )
    return size
