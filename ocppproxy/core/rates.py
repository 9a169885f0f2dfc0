"""
Per-station rates, counted with the time passed in: the frames a station sends (a token
bucket, L{TokenBucket}) and the connections of one station id over a sliding minute
(L{ConnectCounter}). Pure: the station's edge applies the decisions.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple


class TokenBucket:
    """
    C{rate} tokens a second, at most C{burst} held, full at C{now}; one token per frame.

    Nothing is refused here: a frame taken without a token leaves the bucket in debt
    (negative tokens), which the caller pays by not reading for L{wait} seconds. So
    frames already read when the bucket empties are relayed all the same, and a station
    still averages C{rate} frames a second over any span longer than C{burst / rate}.
    C{rested} is True while the bucket has been full since the caller last cleared it:
    the start of a new throttling episode, for one log line per episode.
    """

    __slots__ = ("burst", "rate", "rested", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = self.burst
        self.stamp = now
        self.rested = True

    def take(self, now: float) -> float:
        """One frame at C{now}: the tokens left after it (below zero: in debt)."""
        # On every frame a station sends: a few float operations, no call.
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens >= self.burst:
            tokens = self.burst
            self.rested = True
        self.stamp = now
        self.tokens = tokens = tokens - 1.0
        return tokens

    def wait(self, now: float) -> float:
        """Seconds from C{now} until the debt is paid (0.0 when there is none)."""
        tokens = self.tokens + (now - self.stamp) * self.rate
        # Float rounding leaves a debt of 1e-15 s where it was paid exactly: that is none.
        return -tokens / self.rate if tokens < -1e-9 else 0.0


class ConnectRefusal(NamedTuple):
    """A station id over its limit: seconds until it may connect again, and whether this refusal starts an episode."""

    retry_after: int
    first: bool


class ConnectCounter:
    """
    The connections accepted per station id over the last C{window} seconds, at most
    C{limit} of them: L{check} refuses an id with C{limit} accepted within the window.

    Memory stays bounded whatever ids are seen: an id holds at most C{limit} times, and
    an id whose latest connection is older than the window is forgotten (the ids are
    kept in the order of their latest connection, so pruning looks only at the oldest).
    """

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        # A short list per id (an empty deque alone is about 770 bytes, one per station
        # connected within the window): at most C{limit} times, the oldest first.
        self._times: OrderedDict[str, list[float]] = OrderedDict()
        self._refusing: set[str] = set()

    def __len__(self) -> int:
        """How many station ids are remembered."""
        return len(self._times)

    def accepted(self, station: str, now: float) -> None:
        """A connection of C{station} was accepted at C{now}."""
        times = self._times.pop(station, None)
        if times is None:
            times = []
        times.append(now)
        if len(times) > self.limit:
            del times[0]
        self._times[station] = times
        self._prune(now)

    def check(self, station: str, now: float) -> ConnectRefusal | None:
        """None if C{station} may connect at C{now}; else when it may, and whether its refusals start now."""
        self._prune(now)
        times = self._times.get(station)
        if times is not None:
            while times and times[0] <= now - self.window:
                del times[0]
            if not times:
                del self._times[station]
        if not times or len(times) < self.limit:
            self._refusing.discard(station)
            return None
        first = station not in self._refusing
        self._refusing.add(station)
        return ConnectRefusal(max(1, math.ceil(times[0] + self.window - now)), first)

    def _prune(self, now: float) -> None:
        """Forget the ids whose latest connection left the window."""
        times = self._times
        while times:
            station, latest = next(iter(times.items()))
            if latest[-1] > now - self.window:
                return
            del times[station]
            self._refusing.discard(station)
