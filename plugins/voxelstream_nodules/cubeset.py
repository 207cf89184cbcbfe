"""The cube set: a Zarr v3 group of training cubes that can grow (mining appends to it).

Layout of ``CUBES/``::

    cubes      (N, D, H, W) array, one chunk per cube, so reading a cube reads one chunk
    labels     (N,) uint8, 1 = nodule
    index.csv  series_uid,label,kind,world_x,world_y,world_z  (one row per cube, same order)
    zarr.json  attributes under "voxelstream": cube_mm, spacing, pad_value, count

``count`` is updated after the arrays and the index, so an interrupted append leaves a set
whose extra rows are ignored rather than a set whose rows point at missing cubes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from voxelstream.errors import VoxelstreamError
from voxelstream.store import default_compressor

__all__ = ["CubeRecord", "CubeSet", "KINDS", "CubeSetError"]

KINDS = ("positive", "augmented", "negative", "hard_negative", "near_miss")
INDEX_COLUMNS = ("series_uid", "label", "kind", "world_x", "world_y", "world_z")


class CubeSetError(VoxelstreamError):
    """A cube set is missing or does not match what is appended to it."""


@dataclass(frozen=True)
class CubeRecord:
    """One row of ``index.csv``: which series, its label and kind, the cube centre in world mm."""

    series_uid: str
    label: int
    kind: str
    world_x: float
    world_y: float
    world_z: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"cube kind must be one of {KINDS}, got {self.kind!r}")


class CubeSet:
    """A cube set on disk (use :meth:`create` or :meth:`open`)."""

    def __init__(self, path: str | Path, group: zarr.Group):
        self.path = Path(path)
        self._group = group
        self._cubes = group["cubes"]
        self._labels = group["labels"]

    # -- construction ------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        cube_shape: Sequence[int],
        dtype: Any,
        attrs: Mapping[str, Any] | None = None,
    ) -> CubeSet:
        """A new, empty cube set at ``path`` (an existing one is replaced)."""
        shape = tuple(int(s) for s in cube_shape)
        group = zarr.open_group(store=str(path), mode="w", zarr_format=3)
        group.create_array("cubes", shape=(0, *shape), chunks=(1, *shape), dtype=dtype,
                           compressors=default_compressor(), fill_value=0)
        group.create_array("labels", shape=(0,), chunks=(4096,), dtype="uint8", fill_value=0)
        group.attrs["voxelstream"] = {"kind": "cubeset", "cube_shape": list(shape), "count": 0,
                                      **dict(attrs or {})}
        Path(path, "index.csv").write_text(",".join(INDEX_COLUMNS) + "\n")
        return cls(path, group)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> CubeSet:
        """Open an existing cube set (``mode="a"`` to append)."""
        p = Path(path)
        try:
            group = zarr.open_group(store=str(p), mode=mode, zarr_format=3)
            ok = group.attrs.get("voxelstream", {}).get("kind") == "cubeset"
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
            ok = False
        if not ok or not (p / "index.csv").exists():
            raise CubeSetError(f"{p}: not a cube set; make one with 'voxelstream nodules cubes'")
        return cls(p, group)

    # -- description -------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs["voxelstream"])

    @property
    def cube_shape(self) -> tuple[int, int, int]:
        return tuple(self.attrs["cube_shape"])  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self._cubes.dtype

    def __len__(self) -> int:
        return int(self.attrs["count"])

    def labels(self) -> np.ndarray:
        """All labels (N,) uint8."""
        return np.asarray(self._labels[: len(self)])

    def records(self) -> list[CubeRecord]:
        """All index rows, in cube order."""
        with open(self.path / "index.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))[: len(self)]
        return [
            CubeRecord(r["series_uid"], int(r["label"]), r["kind"],
                       float(r["world_x"]), float(r["world_y"]), float(r["world_z"]))
            for r in rows
        ]

    # -- reading -----------------------------------------------------------------------
    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Cubes ``indices`` (any order) as one array (len(indices), D, H, W)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return np.zeros((0, *self.cube_shape), dtype=self.dtype)
        order = np.argsort(idx, kind="stable")
        got = self._cubes.get_orthogonal_selection((idx[order],))
        out = np.empty_like(got)
        out[order] = got
        return out

    def batches(self, indices: Sequence[int] | np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(cubes, labels)`` batches over ``indices`` in the given order; only one batch is
        in memory at a time."""
        idx = np.asarray(indices, dtype=np.int64)
        labels = self.labels()
        for start in range(0, len(idx), batch_size):
            part = idx[start : start + batch_size]
            yield self.read(part), labels[part]

    # -- writing -----------------------------------------------------------------------
    def append(self, cubes: np.ndarray, records: Sequence[CubeRecord]) -> None:
        """Append cubes (n, D, H, W) and their index rows (labels come from the rows)."""
        cubes = np.asarray(cubes)
        if cubes.shape[1:] != self.cube_shape or len(cubes) != len(records):
            raise CubeSetError(
                f"{self.path}: cannot append {len(records)} rows with cubes of shape {cubes.shape}: "
                f"this set holds cubes of {self.cube_shape}; build them with the same --cube-mm and spacing"
            )
        if not len(records):
            return
        n = len(self)
        self._cubes.resize((n + len(cubes), *self.cube_shape))
        self._cubes[n:] = cubes.astype(self.dtype, copy=False)
        self._labels.resize((n + len(cubes),))
        self._labels[n:] = np.array([r.label for r in records], dtype=np.uint8)
        self._truncate_index(n)
        with open(self.path / "index.csv", "a", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(
                (r.series_uid, r.label, r.kind, *(f"{v:.4f}" for v in astuple(r)[3:])) for r in records
            )
        attrs = self.attrs
        attrs["count"] = n + len(cubes)
        self._group.attrs["voxelstream"] = attrs

    def _truncate_index(self, n: int) -> None:
        # rows past ``count`` are leftovers of an interrupted append: drop them first
        lines = (self.path / "index.csv").read_text().splitlines(keepends=True)
        if len(lines) > n + 1:
            (self.path / "index.csv").write_text("".join(lines[: n + 1]))
