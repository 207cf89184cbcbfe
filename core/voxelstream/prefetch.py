"""Running an iterator ahead in a background thread (reading overlaps computing)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")


def prefetch(it: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of ``it`` in order while a thread produces up to ``depth`` ahead.

    Training loops use it so that reading and augmenting the next batch (numpy, I/O: GIL
    released) overlaps the current step. An exception raised by ``it`` is re-raised here, at
    the position it happened.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()

    def work() -> None:
        try:
            for item in it:
                q.put(item)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
        q.put(done)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
