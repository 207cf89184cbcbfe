"""One series: check its slices form a regular stack and work out its geometry.

:func:`plan_series` turns the headers of one SeriesInstanceUID into a :class:`SeriesPlan`,
plain picklable data from which :mod:`.pixels` builds the lazy array. Slices are ordered
by their position along the slice normal ``cross(row cosine, column cosine)``, never by
file name or InstanceNumber. A series that is not a regular stack raises
:class:`SeriesError` with a one-line reason.

Single-slice series are accepted: their z spacing is SliceThickness (a volume one voxel deep).
The frames of a multi-frame object are planned the same way (one plan per object, each
slice a ``(file, frame)``). An image without patient geometry (a secondary capture, a
photograph) becomes a 2-D plan in pixel units; colour images plan three channels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .headers import PixelLayout, SliceHeader

__all__ = ["SeriesError", "SeriesPlan", "plan_series", "output_dtype", "common_folder"]

ORIENTATION_TOL = 1e-4  # direction cosines written with 6 decimals differ by ~1e-6
DUPLICATE_TOL_MM = 1e-3
GAP_TOL = 0.1  # a step may differ from the median by 10%: jitter yes, a missing slice no
INT16 = (-32768, 32767)


class SeriesError(Exception):
    """A series that cannot become a volume; ``str()`` is one line for a user."""


@dataclass(frozen=True, eq=False)
class SeriesPlan:
    """Everything needed to build the volume of one series lazily (plain data, picklable).

    ``files``, ``slopes``, ``intercepts`` and ``layouts`` (where native pixel data sits in
    each file, ``None``: decode with pydicom) are in slice order (along the normal);
    ``spacing`` is ``(z, y, x)`` mm; ``direction`` is ITK's 3x3 matrix, row-major.
    """

    series_uid: str
    files: tuple[str, ...]
    slopes: tuple[float, ...]
    intercepts: tuple[float, ...]
    rows: int
    cols: int
    dtype: str
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    meta: dict[str, Any]
    layouts: tuple[PixelLayout | None, ...] = ()
    frames: tuple[int | None, ...] = ()  # frame index per slice (multi-frame objects), None: single-frame file
    channels: int = 1  # 3: colour, read as (z, y, x, 3) and stored channel-first
    units: str = "mm"  # "pixel": no patient geometry
    ndim: int = 3  # 2: one image without geometry


def _name(h: SliceHeader) -> str:
    return os.path.basename(h.path)


def _single(headers: Sequence[SliceHeader], attr: str, what: str, fix: str) -> Any:
    first = getattr(headers[0], attr)
    for h in headers[1:]:
        if getattr(h, attr) != first:
            raise SeriesError(f"mixed {what} in one series ({_name(headers[0])}: {first}, {_name(h)}: "
                              f"{getattr(h, attr)}); {fix}")
    return first


def _orientation(headers: Sequence[SliceHeader]) -> np.ndarray:
    iop = np.asarray(headers[0].orientation, dtype=float)
    for h in headers[1:]:
        if np.max(np.abs(np.asarray(h.orientation) - iop)) > ORIENTATION_TOL:
            raise SeriesError(
                f"mixed orientations in one series ({_name(headers[0])}: {list(headers[0].orientation)}, "
                f"{_name(h)}: {list(h.orientation)}); a volume needs parallel slices (a localizer mixed in?)"
            )
    row, col = iop[:3], iop[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise SeriesError(f"ImageOrientationPatient {list(iop)} in {_name(headers[0])} is not two orthogonal "
                          "unit vectors; fix the header")
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    return np.stack([row, col, np.cross(row, col)], axis=1)  # ITK columns: x, y, z index axes


def _z_step(ordered: Sequence[SliceHeader], along: np.ndarray, fallback: float | None) -> float:
    """The slice spacing; raises on duplicates and non-uniform gaps (naming where)."""
    if len(ordered) == 1:
        if not fallback or fallback <= 0:
            raise SeriesError(f"single-slice series ({_name(ordered[0])}) without SliceThickness: "
                              "its z spacing is unknown")
        return float(fallback)
    steps = np.diff(along)
    for i, step in enumerate(steps):
        if step < DUPLICATE_TOL_MM:
            raise SeriesError(
                f"duplicate slice position {along[i]:.3f} mm along the normal ({_name(ordered[i])} and "
                f"{_name(ordered[i + 1])}); the series holds more than one stack (repeated or multi-echo "
                "acquisition?): remove the duplicates"
            )
    median = float(np.median(steps))
    bad = np.nonzero(np.abs(steps - median) > GAP_TOL * median)[0]
    if bad.size:
        i = int(bad[0])
        missing = steps[i] / median - 1
        hint = f" (about {missing:.0f} slice(s) missing)" if missing >= 0.5 else ""
        raise SeriesError(
            f"non-uniform slice spacing: gap of {steps[i]:.3f} mm between {_name(ordered[i])} "
            f"({along[i]:.3f} mm) and {_name(ordered[i + 1])} ({along[i + 1]:.3f} mm), expected "
            f"{median:.3f} mm{hint}; add the missing files or read a complete series"
        )
    return median


def _check_stacked(ordered: Sequence[SliceHeader], direction: np.ndarray, pixel: float) -> None:
    """Positions must move along the normal only; a shear (gantry tilt) is not a volume."""
    p = np.asarray([h.position for h in ordered], dtype=float) - ordered[0].position
    in_plane = p @ direction[:, :2]
    drift = np.max(np.abs(in_plane))
    if drift > 0.05 * pixel + 1e-3:
        i = int(np.argmax(np.max(np.abs(in_plane), axis=1)))
        raise SeriesError(
            f"slices are not stacked along their normal ({_name(ordered[i])} is shifted {drift:.3f} mm in-plane; "
            "gantry tilt?): sheared volumes are not supported; resample the series first"
        )


def _colour_dtype(h: SliceHeader) -> str:
    bits = h.palette_bits if h.photometric == "PALETTE COLOR" else h.bits_allocated
    return "uint8" if bits <= 8 else "uint16"


def output_dtype(headers: Sequence[SliceHeader]) -> str:
    """``int16`` when every slice's rescale is integral and either maps the stored range
    (BitsStored/PixelRepresentation) inside int16 or yields Hounsfield units; else ``float32``.

    Why HU may saturate: CT is usually stored as signed 16 bits with intercept -1024, whose
    *possible* range overflows int16 although no real HU value does (the scale ends near
    +3071, metal near +30000, padding at -2000/-3024). Storing HU as int16 halves the store
    and the I/O; the rare value past int16 is clipped to its bound (:func:`pixels.read_slab`).
    """
    if headers[0].channels == 3:
        return _colour_dtype(headers[0])  # colour values are not rescaled
    for h in headers:
        if not (float(h.slope).is_integer() and float(h.intercept).is_integer()):
            return "float32"
        if abs(h.slope) > 2**15 or abs(h.intercept) > 2**31:  # integral but past int32 arithmetic
            return "float32"
        if _is_hu(h):
            continue
        if h.pixel_representation:
            lo, hi = -(2 ** (h.bits_stored - 1)), 2 ** (h.bits_stored - 1) - 1
        else:
            lo, hi = 0, 2**h.bits_stored - 1
        ends = (h.slope * lo + h.intercept, h.slope * hi + h.intercept)
        if min(ends) < INT16[0] or max(ends) > INT16[1]:
            return "float32"
    return "int16"


def _is_hu(h: SliceHeader) -> bool:
    return h.rescale_type.upper() == "HU" or h.modality.upper() == "CT"


def common_folder(paths: Sequence[str]) -> str:
    """The deepest folder holding all ``paths``."""
    return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])


def _meta(uid: str, ordered: Sequence[SliceHeader], keep_phi: bool) -> dict[str, Any]:
    from voxelstream.privacy import source_origin

    first = ordered[0]
    folder = common_folder([h.path for h in ordered])
    meta: dict[str, Any] = {
        "modality": first.modality,
        "series_uid": uid,
        "reader": "dicom",
        "manufacturer": first.manufacturer,
        "slice_thickness": first.slice_thickness,
        "n_slices": len(ordered),
        # no path by default: archive folders are named after patients (see voxelstream.privacy)
        "origin": source_origin("dicom", folder, sorted({h.path for h in ordered}), keep_phi=keep_phi),
    }
    if keep_phi:
        meta["source"] = folder
    if first.sop_uid and (first.frame is not None or not first.has_geometry):
        meta["sop_instance_uid"] = first.sop_uid
    if first.frame is not None:
        meta["n_frames"] = first.frames_in_file
    if first.channels == 3:
        meta["photometric"] = first.photometric
    if _is_hu(first) and first.channels == 1:
        meta["units"] = "HU"
    elif first.rescale_type:
        meta["units"] = first.rescale_type
    if keep_phi:
        meta["phi"] = dict(first.phi)
    return meta


def plan_series(uid: str, headers: Sequence[SliceHeader], *, keep_phi: bool = False) -> SeriesPlan:
    """Validate one series (or the frames of one multi-frame object) and return its
    :class:`SeriesPlan`; raises :class:`SeriesError`."""
    fix = "a volume needs one slice size; split the series"
    rows = _single(headers, "rows", "slice sizes (Rows)", fix)
    cols = _single(headers, "cols", "slice sizes (Columns)", fix)
    _single(headers, "pixel_spacing", "PixelSpacing", "a volume needs one voxel size; split the series")
    _single(headers, "channels", "grey and colour images", "a volume is grey or colour; split the series")
    if headers[0].channels == 3:
        _single(headers, "photometric", "colour models (PhotometricInterpretation)", "split the series")
    if not headers[0].has_geometry and headers[0].frame is None:
        return _plan_image(uid, headers, keep_phi)
    direction = _orientation(headers)
    along = np.asarray([np.asarray(h.position) @ direction[:, 2] for h in headers])
    order = np.argsort(along, kind="stable")
    ordered = [headers[i] for i in order]
    along = along[order]
    sy, sx = ordered[0].pixel_spacing
    if sy <= 0 or sx <= 0:
        raise SeriesError(f"PixelSpacing {list(ordered[0].pixel_spacing)} in {_name(ordered[0])} is not positive")
    fallback = ordered[0].slice_thickness if ordered[0].has_geometry else 1.0
    sz = _z_step(ordered, along, fallback)
    _check_stacked(ordered, direction, min(sy, sx))
    return SeriesPlan(
        series_uid=uid,
        files=tuple(h.path for h in ordered),
        slopes=tuple(float(h.slope) for h in ordered),
        intercepts=tuple(float(h.intercept) for h in ordered),
        rows=int(rows),
        cols=int(cols),
        dtype=output_dtype(ordered),
        spacing=(float(sz), float(sy), float(sx)),
        origin=tuple(float(v) for v in ordered[0].position),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.ravel()),
        meta=_meta(uid, ordered, keep_phi),
        layouts=tuple(h.pixel_layout for h in ordered),
        frames=tuple(h.frame for h in ordered),
        channels=ordered[0].channels,
        units="mm" if ordered[0].has_geometry else "pixel",
    )


def _plan_image(uid: str, headers: Sequence[SliceHeader], keep_phi: bool) -> SeriesPlan:
    """One image without patient geometry: a 2-D plan in pixel units."""
    if len(headers) != 1:
        raise SeriesError(f"{len(headers)} images without patient geometry share one volume ({_name(headers[0])}, "
                          f"{_name(headers[1])}): they cannot be stacked; split them")
    h = headers[0]
    return SeriesPlan(
        series_uid=uid, files=(h.path,), slopes=(float(h.slope),), intercepts=(float(h.intercept),),
        rows=int(h.rows), cols=int(h.cols), dtype=output_dtype([h]), spacing=(1.0, 1.0, 1.0),
        origin=(0.0, 0.0, 0.0), direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        meta=_meta(uid, [h], keep_phi),
        layouts=(h.pixel_layout,), frames=(None,), channels=h.channels, units="pixel", ndim=2,
    )
