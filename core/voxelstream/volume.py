"""The :class:`Volume` value: lazy, channel-first image data plus the geometry that places it
in the world. 2 or 3 spatial axes; any number of channels."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
import threading
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any

import numpy as np

from . import geometry

if TYPE_CHECKING:  # pragma: no cover
    import dask.array as da

    from .store import Store

__all__ = ["Volume", "SPATIAL_AXES", "UNITS"]

#: Names of the spatial axes, by number of spatial axes (array order).
SPATIAL_AXES: dict[int, tuple[str, ...]] = {2: ("y", "x"), 3: ("z", "y", "x")}
#: Units a spatial axis may have: physical millimetres, or pixels without a known size.
UNITS = ("mm", "pixel")


#: Guards building ``Volume.data`` from a source (two threads asking at once build it once).
_BUILD_LOCK = threading.RLock()


def _json_safe(meta: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(meta)))
    except TypeError as exc:
        raise TypeError(f"Volume.meta must be JSON-able: {exc}") from None


def _as_dask(array: Any) -> da.Array:
    import dask.array as da  # lazily: `voxelstream --help` must not pay for dask.array

    return array if isinstance(array, da.Array) else da.asarray(array)


def _per_axis(value: Any, n: int, what: str, default: Any) -> tuple[Any, ...]:
    if value is None:
        return (default,) * n
    if isinstance(value, str) or np.isscalar(value):
        return (value,) * n
    vals = tuple(value)
    if len(vals) != n:
        raise ValueError(f"{what} must have {n} values (one per spatial axis), got {len(vals)}: {list(vals)}")
    return vals


def _units(units: str | Sequence[str] | None, n: int) -> tuple[str, ...]:
    out = _per_axis(units, n, "units", "mm")
    bad = [u for u in out if u not in UNITS]
    if bad:
        raise ValueError(f"units must be one of {UNITS} per spatial axis, got {bad}")
    return tuple(str(u) for u in out)


class Volume:
    """A frozen, lazy image with 2 or 3 spatial axes.

    Attributes:
        data: dask array, channel-first: ``(C, Z, Y, X)`` or ``(C, Y, X)`` (CT has one
            channel, a colour photograph three).
        affine: ``(n+1) x (n+1)`` for ``n`` spatial axes; maps an index (array order, 1) to a
            world point (reversed order: ``(x, y, z, 1)`` / ``(x, y, 1)``), direction included.
            Its column norms equal ``spacing``.
        meta: plain JSON-able dict (``modality`` as DICOM's Modality where known, ``id``,
            ``source``, stage ``history``...).
        units: per spatial axis, ``"mm"`` (physical) or ``"pixel"`` (no known size).

    ``data`` may also be given as a :class:`~voxelstream.lazy.BlockSource` (readers and
    stages that compute regions directly do): then :attr:`source` keeps it, writers use it
    without a dask graph, and ``data`` is built from it on first access.

    Make one with :meth:`from_array`; derive new ones with :meth:`replace` (or a stage);
    never mutate one.
    """

    __slots__ = ("_data", "_source", "affine", "meta", "units")

    def __init__(self, data: Any, affine: Any, meta: Mapping[str, Any] | None = None,
                 units: tuple[str, ...] | str | None = None) -> None:
        from .lazy import BlockSource

        source = data if isinstance(data, BlockSource) else None
        if source is None:
            data = _as_dask(data)
        aff = np.array(affine, dtype=float)
        n = aff.shape[0] - 1
        if aff.ndim != 2 or aff.shape[0] != aff.shape[1] or n not in (2, 3):
            raise ValueError(f"Volume.affine must be 3x3 (2-D) or 4x4 (3-D), got shape {aff.shape}")
        if abs(np.linalg.det(aff[:n, :n])) < 1e-12:
            raise ValueError("Volume.affine must be invertible")
        if data.ndim != n + 1:
            raise ValueError(
                f"Volume.data must be channel-first (C, {', '.join(SPATIAL_AXES[n]).upper()}) for a "
                f"{n}-D affine, got shape {data.shape}; build volumes with Volume.from_array"
            )
        aff.setflags(write=False)
        _set = object.__setattr__
        _set(self, "_source", source)
        _set(self, "_data", None if source is not None else data)
        _set(self, "affine", aff)
        _set(self, "meta", _json_safe(meta or {}))
        _set(self, "units", _units(units, n))

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: a Volume is frozen; use replace()")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: a Volume is frozen")

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data if self._source is None else self._source, "affine": self.affine,
                "meta": self.meta, "units": self.units}

    def __setstate__(self, state: dict[str, Any]) -> None:
        Volume.__init__(self, state["data"], state["affine"], state["meta"], state["units"])

    @property
    def data(self) -> da.Array:
        """The lazy dask array ``(C, *spatial)`` (built from :attr:`source` on first access)."""
        if self._data is None:
            with _BUILD_LOCK:
                if self._data is None:
                    object.__setattr__(self, "_data", _as_dask(self._source.to_dask()))
        return self._data

    @property
    def source(self) -> Any:
        """The :class:`~voxelstream.lazy.BlockSource` computing regions directly, or ``None``
        (the volume is a dask graph only)."""
        return self._source

    @property
    def dtype(self) -> np.dtype:
        """The voxels' dtype (without building the dask array)."""
        return (self._source if self._source is not None else self._data).dtype

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_array(
        cls,
        array: Any,
        *,
        spacing: Sequence[float] | float | None = None,
        origin: Sequence[float] | None = None,
        direction: Sequence[float] | np.ndarray | None = None,
        units: str | Sequence[str] = "mm",
        channel_axis: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Volume:
        """A Volume from a numpy or dask array with 2 or 3 spatial axes.

        Args:
            array: the pixels; with ``channel_axis`` that axis holds the channels (moved to
                the front: ``(H, W, 3)`` with ``channel_axis=-1`` becomes ``(3, H, W)``),
                without it the array is spatial only and one channel is added in front.
            spacing: pixel/voxel size per spatial axis in array order (default 1).
            origin: world position of index 0, per spatial axis in array order (default 0).
            direction: ITK-style ``n x n`` direction matrix (columns: world directions of the
                x, y(, z) index axes, as ``sitk.Image.GetDirection()``); default identity.
            units: ``"mm"`` or ``"pixel"``, for all spatial axes or one per axis.
            meta: JSON-able metadata (set ``modality`` where known).

        Raises:
            ValueError: fewer than 2 or more than 3 spatial axes, or a wrong number of
                spacing/origin/units values.
        """
        data = _as_dask(array)
        if channel_axis is not None:
            if not -data.ndim <= channel_axis < data.ndim:
                raise ValueError(f"channel_axis {channel_axis} is out of range for an array of shape {data.shape}")
            import dask.array as da

            data = da.moveaxis(data, channel_axis, 0)
        else:
            if data.ndim == 3 and data.shape[-1] in (3, 4) and min(data.shape[:2]) > 4 * data.shape[-1] and spacing is None:
                raise ValueError(
                    f"an array of shape {tuple(data.shape)} looks like a colour image (H, W, C): pass "
                    "channel_axis=-1; for a 3-D volume with that few columns give its spacing"
                )
            data = data[None]
        n = data.ndim - 1
        if n not in (2, 3):
            raise ValueError(
                f"an image needs 2 or 3 spatial axes (plus channels), got {n} spatial axes "
                f"for an array of shape {tuple(array.shape)}"
                + ("" if channel_axis is not None else "; pass channel_axis= if one axis holds channels")
            )
        sp = [float(s) for s in _per_axis(spacing, n, "spacing", 1.0)]
        if min(sp) <= 0 or not all(np.isfinite(sp)):
            raise ValueError(f"spacing must be positive and finite, got {sp}")
        org = [float(o) for o in _per_axis(origin, n, "origin", 0.0)]
        aff = geometry.affine_from_itk(org[::-1], sp, direction)
        return cls(data, aff, dict(meta or {}), units=_units(units, n))

    @classmethod
    def from_itk_geometry(
        cls,
        data: Any,
        *,
        spacing: Sequence[float],
        origin_xyz: Sequence[float] | None = None,
        direction: Sequence[float] | np.ndarray | None = None,
        meta: Mapping[str, Any] | None = None,
        units: str | Sequence[str] = "mm",
    ) -> Volume:
        """A Volume from ITK-ordered geometry: ``spacing`` in array order, ``origin_xyz`` in
        world order (as ``GetOrigin``), ITK's direction. ``data`` is spatial only (one channel
        is added) or already channel-first (a :class:`~voxelstream.lazy.BlockSource` is)."""
        from .lazy import BlockSource

        n = len(spacing)
        arr = data if isinstance(data, BlockSource) else _as_dask(data)  # a source is channel-first
        if arr.ndim == n:
            arr = arr[None]
        origin = (0.0,) * n if origin_xyz is None else tuple(origin_xyz)
        aff = geometry.affine_from_itk(origin, spacing, direction)
        return cls(arr, aff, dict(meta or {}), units=units)

    def replace(self, **changes: Any) -> Volume:
        """A copy with some fields changed (``data``, ``affine``, ``meta``, ``units``)."""
        kw = {"data": self.data if self._source is None else self._source, "affine": self.affine,
              "meta": copy.deepcopy(self.meta), "units": self.units}
        kw.update(changes)
        return Volume(**kw)

    def with_history(self, entry: Mapping[str, Any], **changes: Any) -> Volume:
        """A copy with ``entry`` appended to ``meta["history"]`` (stages record themselves)."""
        meta = copy.deepcopy(changes.pop("meta", self.meta))
        meta.setdefault("history", []).append(dict(entry))
        return self.replace(meta=meta, **changes)

    # -- shape -------------------------------------------------------------------------
    @property
    def spatial_ndim(self) -> int:
        """2 or 3."""
        return self.affine.shape[0] - 1

    @property
    def axes(self) -> tuple[str, ...]:
        """Names of the spatial axes in array order: ``("z", "y", "x")`` or ``("y", "x")``."""
        return SPATIAL_AXES[self.spatial_ndim]

    @property
    def channels(self) -> int:
        """Number of channels (the length of the first axis)."""
        return int(self.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """``(C, *spatial_shape)``."""
        return tuple(int(s) for s in (self._source if self._source is not None else self._data).shape)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    # -- geometry ----------------------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, ...]:
        """Pixel/voxel size per spatial axis in array order (in ``units``)."""
        return geometry.spacing_of(self.affine)

    @property
    def origin(self) -> tuple[float, ...]:
        """World position of the centre of index 0, per spatial axis in array order (the
        reverse of the world point ``(x, y, z)``)."""
        n = self.spatial_ndim
        return tuple(float(v) for v in self.affine[:n, n][::-1])

    @property
    def direction(self) -> np.ndarray:
        """ITK-style ``n x n`` direction matrix (columns: world directions of x, y(, z))."""
        n = self.spatial_ndim
        return np.asarray(geometry.affine_to_itk(self.affine)[2]).reshape(n, n)

    def index_to_world(self, points: np.ndarray | Sequence) -> np.ndarray:
        """Index (N, n) in array order -> world (N, n) in world order (``x`` first)."""
        return geometry.index_to_world(self.affine, points)

    def world_to_index(self, points: np.ndarray | Sequence) -> np.ndarray:
        """World (N, n) in world order -> fractional index (N, n) in array order."""
        return geometry.world_to_index(self.affine, points)

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
        if not isinstance(getattr(self, "units", None), tuple):  # a construction that failed validation (pytest shows it)
            return "Volume(<invalid>)"
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        unit = self.units[0] if len(set(self.units)) == 1 else "/".join(self.units)
        return (
            f"Volume(shape={self.shape}, dtype={self.dtype}, spacing=({sp}) {unit}, "
            f"origin={tuple(round(v, 3) for v in self.origin)}, id={self.meta.get('id')!r})"
        )
