"""Exceptions for user errors: their message is shown as one line, without a traceback."""

from __future__ import annotations


class VoxelstreamError(Exception):
    """Base class of errors caused by input or configuration rather than by a bug."""


class ReadError(VoxelstreamError):
    """An input cannot be read (which file, what is wrong, what to do)."""


class StoreError(VoxelstreamError):
    """A store is missing, incomplete or inconsistent."""


class PluginError(VoxelstreamError):
    """A plugin cannot provide what it registered (its import, a hook or a lazily loaded
    implementation failed); the message names the plugin."""


class PluginConflictError(PluginError):
    """Two plugins register the same name; raised where that name is used."""


class UnknownNameError(VoxelstreamError, KeyError):
    """No plugin registers the requested reader, stage, model or task."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
