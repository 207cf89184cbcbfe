"""What plugins hand to the engine: small frozen records, one kind per hook."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .volume import Volume

__all__ = [
    "Source", "SourceError", "ReaderSpec", "StageSpec", "ModelSpec", "TaskSpec", "CommandSpec", "LazySpec",
]


@dataclass(frozen=True)
class Source:
    """One volume a reader found: cheap to make (headers only), opened lazily.

    ``open`` must return a :class:`Volume` whose data is a lazy dask array: no pixel data
    may be read before the graph runs. ``open`` must be picklable when the volume is to be
    built on a dask.distributed worker (a module-level function or ``functools.partial``).
    ``files``: the files the volume is read from, when the reader knows them; ingest
    fingerprints them (names, sizes, modification times) so a rerun re-reads a changed
    volume. Without them the location's file and its companions, or its whole folder, count.
    """

    volume_id: str
    location: str
    open: Callable[[], Volume]
    reader: str = ""
    description: str = ""
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceError:
    """An input a reader claimed but cannot open; ``reason`` is one line, for a user."""

    location: str
    reason: str


@dataclass(frozen=True)
class ReaderSpec:
    """A reader.

    Attributes:
        name: unique reader name (e.g. ``"dicom"``).
        claims: cheap test on one file (suffix, magic bytes): does this reader handle it?
            Files a reader needs only as companions (a ``.raw`` beside its ``.mhd``) should be
            listed by ``companions``.
        discover: ``discover(files, options)``: given the files it claimed under one input
            and the :class:`~voxelstream.discovery.ReadOptions`, return one :class:`Source` per
            volume found and one :class:`SourceError` per unreadable file or group.
        companions: suffixes of files that belong to claimed files and need no claim.
        priority: readers are asked in descending priority.
    """

    name: str
    claims: Callable[[Path], bool]
    discover: Callable[[Sequence[Path], Any], Iterable[Source | SourceError]]
    companions: tuple[str, ...] = ()
    priority: int = 0
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class StageSpec:
    """A named volume transform ``fn(volume, **params) -> Volume`` (lazy)."""

    name: str
    fn: Callable[..., Volume]
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # documented defaults
    plugin: str = ""

    def __call__(self, volume: Volume, **params: Any) -> Volume:
        """Run the stage lazily; the output's ``meta["history"]`` records it."""
        from .stages import apply_stage

        return apply_stage(self, volume, params)


@dataclass(frozen=True)
class ModelSpec:
    """A model architecture: ``build(config: dict, seed: int)`` returns the model object."""

    name: str
    build: Callable[..., Any]
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class CommandSpec:
    """A CLI sub-command: ``add_arguments(parser)`` then ``run(args) -> exit status``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """A workflow for one modality (e.g. lung-nodule detection on CT) and its commands."""

    name: str
    modality: str
    description: str = ""
    commands: tuple[CommandSpec, ...] = ()
    plugin: str = ""


@dataclass(frozen=True)
class LazySpec:
    """A name a plugin registers now whose spec is imported only when the name is used.

    Return it from a hook in place of the spec itself when building the spec needs heavy
    modules (dask, scipy, JAX): every ``voxelstream`` start imports every registration
    module and ``voxelstream plugins`` calls every hook, so these must stay cheap::

        @voxelstream.hookimpl
        def voxelstream_stages():
            return [voxelstream.LazySpec("resample", "voxelstream_resample.stage:RESAMPLE_STAGE")]

    Attributes:
        name: the name registered (the loaded spec must carry the same name).
        target: ``"package.module:ATTRIBUTE"``, a module-level spec of the hook's kind.
        description: one line for listings, so they need not import the target.
    """

    name: str
    target: str
    description: str = ""

    def __post_init__(self) -> None:
        from .lazy import _split

        _split(self.target)  # a malformed target is the plugin author's error: fail at registration

    def load(self) -> Any:
        """Import and return the spec behind this name."""
        from .lazy import import_target

        return import_target(self.target)
