"""Where things live in a store and how its metadata documents are read and written.

Layout::

    <store>/zarr.json                            root group; attributes.voxelstream.kind == "store"
    <store>/volumes/<volume>/zarr.json           volume group (its original id)
    <store>/volumes/<volume>/<output>/zarr.json  OME-Zarr 0.5 image group + ``voxelstream`` attrs
    <store>/volumes/<volume>/<output>/0/         the array (chunks ``c/...``)
    <store>/runs/<time>-<command>.json           one manifest per run
    <store>/.staging/<volume>/<output>-<token>/  an output being written (moved into place whole)
    <store>/.locks/<volume>/<output>.lock        per-output writer lock (see locks.py)

Documents are written to a temporary name and renamed, so a reader (or a crash) sees the old
document or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .ids import safe_id

__all__ = [
    "STORE_KIND", "LAYOUT", "output_rel", "volume_rel", "read_doc", "write_doc", "jsonable", "foreign_reason",
    "group_doc",
]

STORE_KIND = "store"
LAYOUT = 2
ARRAY = "0"  # the array's path inside an output group (the OME dataset path)


def volume_rel(volume_id: str) -> str:
    return f"volumes/{safe_id(volume_id)}"


def output_rel(volume_id: str, name: str) -> str:
    return f"{volume_rel(volume_id)}/{safe_id(name, 'output name')}"


def staging_rel(volume_id: str, name: str, token: str) -> str:
    return f"{staging_dir_rel(volume_id)}/{safe_id(name, 'output name')}-{token}"


def staging_dir_rel(volume_id: str) -> str:
    """The folder holding the volume's staged outputs (of every output name)."""
    return f".staging/{safe_id(volume_id)}"


def new_token() -> str:
    """A fresh write token (32 hex digits): names the staged folder, marks the completed output."""
    return uuid.uuid4().hex


#: The suffix of a replaced output's copy, moved aside beside the staged folder that replaced it.
OLD_SUFFIX = ".old"


def is_staged(name: str, entry: str) -> bool:
    """Whether ``entry`` (a name in :func:`staging_dir_rel`) is a staged folder of output
    ``name`` or its replaced copy: ``<name>-<token>[.old]``. Output ``a``'s entries never
    include ``a-b``'s, whose lock is another."""
    return re.fullmatch(re.escape(safe_id(name, "output name")) + r"-[0-9a-f]{32}" + f"({re.escape(OLD_SUFFIX)})?",
                        entry) is not None


def lock_rel(volume_id: str, name: str) -> str:
    return f".locks/{safe_id(volume_id)}/{safe_id(name, 'output name')}.lock"


def read_doc(path: Path, what: str) -> dict[str, Any] | None:
    """The JSON document at ``path`` (``None`` when absent); a garbled one is a
    :class:`StoreError` naming ``what`` (e.g. ``"scan-1: output 'iso'"``)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        raise StoreError(f"{what}: cannot read {path.name} ({exc.strerror})") from None
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{what}: its metadata {path} is damaged (not JSON: {exc}); "
                         "run 'voxelstream verify --repair' and re-run the command that makes it") from None
    if not isinstance(doc, dict):
        raise StoreError(f"{what}: its metadata {path} is damaged (not a JSON object)")
    return doc


def _plain(o: Any) -> Any:
    return o.tolist() if hasattr(o, "tolist") else str(o)


def jsonable(obj: Any) -> Any:
    """``obj`` as JSON would give it back (tuples -> lists, numpy -> Python): what is stored
    and therefore what stored values are compared with."""
    return json.loads(json.dumps(obj, default=_plain))


def write_doc(path: Path, doc: dict[str, Any], *, atomic: bool = True) -> None:
    """Write ``doc`` as JSON to a temporary name beside ``path``, then rename it into place.
    ``atomic=False`` writes ``path`` itself: for documents in a folder nobody reads until it is
    moved into place whole (``.staging``), where a temporary name and a rename are two more
    metadata operations per document for nothing."""
    target = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp") if atomic else path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w") as f:
            f.write(json.dumps(doc, indent=2, default=_plain))
        if atomic:
            os.replace(target, path)
    except OSError as exc:
        if atomic:
            try:
                target.unlink()
            except OSError:
                pass
        raise StoreError(f"{path}: cannot write ({exc.strerror or exc}); is the store read-only or its disk full?") from None


def group_doc(attributes: dict[str, Any]) -> dict[str, Any]:
    """A Zarr v3 group document."""
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def foreign_reason(root: Path) -> str | None:
    """Why the directory ``root`` is not a voxelstream store (``None`` when it is one).
    Reads only."""
    if (root / ".zgroup").exists() or (root / ".zarray").exists():
        return "a Zarr v2 store (voxelstream stores are Zarr v3 and made by 'voxelstream ingest')"
    doc = read_doc(root / "zarr.json", f"{root}")
    if doc is None:
        return "no zarr.json; create a store with 'voxelstream ingest'"
    if doc.get("node_type") == "array":
        return "a bare Zarr array, not a voxelstream store"
    attrs = doc.get("attributes") or {}
    vs = attrs.get("voxelstream")
    if not isinstance(vs, dict) or vs.get("kind") != STORE_KIND:
        made = "an OME-Zarr image" if ("ome" in attrs or "multiscales" in attrs) else "a Zarr group"
        return f"{made} made by another tool, not a voxelstream store; voxelstream leaves it untouched"
    return None
