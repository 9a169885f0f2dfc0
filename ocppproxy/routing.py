"""
Per-station routing decisions: where a frame goes, which upstream asked what, and the
bounded queues of frames waiting for an upstream. Pure: time is passed in, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Generic, Iterable, TypeVar

from .ocppj import ANSWERS, CALL, Frame

STATION = "station"
PRIMARY = "primary"
SECONDARY = "secondary"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route:
    """Where one frame goes: a tuple of targets (upstream names or L{STATION}), and why not if empty."""

    targets: tuple[str, ...]
    dropped_because: str | None = None


class PendingCalls:
    """
    CALLs sent by upstreams to the station and not answered yet: message id -> upstream.

    Entries expire after C{timeout} seconds and at most C{limit} are kept (oldest go
    first), so a station that never answers cannot make this grow without bound.
    """

    def __init__(self, timeout: float, limit: int) -> None:
        self._timeout = timeout
        self._limit = limit
        self._calls: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, message_id: str, upstream: str, now: float) -> str | None:
        """Remember a CALL; returns the upstream whose CALL with the same id it replaces, if any."""
        self.expire(now)
        previous = self._calls.pop(message_id, None)
        self._calls[message_id] = (upstream, now + self._timeout)
        while len(self._calls) > self._limit:
            self._calls.popitem(last=False)
        return previous[0] if previous is not None else None

    def pop(self, message_id: str, now: float) -> str | None:
        """The upstream that sent the CALL this answer is for, or None if unknown or expired."""
        self.expire(now)
        entry = self._calls.pop(message_id, None)
        return entry[0] if entry is not None else None

    def expire(self, now: float) -> None:
        """Forget CALLs older than the timeout (insertion order is expiry order)."""
        calls = self._calls
        while calls:
            _, (_, deadline) = next(iter(calls.items()))
            if deadline > now:
                break
            calls.popitem(last=False)


class StationRouter:
    """
    The relaying rules for one station in front of a primary and optional secondary.

    Station CALLs go to every upstream; only the primary's answers reach the station;
    an upstream's CALL reaches the station and the station's answer returns to that
    upstream only.
    """

    def __init__(self, upstreams: Iterable[str], pending_timeout: float = 40.0, pending_limit: int = 1000) -> None:
        self.upstreams = tuple(upstreams)
        self.pending = PendingCalls(pending_timeout, pending_limit)

    def from_station(self, frame: Frame, now: float) -> Route:
        """Where a frame sent by the station goes."""
        if frame.kind in ANSWERS:
            upstream = self.pending.pop(frame.message_id, now)
            if upstream is None:
                return Route((), "answer to no pending upstream CALL")
            return Route((upstream,))
        return Route(self.upstreams)

    def from_upstream(self, upstream: str, frame: Frame, now: float) -> Route:
        """Where a frame sent by C{upstream} goes."""
        if frame.kind == CALL:
            self.pending.add(frame.message_id, upstream, now)
            return Route((STATION,))
        if frame.kind in ANSWERS:
            if upstream == PRIMARY:
                return Route((STATION,))
            return Route((), f"answer from {upstream}: only the primary answers the station")
        return Route((), f"{frame.kind_name} from a central system is not relayed")


class FrameQueue(Generic[T]):
    """Frames waiting for an upstream: bounded, the oldest dropped first and counted."""

    def __init__(self, limit: int) -> None:
        self._items: deque[T] = deque()
        self._limit = limit
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: T) -> bool:
        """Queue C{item}; returns True if the oldest frame had to be dropped for it."""
        self._items.append(item)
        if len(self._items) > self._limit:
            self._items.popleft()
            self.dropped += 1
            return True
        return False

    def drain(self) -> list[T]:
        """Everything queued, oldest first; the queue and its drop count are reset."""
        items = list(self._items)
        self._items.clear()
        self.dropped = 0
        return items

    def clear(self) -> int:
        """Discard everything; returns how many frames were discarded."""
        count = len(self._items)
        self._items.clear()
        return count
