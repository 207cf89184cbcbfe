"""Exceptions for user errors: their message is shown as one line, without a traceback."""

from __future__ import annotations


class VoxelstreamError(Exception):
    """Base class of errors caused by input or configuration rather than by a bug."""


class ReadError(VoxelstreamError):
    """An input cannot be read (which file, what is wrong, what to do)."""


class StoreError(VoxelstreamError):
    """A store is missing, incomplete or inconsistent."""


class PluginConflictError(VoxelstreamError):
    """Two plugins register the same name."""


class UnknownNameError(VoxelstreamError, KeyError):
    """No plugin registers the requested reader, stage, model or task."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
