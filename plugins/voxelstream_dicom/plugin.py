"""The ``dicom`` reader: DICOM series grouped by SeriesInstanceUID, opened lazily.

Discovery reads headers only (see :mod:`.headers`); each series becomes one
:class:`~voxelstream.Source` whose id is its SeriesInstanceUID, and whose ``open`` (a
picklable ``functools.partial`` of :func:`open_series` over plain data) builds a
:class:`~voxelstream.Volume` whose pixels are read slab by slab when the graph runs.

Limits (clear errors, one per file or series): multi-frame files, colour images,
compressed transfer syntaxes without an installed decoder, gaps and duplicate positions,
mixed slice sizes, orientations or pixel spacings, sheared stacks (gantry tilt).
A bad file fails its series, and so does an unreadable file of unknown series in the
series' folder (it may be a missing slice). A single-slice series is read with
SliceThickness as its z spacing. Output is int16 when every slice's rescale is integral and
maps the stored range (BitsStored, PixelRepresentation) into int16, else float32 (so GE's
signed 16-bit CT with intercept -1024 reads as float32).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import voxelstream
from voxelstream import ReaderSpec, Source, SourceError

# headers parses DICOM with the standard library only: cheap enough for every CLI start;
# series (numpy) and pixels (dask) are imported when a folder is actually read
from .headers import HeaderError, SliceHeader, claims, group_by_series, scan_file

if TYPE_CHECKING:  # pragma: no cover
    from voxelstream import Volume

    from .series import SeriesPlan

__all__ = ["open_series", "discover", "voxelstream_readers"]


def open_series(plan: SeriesPlan) -> Volume:
    """The lazy :class:`Volume` of a planned series (reads no pixel data)."""
    from voxelstream import Volume

    from .pixels import lazy_stack

    return Volume.from_itk_geometry(
        lazy_stack(plan),
        spacing=plan.spacing,
        origin_xyz=plan.origin,
        direction=plan.direction,
        meta=plan.meta,
    )


def _scan(files: Sequence[Path], keep_phi: bool) -> tuple[list[SliceHeader], list[HeaderError], int]:
    """Headers of the image files, the files that failed, and how many were not images."""
    headers: list[SliceHeader] = []
    failed: list[HeaderError] = []
    n_skipped = 0
    for f in files:
        try:
            h = scan_file(Path(f), keep_phi=keep_phi)
        except HeaderError as err:
            failed.append(err)
            continue
        if h is None:
            n_skipped += 1
        else:
            headers.append(h)
    return headers, failed, n_skipped


def _series_error(uid: str, paths: Sequence[str], errs: Sequence[HeaderError]) -> SourceError:
    from .series import common_folder

    more = f" (and {len(errs) - 1} more bad file(s))" if len(errs) > 1 else ""
    return SourceError(common_folder(paths), f"series {uid}: {Path(errs[0].path).name}: {errs[0].reason}{more}")


def discover(files: Sequence[Path], options: Any = None) -> Iterator[Source | SourceError]:
    """One :class:`Source` per series among ``files`` (headers only), and one
    :class:`SourceError` per unreadable file or series.

    A series fails whole when one of its files, or an unreadable file of unknown series in
    its folder, is bad: reading the rest would hide a missing slice.
    """
    from .series import SeriesError, common_folder, plan_series

    keep_phi = bool(getattr(options, "keep_phi", False))
    headers, failed, n_skipped = _scan(files, keep_phi)
    groups = group_by_series(headers)
    orphans = [e for e in failed if not e.series_uid]  # could be a slice of any series beside it
    used: set[int] = set()
    for uid in dict.fromkeys([*groups, *(e.series_uid for e in failed if e.series_uid)]):
        members = groups.get(uid, [])
        folders = {str(Path(h.path).parent) for h in members}
        near = [k for k, e in enumerate(orphans) if str(Path(e.path).parent) in folders]
        used.update(near)
        errs = [e for e in failed if e.series_uid == uid] + [orphans[k] for k in near]
        if errs:
            yield _series_error(uid, [h.path for h in members] + [e.path for e in errs], errs)
            continue
        try:
            plan = plan_series(uid, members, keep_phi=keep_phi)
        except SeriesError as err:
            yield SourceError(common_folder([h.path for h in members]), f"series {uid}: {err}")
            continue
        yield Source(
            volume_id=uid,
            location=plan.meta["source"],
            open=functools.partial(open_series, plan),
            reader="dicom",
            description=f"{members[0].modality or 'DICOM'} series, {len(plan.files)} slices of {plan.rows}x{plan.cols}",
        )
    for k, err in enumerate(orphans):
        if k not in used:
            yield SourceError(err.path, err.reason)
    if files and n_skipped == len(files):
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
