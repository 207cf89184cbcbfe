"""Registers the ``resample`` stage with voxelstream (entry point ``resample``)."""

from __future__ import annotations

import voxelstream as vs

from .stage import RESAMPLE_STAGE


@vs.hookimpl
def voxelstream_stages() -> list[vs.StageSpec]:
    """``resample``: change the voxel spacing, streamed chunk by chunk."""
    return [RESAMPLE_STAGE]
