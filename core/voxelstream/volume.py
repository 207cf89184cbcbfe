"""The :class:`Volume` value: lazy voxel data plus the geometry that places it in the world."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from . import geometry

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

__all__ = ["Volume"]


def _json_safe(meta: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(meta)))
    except TypeError as exc:
        raise TypeError(f"Volume.meta must be JSON-able: {exc}") from None


@dataclass(frozen=True, eq=False)
class Volume:
    """A frozen, lazy image volume.

    Attributes:
        data: dask array with axes ``(z, y, x)``, optionally with a leading channel axis.
        spacing: voxel size in mm, ``(z, y, x)``.
        affine: 4x4; maps index ``(z, y, x, 1)`` to LPS world ``(x, y, z, 1)`` mm, direction
            cosines included. Its column norms equal ``spacing``.
        meta: plain JSON-able dict (modality, series_uid, source, units, stage history...).

    Build new volumes with :meth:`replace` (or a stage); never mutate one.
    """

    data: da.Array
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = self.data if isinstance(self.data, da.Array) else da.asarray(self.data)
        if data.ndim not in (3, 4):
            raise ValueError(f"Volume.data must be 3-D (z, y, x) or 4-D (c, z, y, x), got {data.shape}")
        aff = np.array(self.affine, dtype=float)
        if aff.shape != (4, 4) or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
            raise ValueError("Volume.affine must be an invertible 4x4 matrix")
        aff.setflags(write=False)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "affine", aff)
        object.__setattr__(self, "meta", _json_safe(self.meta))

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_itk_geometry(
        cls,
        data: da.Array | np.ndarray,
        *,
        spacing: Sequence[float],
        origin_xyz: Sequence[float] = (0.0, 0.0, 0.0),
        direction: Sequence[float] | np.ndarray | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Volume:
        """Volume from ``spacing`` (z, y, x), LPS ``origin_xyz`` and ITK's direction matrix."""
        return cls(data, geometry.affine_from_itk(origin_xyz, spacing, direction), dict(meta or {}))

    def replace(self, **changes: Any) -> Volume:
        """A copy with some fields changed (``data``, ``affine``, ``meta``)."""
        kw = {"data": self.data, "affine": self.affine, "meta": copy.deepcopy(self.meta)}
        kw.update(changes)
        return Volume(**kw)

    def with_history(self, entry: Mapping[str, Any], **changes: Any) -> Volume:
        """A copy with ``entry`` appended to ``meta["history"]`` (stages record themselves)."""
        meta = copy.deepcopy(changes.pop("meta", self.meta))
        meta.setdefault("history", []).append(dict(entry))
        return self.replace(meta=meta, **changes)

    # -- geometry ----------------------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm, ``(z, y, x)``."""
        return geometry.spacing_of(self.affine)

    @property
    def origin(self) -> tuple[float, float, float]:
        """World LPS position ``(x, y, z)`` of the centre of voxel ``(0, 0, 0)``."""
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """ITK-style 3x3 direction matrix (columns: world directions of x, y, z index axes)."""
        return np.asarray(geometry.affine_to_itk(self.affine)[2]).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return self.shape[-3:]  # type: ignore[return-value]

    def index_to_world(self, points_zyx: np.ndarray | Sequence) -> np.ndarray:
        """Index ``(z, y, x)`` (N, 3) -> world LPS ``(x, y, z)`` mm (N, 3)."""
        return geometry.index_to_world(self.affine, points_zyx)

    def world_to_index(self, points_xyz: np.ndarray | Sequence) -> np.ndarray:
        """World LPS ``(x, y, z)`` mm (N, 3) -> fractional index ``(z, y, x)`` (N, 3)."""
        return geometry.world_to_index(self.affine, points_xyz)

    # -- storage -----------------------------------------------------------------------
    def to_zarr(
        self,
        store_path: str,
        volume_id: str,
        name: str = "image",
        *,
        chunks: int | Sequence[int] | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> Store:
        """Stream this volume into the Zarr store at ``store_path`` as
        ``volumes/<volume_id>/<name>`` (an OME-Zarr image group) and return the store."""
        from .store import open_store

        store = open_store(store_path, create=True)
        store.write(self, volume_id, name, chunks=chunks, provenance=provenance)
        return store

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (
            f"Volume(shape={self.shape}, dtype={self.data.dtype}, spacing=({sp}) mm, "
            f"origin={tuple(round(v, 3) for v in self.origin)}, id={self.meta.get('id')!r})"
        )
