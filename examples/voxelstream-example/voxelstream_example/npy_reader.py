"""Reader ``npy``: a tiny image format, ``NAME.npy`` (the pixels) + ``NAME.json`` (the geometry).

The sidecar is a JSON object; every key is optional::

    {"spacing": [0.5, 0.5],      # per spatial axis, array order (default 1)
     "origin": [0.0, 0.0],       # world position of pixel 0, array order (default 0)
     "direction": null,          # ITK-style n x n matrix (default identity)
     "units": "mm",              # "mm" or "pixel" (default: "mm" with a spacing, else "pixel")
     "channel_axis": -1,         # the array axis holding channels (default: none, one channel)
     "modality": "SM"}           # DICOM Modality (SM: slide microscopy), recorded in meta

The array has 2 or 3 spatial axes (plus the channel axis when one is named). Pixels are read
chunk by chunk from a memory map when the dask graph runs: discovery reads only the ``.npy``
header and the sidecar.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["SUFFIX", "SIDECAR_KEYS", "claims", "discover", "open_volume", "write_npy_image"]

SUFFIX = ".npy"
SIDECAR_KEYS = ("spacing", "origin", "direction", "units", "channel_axis", "modality")
# chunk edge per spatial axis as read (the store rechunks on write): whole rows of a photo tile
_READ_CHUNK = {2: 512, 3: 64}


class NpyImageError(ValueError):
    """Why a ``.npy`` image cannot be read; one line for the user."""


def claims(path: Path) -> bool:
    """``*.npy`` (any case). Cheap: the name only, called for every file under an input."""
    return path.name.lower().endswith(SUFFIX) and len(path.name) > len(SUFFIX)


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name[: -len(SUFFIX)] + ".json")


def _read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_of(path)
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NpyImageError(f"no sidecar {side.name} beside it; write one, e.g. "
                            '{"spacing": [1, 1], "units": "pixel"}') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NpyImageError(f"sidecar {side.name} is not valid JSON ({exc}); fix or rewrite it") from None
    if not isinstance(doc, dict):
        raise NpyImageError(f"sidecar {side.name} must hold a JSON object, not {type(doc).__name__}")
    unknown = sorted(set(doc) - set(SIDECAR_KEYS))
    if unknown:  # a typo ("spacng") would otherwise silently give spacing 1
        raise NpyImageError(f"sidecar {side.name}: unknown keys {unknown} (known: {', '.join(SIDECAR_KEYS)})")
    return doc


class NpyPixels:
    """The pixels of one ``.npy`` file, as dask's ``from_array`` sees them: shape, dtype and
    slicing. Each slice maps the file and copies only that slice, so a chunk costs its own
    bytes. Picklable (a path, a shape and a dtype): it can travel to a dask.distributed worker."""

    def __init__(self, path: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.path, self.shape, self.dtype = path, shape, dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index: Any) -> Any:
        import numpy as np

        return np.array(np.load(self.path, mmap_mode="r")[index])


def open_volume(path: str) -> Any:
    """The lazy :class:`voxelstream.Volume` of ``NAME.npy`` + ``NAME.json``; raises
    :class:`NpyImageError` (one line) when either is unusable."""
    import dask.array as da
    import numpy as np

    import voxelstream as vs

    p = Path(path)
    side = _read_sidecar(p)
    try:
        header = np.load(p, mmap_mode="r")  # maps the file: reads the header, no pixel
    except (OSError, ValueError) as exc:
        raise NpyImageError(f"not a readable .npy array ({exc})") from None
    if header.dtype.kind not in "biuf":
        raise NpyImageError(f"pixels of type {header.dtype} are not supported (use integers or floats)")
    shape, dtype = tuple(header.shape), header.dtype
    del header
    channel_axis = side.get("channel_axis")
    if channel_axis is not None and (isinstance(channel_axis, bool) or not isinstance(channel_axis, int)):
        raise NpyImageError(f"sidecar {sidecar_of(p).name}: channel_axis must be an axis number or null, "
                            f"not {channel_axis!r}")
    spatial = [i for i in range(len(shape)) if channel_axis is None or i != channel_axis % max(len(shape), 1)]
    edge = _READ_CHUNK.get(len(spatial), 64)
    chunks = tuple(min(shape[i], edge) if i in spatial else shape[i] for i in range(len(shape)))
    # the graph key names this file as it is now: two files never share one, a rewritten file gets a new one
    st = p.stat()
    key = hashlib.sha256(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:20]
    data = da.from_array(NpyPixels(str(p), shape, dtype), chunks=chunks, meta=np.empty((0,) * len(shape), dtype),
                         lock=False, fancy=False, name=f"npy-{key}")
    units = side.get("units", "mm" if "spacing" in side else "pixel")
    meta = {"id": volume_id_for(p), "reader": "npy", "format": "npy"}
    if side.get("modality"):
        meta["modality"] = str(side["modality"]).upper()
    try:
        return vs.Volume.from_array(data, spacing=side.get("spacing"), origin=side.get("origin"),
                                    direction=side.get("direction"), units=units,
                                    channel_axis=channel_axis, meta=meta)
    except (TypeError, ValueError) as exc:  # wrong counts, bad units, 1-D or 4-D arrays
        raise NpyImageError(f"sidecar {sidecar_of(p).name} does not fit the array of shape {shape}: {exc}") from None


def volume_id_for(path: Path) -> str:
    """The file name without ``.npy`` (the store makes it safe as a path component)."""
    return path.name[: -len(SUFFIX)]


def discover(files: Sequence[Path], options: Any = None) -> Iterator[Any]:
    """One :class:`~voxelstream.Source` per readable ``.npy`` + sidecar, one
    :class:`~voxelstream.SourceError` per unreadable one (the others still go on)."""
    import voxelstream as vs

    for f in files:
        try:
            vol = open_volume(str(f))  # lazy: validates the header and sidecar, reads no pixel
        except NpyImageError as exc:
            yield vs.SourceError(str(f), str(exc))
            continue
        shape = "x".join(map(str, vol.shape))
        yield vs.Source(
            volume_id=volume_id_for(f),
            location=str(f),
            open=functools.partial(open_volume, str(f)),  # picklable: module function + str
            reader="npy",
            description=f"npy {shape} {vol.data.dtype} {vol.meta.get('modality', '')}".rstrip(),
        )


def write_npy_image(path: str | Path, array: Any, **sidecar: Any) -> Path:
    """Write ``array`` as ``path`` (``.npy``) and its sidecar (the keyword arguments, see
    :data:`SIDECAR_KEYS`); returns the ``.npy`` path. For tests and for users converting data."""
    import numpy as np

    unknown = sorted(set(sidecar) - set(SIDECAR_KEYS))
    if unknown:
        raise TypeError(f"unknown sidecar keys {unknown} (known: {', '.join(SIDECAR_KEYS)})")
    p = Path(path)
    if not claims(p):
        raise ValueError(f"{p}: the file name must end in {SUFFIX}")
    np.save(p, np.asarray(array))
    sidecar_of(p).write_text(json.dumps(sidecar, indent=2))
    return p
