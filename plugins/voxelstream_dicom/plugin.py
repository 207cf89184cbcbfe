"""The ``dicom`` reader: DICOM series grouped by SeriesInstanceUID, opened lazily.

Discovery reads headers only (see :mod:`.headers`); each series becomes one
:class:`~voxelstream.Source` whose id is its SeriesInstanceUID, and whose ``open`` (a
picklable ``functools.partial`` of :func:`open_series` over plain data) builds a
:class:`~voxelstream.Volume` whose pixels are read slab by slab when the graph runs.

Reads every transfer syntax pydicom decodes with its installed handlers (native, deflated,
big-endian, RLE, JPEG, JPEG-LS, JPEG 2000 through pylibjpeg), colour images (RGB, YBR,
palette: 3 channels), multi-frame objects (Enhanced CT/MR functional groups, legacy
multi-frame with GridFrameOffsetVector, multi-frame secondary captures; one volume each,
id SeriesInstanceUID, or SOPInstanceUID when its series holds other objects too) and images
without patient geometry (a 2-D image in pixel units).

Limits (clear errors, one per file or series): compressed transfer syntaxes without an
installed decoder, gaps and duplicate positions,
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
from .headers import HeaderError, SliceHeader, claims, group_by_series, scan_image

if TYPE_CHECKING:  # pragma: no cover
    from voxelstream import Volume

    from .series import SeriesPlan

__all__ = ["open_series", "discover", "voxelstream_readers"]


def open_series(plan: SeriesPlan) -> Volume:
    """The lazy :class:`Volume` of a planned series (reads no pixel data): ``(1, z, y, x)``
    for grey, ``(3, z, y, x)`` for colour, ``(C, y, x)`` in pixel units for a single image
    without patient geometry."""
    from voxelstream import Volume

    from .pixels import lazy_stack

    data = lazy_stack(plan)
    if plan.ndim == 2:
        image = data[0]  # (y, x) or (y, x, 3)
        return Volume.from_array(image, channel_axis=-1 if plan.channels == 3 else None, units="pixel",
                                 meta=plan.meta)
    if plan.channels == 3:
        import dask.array as da

        data = da.moveaxis(data, -1, 0)
    return Volume.from_itk_geometry(
        data,
        spacing=plan.spacing,
        origin_xyz=plan.origin,
        direction=plan.direction,
        meta=plan.meta,
        units=plan.units,
    )


def _scan_one(f: Path | str, keep_phi: bool) -> tuple[list[SliceHeader], tuple[str, str, str | None] | None]:
    """One file's headers, or why it failed (as plain data: this runs in worker processes)."""
    try:
        return scan_image(Path(f), keep_phi=keep_phi), None
    except HeaderError as err:
        return [], (err.path, err.reason, err.series_uid)
    except Exception as exc:  # scan_image converts what it knows; anything else fails this file alone
        return [], (str(f), f"unusable header ({type(exc).__name__}: {exc})", None)


def _scan(files: Sequence[Path], keep_phi: bool) -> tuple[list[SliceHeader], list[HeaderError], int]:
    """Headers of the image frames, the files that failed, and how many were not images.
    Any exception while scanning a file fails that file only. Thousands of files are
    scanned in parallel (``voxelstream.parallel``: threads overlapping the reads, or worker
    processes when asked)."""
    from voxelstream.parallel import parallel_map

    headers: list[SliceHeader] = []
    failed: list[HeaderError] = []
    n_skipped = 0
    for found, err in parallel_map(functools.partial(_scan_one, keep_phi=keep_phi), list(files)):
        if err is not None:
            failed.append(HeaderError(*err))
            continue
        if not found:
            n_skipped += 1
        headers.extend(found)
    return headers, failed, n_skipped


def _series_error(uid: str, paths: Sequence[str], errs: Sequence[HeaderError]) -> SourceError:
    from .series import common_folder

    more = f" (and {len(errs) - 1} more bad file(s))" if len(errs) > 1 else ""
    return SourceError(common_folder(paths), f"series {uid}: {Path(errs[0].path).name}: {errs[0].reason}{more}")


def _groups(headers: Sequence[SliceHeader]) -> dict[str, dict[str, list[SliceHeader]]]:
    """series uid -> volume group (the series itself, or one multi-frame object or
    geometry-less image in it) -> its headers, in first-seen order."""
    out: dict[str, dict[str, list[SliceHeader]]] = {}
    for uid, members in group_by_series(headers).items():
        by_group: dict[str, list[SliceHeader]] = {}
        for h in members:
            by_group.setdefault(h.group, []).append(h)
        out[uid] = by_group
    return out


def _volume_id(uid: str, group: str, n_groups: int, first: SliceHeader) -> str:
    """SeriesInstanceUID; an object sharing its series with others: its SOPInstanceUID."""
    if group == uid or n_groups == 1:
        return uid
    return first.sop_uid or group


def discover(files: Sequence[Path], options: Any = None) -> Iterator[Source | SourceError]:
    """One :class:`Source` per series (or per multi-frame object or geometry-less image)
    among ``files`` (headers only), and one :class:`SourceError` per unreadable file or series.

    A series fails whole when one of its files, or an unreadable file of unknown series in
    its folder, is bad: reading the rest would hide a missing slice.
    """
    from voxelstream.limits import check_output_size

    from .series import common_folder, plan_series

    keep_phi = bool(getattr(options, "keep_phi", False))
    headers, failed, n_skipped = _scan(files, keep_phi)
    series = _groups(headers)
    orphans = [e for e in failed if not e.series_uid]  # could be a slice of any series beside it
    used: set[int] = set()
    for uid in dict.fromkeys([*series, *(e.series_uid for e in failed if e.series_uid)]):
        groups = series.get(uid, {})
        members = [h for g in groups.values() for h in g]
        folders = {str(Path(h.path).parent) for h in members}
        near = [k for k, e in enumerate(orphans) if str(Path(e.path).parent) in folders]
        used.update(near)
        errs = [e for e in failed if e.series_uid == uid] + [orphans[k] for k in near]
        if errs:
            yield _series_error(uid, [h.path for h in members] + [e.path for e in errs], errs)
            continue
        for group, group_headers in groups.items():
            vid = _volume_id(uid, group, len(groups), group_headers[0])
            where = common_folder([h.path for h in group_headers]) if group == uid else group_headers[0].path
            try:
                plan = plan_series(vid, group_headers, keep_phi=keep_phi)
                shape = (len(plan.files), plan.rows, plan.cols, plan.channels)
                check_output_size(shape, plan.dtype, cause=f"{len(plan.files)} slices of {plan.rows}x{plan.cols}",
                                  hint="the headers are damaged, or the series is larger than this machine is set up for")
            except Exception as err:  # SeriesError, the size limit, or anything a damaged header causes
                known = type(err).__name__ in ("SeriesError", "OutputTooLargeError")
                reason = str(err) if known else f"cannot be planned ({type(err).__name__}: {err})"
                yield SourceError(where, f"series {uid}: {reason}")
                continue
            kind = ("colour " if plan.channels == 3 else "") + (members[0].modality or "DICOM")
            what = (f"image {plan.rows}x{plan.cols} (no patient geometry)" if plan.ndim == 2
                    else f"{'frames' if group_headers[0].frame is not None else 'slices'}: {len(plan.files)} of "
                    f"{plan.rows}x{plan.cols}")
            yield Source(
                volume_id=vid,
                location=where,
                open=functools.partial(open_series, plan),
                reader="dicom",
                description=f"{kind} {what}",
                files=tuple(plan.files),  # ingest's fingerprint: a slice added to this series only
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
