"""The hooks a voxelstream plugin may implement.

A plugin is any module registered under the ``voxelstream`` entry-point group that
implements some of these functions, each decorated with ``@voxelstream.hookimpl``. Every
hook returns a list of specs (see :mod:`voxelstream.specs`), or of
:class:`~voxelstream.specs.LazySpec` s that name a spec imported on first use; the engine
collects them from all plugins.

Every ``voxelstream`` start imports every registration module and ``voxelstream plugins``
calls every hook: keep both cheap (no dask, zarr, JAX at import time). A hook that raises
disables only its plugin, which ``voxelstream plugins`` reports; two plugins naming the same
thing is an error naming both, raised where that name is used.
"""

from __future__ import annotations

import pluggy

PROJECT = "voxelstream"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def voxelstream_readers():  # -> list[ReaderSpec]
    """Return :class:`~voxelstream.specs.ReaderSpec` s: which input files a reader claims and
    how it turns them into lazily opened volumes."""


@hookspec
def voxelstream_stages():  # -> list[StageSpec]
    """Return :class:`~voxelstream.specs.StageSpec` s: named ``(volume, **params) -> Volume``
    transforms; :func:`voxelstream.blockwise_stage` builds one from a numpy block function."""


@hookspec
def voxelstream_models():  # -> list[ModelSpec]
    """Return :class:`~voxelstream.specs.ModelSpec` s: named model architectures that
    :func:`voxelstream.load_model` can rebuild from a saved config."""


@hookspec
def voxelstream_tasks():  # -> list[TaskSpec]
    """Return :class:`~voxelstream.specs.TaskSpec` s: a workflow for a modality, with the CLI
    commands it adds to ``voxelstream``."""
