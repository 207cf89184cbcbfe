"""Keeping identifiers out of stores, manifests and terminals.

Two jobs, one module:

* **Origins without paths.** Archive layouts put names, record numbers and accession
  numbers into folder names, so by default a volume's origin is recorded as the reader, a
  salted hash of its source path, and the number and total size of its files
  (:func:`source_origin`); the path itself only when the user asks (``--keep-phi``). The
  hash lets a rerun recognise the same source; the salt (one per user, kept in a private
  file, see :func:`default_salt`) keeps a dictionary of likely paths from reversing it.
* **Printable text.** Ids and paths come from files and may hold terminal escape
  sequences, newlines or bidirectional overrides; :func:`printable` escapes them before
  anything is printed.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SALT_ENV", "default_salt", "printable", "redact_paths", "redactor", "salted_hash", "source_origin"]

#: Environment variable that, when set, is the salt (e.g. one salt shared by a cluster's
#: workers or by the machines writing one dataset).
SALT_ENV = "VOXELSTREAM_SALT"

# Unicode categories that change what a terminal shows rather than being shown: controls
# (ESC, BEL, newline, DEL, C1), format characters (bidi overrides, zero-width joiners) and
# line/paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(text: object) -> str:
    """``text`` with every control, format or separator character written as a Python-style
    escape (``\\x1b``, ``\\n``, ``\\u202e``), so that printing an id or a path can neither
    move the cursor, recolour the terminal nor start a new line. Other text is unchanged."""
    s = str(text)
    if s.isprintable():  # the common case: nothing to escape (isprintable is False for Cc/Cf/Z*)
        return s
    out = []
    for ch in s:
        if unicodedata.category(ch) in _HIDDEN:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def _config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "voxelstream"


def default_salt() -> bytes:
    """The salt of :func:`salted_hash`: ``$VOXELSTREAM_SALT`` when set, otherwise 32 random
    bytes kept in ``$XDG_CONFIG_HOME/voxelstream/salt`` (``~/.config``), created on first
    use readable by its owner only. Same user, same salt: reruns recognise their sources."""
    import secrets  # here: the CLI imports this module at every start, for printable()

    env = os.environ.get(SALT_ENV)
    if env:
        return env.encode()
    path = _config_dir() / "salt"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_bytes(32)
    tmp = path.with_name(f".salt-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(salt.hex())
    try:
        os.link(tmp, path)  # first writer wins; a concurrent process reads the winner's salt
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return bytes.fromhex(path.read_text().strip())


def salted_hash(text: str, salt: bytes | None = None) -> str:
    """``"hmac-sha256:"`` plus the first 32 hex digits of HMAC-SHA256(salt, text)."""
    import hashlib
    import hmac

    key = default_salt() if salt is None else salt
    digest = hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:32]}"


# an absolute path as it appears in a message: from a "/" up to whitespace, a quote or ": "
_PATH = re.compile(r"(?<![\w.])/[^\s'\"]+?(?=:\s|[\s'\"]|:?$)")


def redact_paths(text: str, roots: Sequence[str] = (), salt: bytes | None = None) -> str:
    """``text`` with every path replaced by ``<path hmac-sha256:...>`` (its salted hash):
    error messages name files, and file paths name patients. Paths under one of ``roots``
    (the inputs as the user gave them) are recognised whole, spaces included, up to a
    ``": "`` or the end; other absolute paths up to whitespace."""
    def hashed(m: re.Match[str]) -> str:
        return f"<path {salted_hash(m.group(0), salt)}>"

    for root in sorted({r for r in roots if r}, key=len, reverse=True):
        text = re.sub(re.escape(root) + r"(?:/[^\n]*?)?(?=: |['\"]|$)", hashed, text)
    return _PATH.sub(lambda m: m.group(0) if m.group(0).startswith("<path") else hashed(m), text)


def redactor(roots: Sequence[str] = ()) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function redacting the paths (under ``roots`` or absolute) of a manifest item
    (its ``item``, ``detail`` and text ``info`` values)."""
    def redact(item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        for key in ("item", "detail"):
            if isinstance(out.get(key), str):
                out[key] = redact_paths(out[key], roots)
        if isinstance(out.get("info"), dict):
            out["info"] = {k: redact_paths(v, roots) if isinstance(v, str) else v for k, v in out["info"].items()}
        return out
    return redact


def source_origin(
    reader: str,
    location: str | os.PathLike[str],
    files: Sequence[str | os.PathLike[str]] | Iterable[str | os.PathLike[str]] = (),
    *,
    keep_phi: bool = False,
    salt: bytes | None = None,
) -> dict[str, Any]:
    """How a volume's origin is recorded: ``{"reader", "source_hash", "files", "bytes"}``
    (``files``/``bytes``: how many files the volume was read from and their total size;
    ``location`` alone counts when ``files`` is empty), plus ``"source"`` (the absolute
    path) only with ``keep_phi``. ``source_hash`` hashes the absolute path, so the same
    input named two ways hashes alike."""
    where = os.path.abspath(os.fspath(location))
    paths = [os.fspath(f) for f in files] or [where]
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            pass  # a file that vanished: its size is unknown, the count still says it was there
    record: dict[str, Any] = {
        "reader": reader,
        "source_hash": salted_hash(where, salt),
        "files": len(paths),
        "bytes": total,
    }
    if keep_phi:
        record["source"] = where
    return record
