"""A bounded queue of frames waiting for an upstream: the oldest dropped first, and counted. Pure."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FrameQueue(Generic[T]):
    """Frames waiting for an upstream: bounded, the oldest dropped first and counted."""

    __slots__ = ("_items", "_limit", "dropped")

    def __init__(self, limit: int) -> None:
        # Created on first use: an empty deque costs ~600 bytes, and most queues stay empty.
        self._items: deque[T] | None = None
        self._limit = limit
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def push(self, item: T) -> bool:
        """Queue C{item}; returns True if the oldest frame had to be dropped for it."""
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        if len(self._items) > self._limit:
            self._items.popleft()
            self.dropped += 1
            return True
        return False

    def popleft(self) -> T:
        """The oldest frame, taken off the queue (which must not be empty)."""
        return self._items.popleft()

    def drain(self) -> list[T]:
        """Everything queued, oldest first; the queue and its drop count are reset."""
        items = list(self._items or ())
        self._items = None
        self.dropped = 0
        return items

    def clear(self) -> int:
        """Discard everything; returns how many frames were discarded."""
        count = len(self)
        self._items = None
        return count
