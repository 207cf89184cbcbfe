"""The ``dicom`` reader: DICOM series grouped by SeriesInstanceUID, opened lazily.

Discovery reads headers only (see :mod:`.headers`); each series becomes one
:class:`~voxelstream.Source` whose id is its SeriesInstanceUID, and whose ``open`` (a
picklable ``functools.partial`` of :func:`open_series` over plain data) builds a
:class:`~voxelstream.Volume` whose pixels are read slab by slab when the graph runs.

Limits (clear errors, one per file or series): multi-frame files, colour images,
compressed transfer syntaxes without an installed decoder, gaps and duplicate positions,
mixed slice sizes, orientations or pixel spacings, sheared stacks (gantry tilt).
A single-slice series is read with SliceThickness as its z spacing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import voxelstream
from voxelstream import ReaderSpec, Source, SourceError, Volume

from .headers import HeaderError, SliceHeader, claims, group_by_series, scan_file
from .pixels import lazy_stack
from .series import SeriesError, SeriesPlan, common_folder, plan_series

__all__ = ["open_series", "discover", "voxelstream_readers"]


def open_series(plan: SeriesPlan) -> Volume:
    """The lazy :class:`Volume` of a planned series (reads no pixel data)."""
    return Volume.from_itk_geometry(
        lazy_stack(plan),
        spacing=plan.spacing,
        origin_xyz=plan.origin,
        direction=plan.direction,
        meta=plan.meta,
    )


def discover(files: Sequence[Path], options: Any = None) -> Iterator[Source | SourceError]:
    """One :class:`Source` per series among ``files`` (headers only), and one
    :class:`SourceError` per unreadable file or series."""
    keep_phi = bool(getattr(options, "keep_phi", False))
    headers: list[SliceHeader] = []
    broken: dict[str, list[HeaderError]] = {}  # series uid -> its files that failed
    n_skipped = 0
    for f in files:
        try:
            h = scan_file(Path(f), keep_phi=keep_phi)
        except HeaderError as err:
            if err.series_uid:
                broken.setdefault(err.series_uid, []).append(err)
            else:
                yield SourceError(err.path, err.reason)
            continue
        if h is None:
            n_skipped += 1
        else:
            headers.append(h)
    groups = group_by_series(headers)
    for uid, errs in broken.items():
        # a series with a bad file fails whole: reading the rest would hide a missing slice
        paths = [h.path for h in groups.pop(uid, [])] + [e.path for e in errs]
        more = f" (and {len(errs) - 1} more file(s))" if len(errs) > 1 else ""
        yield SourceError(common_folder(paths), f"series {uid}: {Path(errs[0].path).name}: {errs[0].reason}{more}")
    for uid, members in groups.items():
        try:
            plan = plan_series(uid, members, keep_phi=keep_phi)
        except SeriesError as err:
            yield SourceError(common_folder([h.path for h in members]), f"series {uid}: {err}")
            continue
        first = members[0]
        yield Source(
            volume_id=uid,
            location=plan.meta["source"],
            open=functools.partial(open_series, plan),
            reader="dicom",
            description=f"{first.modality or 'DICOM'} series, {len(plan.files)} slices of {plan.rows}x{plan.cols}",
        )
    if files and not headers and not broken and n_skipped == len(files):
        yield SourceError(
            common_folder([str(f) for f in files]),
            f"{n_skipped} DICOM file(s) but no image among them (DICOMDIR, reports...): nothing to read",
        )


@voxelstream.hookimpl
def voxelstream_readers() -> list[ReaderSpec]:
    return [
        ReaderSpec(
            name="dicom",
            claims=claims,
            discover=discover,
            priority=10,
            description="DICOM series (*.dcm, *.dicom, *.ima or 'DICM' files), one volume per SeriesInstanceUID",
        )
    ]
