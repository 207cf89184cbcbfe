"""Turning volume ids and output names into safe store path components."""

from __future__ import annotations

import re

from ..errors import StoreError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_LEN = 200


def safe_id(raw: str, what: str = "volume id") -> str:
    """A path component that cannot escape the store: only ``[A-Za-z0-9._-]``, no leading
    dot (so never ``.`` or ``..``), at most 200 characters. Other characters become ``_``."""
    if not isinstance(raw, str) or not raw.strip():
        raise StoreError(f"empty {what}: give every volume a non-empty id")
    s = _UNSAFE.sub("_", raw.strip())
    if s.startswith("."):
        s = "_" + s
    return s[:MAX_LEN]
