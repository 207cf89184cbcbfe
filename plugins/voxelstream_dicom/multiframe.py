"""Multi-frame objects: one :class:`~.headers.SliceHeader` per frame, placed in the world.

Where a frame's geometry comes from, first match wins:

* **Enhanced CT/MR/... (functional groups)**: each frame's Plane Position, Plane Orientation,
  Pixel Measures and Pixel Value Transformation, per frame or shared
  (``PerFrameFunctionalGroupsSequence`` / ``SharedFunctionalGroupsSequence``);
* **legacy multi-frame** (RT Dose, NM, ...): the top-level ImagePositionPatient and
  ImageOrientationPatient for frame 0, the others along the slice normal at
  ``GridFrameOffsetVector`` (relative to the first frame; RT Dose's DoseGridScaling is its
  slope) or at multiples of SpacingBetweenSlices;
* **no geometry at all** (multi-frame secondary capture): frames stacked in file order, a
  pixel-unit volume.

The frames then go through the same checks as the slices of a series (:mod:`.series`):
parallel, evenly spaced, no duplicates. Needs pydicom (called only for multi-frame files).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .headers import HeaderError, SliceHeader

__all__ = ["frame_headers"]


def _item(seq_owner: Any, keyword: str) -> Any:
    seq = getattr(seq_owner, keyword, None) if seq_owner is not None else None
    return seq[0] if seq else None


def _group_value(frame_group: Any, shared: Any, sequence: str, keyword: str) -> Any:
    """``keyword`` of functional group ``sequence``, from the frame's groups, else the shared ones."""
    for owner in (frame_group, shared):
        item = _item(owner, sequence)
        if item is not None and keyword in item and item.get(keyword) not in (None, ""):
            return item.get(keyword)
    return None


def _floats(value: Any, n: int, what: str, path: str, k: int) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != n:
        raise HeaderError(path, f"frame {k}: {what} is missing or malformed ({value!r}); fix or re-export the file")
    return out


def _cross(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float]:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def frame_headers(ds: Any, base: SliceHeader) -> list[SliceHeader]:
    """One header per frame of the multi-frame dataset ``ds`` (read up to its pixel data),
    built from ``base`` (the object's checked top-level header)."""
    n = base.frames_in_file
    path = base.path
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n:
        raise HeaderError(path, f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for {n} frames; "
                          "the file is damaged", base.series_uid)
    if per_frame is not None and _group_value(per_frame[0], shared, "PlanePositionSequence",
                                              "ImagePositionPatient") is not None:
        return [_enhanced_frame(base, per_frame[k], shared, k) for k in range(n)]
    if base.has_geometry:
        return _legacy_frames(ds, base)
    return [dataclasses.replace(base, frame=k, position=(0.0, 0.0, float(k)), pixel_layout=None) for k in range(n)]


def _enhanced_frame(base: SliceHeader, group: Any, shared: Any, k: int) -> SliceHeader:
    path = base.path
    position = _floats(_group_value(group, shared, "PlanePositionSequence", "ImagePositionPatient"), 3,
                       "ImagePositionPatient (Plane Position)", path, k)
    iop = _group_value(group, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
    orientation = _floats(iop, 6, "ImageOrientationPatient (Plane Orientation)", path, k) if iop is not None \
        else base.orientation
    spacing_value = _group_value(group, shared, "PixelMeasuresSequence", "PixelSpacing")
    spacing = _floats(spacing_value, 2, "PixelSpacing (Pixel Measures)", path, k) if spacing_value is not None \
        else base.pixel_spacing
    thickness = _group_value(group, shared, "PixelMeasuresSequence", "SliceThickness")
    slope = _group_value(group, shared, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _group_value(group, shared, "PixelValueTransformationSequence", "RescaleIntercept")
    return dataclasses.replace(
        base, frame=k, position=position, orientation=orientation, pixel_spacing=(spacing[0], spacing[1]),
        slice_thickness=float(thickness) if thickness is not None else base.slice_thickness,
        slope=float(slope) if slope is not None else base.slope,
        intercept=float(intercept) if intercept is not None else base.intercept,
        has_geometry=True, pixel_layout=None,
    )


def _legacy_frames(ds: Any, base: SliceHeader) -> list[SliceHeader]:
    n, path = base.frames_in_file, base.path
    offsets = ds.get("GridFrameOffsetVector")
    if offsets not in (None, ""):
        steps = _floats(offsets, n, "GridFrameOffsetVector", path, 0)
        steps = tuple(s - steps[0] for s in steps)  # relative or absolute: frame 0 is at the position
    elif ds.get("SpacingBetweenSlices") not in (None, ""):
        step = float(ds.SpacingBetweenSlices)
        steps = tuple(k * step for k in range(n))
    else:
        raise HeaderError(path, f"multi-frame object ({n} frames) gives no frame positions (no per-frame Plane "
                          "Position, GridFrameOffsetVector or SpacingBetweenSlices): its geometry is unknown",
                          base.series_uid)
    normal = _cross(base.orientation[:3], base.orientation[3:])
    slope = base.slope
    if ds.get("DoseGridScaling") not in (None, ""):
        slope = float(ds.DoseGridScaling)  # RT Dose: dose = stored * DoseGridScaling
    return [dataclasses.replace(base, frame=k, slope=slope, pixel_layout=None,
                                position=tuple(p + s * c for p, c in zip(base.position, normal)))  # type: ignore[arg-type]
            for k, s in enumerate(steps)]
