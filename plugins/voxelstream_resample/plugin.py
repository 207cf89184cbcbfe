"""Registers the ``resample`` stage with voxelstream (entry point ``resample``).

Declared by name only: :mod:`.stage` needs dask and is imported on first use, so listing
plugins and ``voxelstream --help`` stay fast.
"""

from __future__ import annotations

import voxelstream as vs


@vs.hookimpl
def voxelstream_stages() -> list[vs.LazySpec]:
    """``resample``: change the voxel spacing, streamed chunk by chunk."""
    return [
        vs.LazySpec("resample", "voxelstream_resample.stage:RESAMPLE_STAGE",
                    description="change the voxel spacing (same origin and direction), streamed chunk by chunk"),
    ]
