"""``voxelstream dr preprocess``'s work: every colour photograph of a store to ``(3, 2R, 2R)``.

Runs on the engine's per-volume runner (:mod:`voxelstream.runner`): only volumes of modality
``OP`` (or of unknown modality that are 2-D in pixels) are acted on, complete outputs made
from the same input with the same parameters are skipped, a bad photograph is reported and
the others finish.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from voxelstream.pipeline import StageCall, apply_stages

from .options import DEFAULT_NAME, DEFAULT_RADIUS, MODALITY

__all__ = ["preprocess_stages", "preprocess_volume", "preprocess_store", "preprocess_files", "ACCEPTS"]


def preprocess_stages(radius: int = DEFAULT_RADIUS, fraction: float = 0.9) -> list[StageCall]:
    """The seed's recipe as stage calls: crop/scale to ``radius`` (geometry measured from the
    middle row), local average with sigma = R/30, border outside ``fraction * R`` = 128."""
    chunk = min(2 * radius, 256)
    return [
        StageCall("fundus_crop", {"radius": int(radius), "chunks": chunk}),
        StageCall("local_average", {"sigma": radius / 30}),
        StageCall("fundus_border", {"fraction": float(fraction), "value": 128}),
    ]


def preprocess_volume(volume: Any, radius: int = DEFAULT_RADIUS, fraction: float = 0.9) -> Any:
    """The lazy ``(3, 2R, 2R)`` uint8 output for one photograph Volume."""
    if volume.spatial_ndim != 2 or volume.channels != 3:
        raise ValueError(f"expected a colour photograph (3, H, W), got an image of shape {volume.shape}")
    return apply_stages(volume, preprocess_stages(radius, fraction))


def _build(store: Any, input: str, radius: int, fraction: float, volume_id: str) -> Any:
    from .fast import preprocess_volume_direct

    # one numpy pass per photograph, written without a dask graph (same values as the stages)
    return preprocess_volume_direct(store.open(volume_id, input), radius, fraction)


def ACCEPTS() -> Any:
    """Which stored volumes ``preprocess`` acts on: modality OP, or unknown and 2-D in pixels."""
    from voxelstream.runner import Accepts

    return Accepts(MODALITY, spatial_ndim=2, units="pixel")


def preprocess_store(store: Any, *, radius: int = DEFAULT_RADIUS, name: str = DEFAULT_NAME, input: str = "image",
                     fraction: float = 0.9, force: bool = False, out: TextIO | None = None,
                     err: TextIO | None = None) -> Any:
    """Write ``volumes/<id>/<name>`` for every photograph of ``store``; returns the
    :class:`~voxelstream.batch.BatchReport` (``exit_code`` 1 when one failed)."""
    from voxelstream.runner import run_per_volume, stored_jobs

    params = {"input": input, "stages": [c.as_dict() for c in preprocess_stages(radius, fraction)]}
    jobs = stored_jobs(store, input, functools.partial(_build, store, input, radius, fraction), accepts=ACCEPTS())
    return run_per_volume(store, jobs, output=name, command="dr-preprocess", params=params, force=force,
                          out=out, err=err)


def _photo_jobs(inputs: Sequence[str], radius: int, fraction: float, draft: bool) -> Iterator[Any]:
    from voxelstream import SourceError, discover
    from voxelstream.ingest import source_fingerprint
    from voxelstream.runner import VolumeJob

    from .fast import preprocess_photo

    seen: dict[str, str] = {}
    for item in discover(inputs):
        if isinstance(item, SourceError):
            yield VolumeJob(item.location, label=item.location, error=item.reason)
        elif item.reader != "photo":
            yield VolumeJob(item.volume_id, label=item.location, note="not a photograph: skipped")
        elif item.volume_id in seen:
            yield VolumeJob(item.volume_id, label=item.location, error=(
                f"volume id {item.volume_id!r} also comes from {seen[item.volume_id]}; ids must be unique in a store"))
        else:
            seen[item.volume_id] = item.location
            yield VolumeJob(item.volume_id, build=functools.partial(preprocess_photo, item.location, radius, fraction,
                                                                     draft),
                            fingerprint=functools.partial(source_fingerprint, item))


def preprocess_files(store: Any, inputs: Sequence[str], *, radius: int = DEFAULT_RADIUS, name: str = DEFAULT_NAME,
                     fraction: float = 0.9, draft: bool = True, force: bool = False, out: TextIO | None = None,
                     err: TextIO | None = None) -> Any:
    """Write ``volumes/<id>/<name>`` straight from photograph files or folders ``inputs``,
    without storing the full-size photographs: each is decoded once (JPEG ``draft`` at
    reduced size unless ``draft=False``, see :mod:`voxelstream_dr.fast`) and preprocessed
    in one pass; two in flight on two cores. Returns the report (``exit_code`` 1 when one failed)."""
    from voxelstream.runner import run_per_volume

    params = {"input": "files", "draft": bool(draft),
              "stages": [c.as_dict() for c in preprocess_stages(radius, fraction)]}
    return run_per_volume(store, _photo_jobs(list(inputs), int(radius), float(fraction), bool(draft)), output=name,
                          command="dr-preprocess", params=params, force=force, out=out, err=err)
