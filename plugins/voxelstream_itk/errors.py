"""The one error type of this reader: a file, and what is wrong with it (plus what to do)."""

from __future__ import annotations

from voxelstream.errors import ReadError

__all__ = ["ImageFileError"]


class ImageFileError(ReadError):
    """``path`` cannot be read; ``reason`` says why and what to do (one line, no path)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # raised inside dask tasks: must survive the trip back from a worker
        return (type(self), (self.path, self.reason))
