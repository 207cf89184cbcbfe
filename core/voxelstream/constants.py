"""Engine constants that light modules (CLI parsers, plugin registration) need.

They live here, away from the modules that use them for work, so that reading a default
does not import dask, zarr or numpy: ``voxelstream --help`` must start in well under a second.
"""

from __future__ import annotations

__all__ = ["DEFAULT_CHUNK", "DEFAULT_SCHEDULER", "SCHEDULER_HELP"]

#: Default chunk edge (voxels per spatial axis) of 3-D store arrays.
DEFAULT_CHUNK = 64

#: Where dask graphs run when no ``--scheduler`` is given.
DEFAULT_SCHEDULER = "threads"

SCHEDULER_HELP = (
    "where the dask graph runs: 'threads' (nothing to start), 'processes', "
    "'local:N' (a local dask.distributed cluster of N worker processes) or "
    "'tcp://HOST:PORT' (an existing dask.distributed scheduler)"
)
