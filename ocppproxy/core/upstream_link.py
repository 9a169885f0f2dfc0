"""
What one station's link to one central system decides, as data: L{UpstreamLinkState}
counts the failed connection attempts and the retries, gives up after
C{reconnect.max_attempts}, keeps the bounded queue of frames sent while the link is away
or stalled and says when it is flushed, and keeps the stall state. Pure: each input (an
attempt failed, the connection opened or was lost, its write buffer filled) returns the
ordered list of effects that carry it out, time is passed in, no I/O. The Twisted edge
(L{ocppproxy.wire.upstream.UpstreamLink}) does what the effects say.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .effects import Log
from .frame_queue import FrameQueue


class Told(Enum):
    """What the link's owner (the station's session) is told: one of its C{LinkOwner} methods each."""

    ATTEMPT_FAILED = "upstream_attempt_failed"
    FRAME_DROPPED = "upstream_frame_dropped"
    CONNECTED = "upstream_connected"
    DISCONNECTED = "upstream_disconnected"
    GAVE_UP = "upstream_gave_up"


@dataclass(slots=True, frozen=True)
class Tell:
    """Tell the owner C{what} happened to the link (C{reason}: why, for a failed attempt or a lost connection)."""

    what: Told
    reason: str = ""


@dataclass(slots=True, frozen=True)
class Flush:
    """
    Send the queued frames, oldest first, while the connection takes them; once all are
    sent, L{UpstreamLinkState.flushed}, and frames go straight out from then on.
    """


@dataclass(slots=True, frozen=True)
class GiveUp:
    """
    Call L{UpstreamLinkState.give_up} on the next turn of the event loop: the attempt
    that failed is still being reported to the reconnecting machinery, which must not be
    stopped from inside its own report.
    """


@dataclass(slots=True, frozen=True)
class StopReconnecting:
    """Stop the reconnecting machinery: no more connection attempts."""


@dataclass(slots=True, frozen=True)
class CountStall:
    """Count one more stall episode of this link (the metrics)."""


@dataclass(slots=True, frozen=True)
class DropConnection:
    """Drop the connection at once (no close handshake): the reconnecting machinery makes a new one."""


LinkEffect = Log | Tell | Flush | GiveUp | StopReconnecting | CountStall | DropConnection


class UpstreamLinkState:
    """
    One upstream link's counting, queue and stall state, and its rules.

    A failed connection attempt (a refused TCP connection or WebSocket handshake alike)
    counts; after C{max_attempts} failed attempts in a row the link gives up for this
    station session. L{retries} numbers the retry the next wait is for (1-based): one
    more per failed attempt or lost connection, back to none once a connection opens.
    Frames sent while the link is away, stalled or flushing wait in L{queue} (at most
    C{queue_limit}, the oldest dropped first); nothing is queued once the link gave up
    or is stopping. C{name}, C{url} and C{station_id} are for the log lines.
    """

    def __init__(self, name: str, url: str, station_id: str, max_attempts: int, queue_limit: int) -> None:
        self.name = name
        self.url = url
        self.station_id = station_id
        self.max_attempts = max_attempts
        self.queue: FrameQueue[bytes] = FrameQueue(queue_limit)
        self.failed_attempts = 0
        """Failed connection attempts since the link was last connected."""
        self.retries = 0
        self.gave_up = False
        self.stopping = False
        self.ever_connected = False
        self.stalled_since: float | None = None
        """When the connection's write buffer filled (None: not stalled)."""
        self.last_failure = "no attempt yet"

    @property
    def stalled(self) -> bool:
        """Whether the central system is not taking frames fast enough: they wait in the queue."""
        return self.stalled_since is not None

    def _fields(self, **fields) -> dict:
        return {"station": self.station_id, "upstream": self.name, **fields}

    def frame_while_away(self, payload: bytes) -> list[LinkEffect]:
        """
        A frame to send while it cannot go straight out: queued (dropped silently once
        the link gave up or is stopping). The queue full, its oldest frame is dropped: the
        owner is told each time, the log once per outage or stall.
        """
        if self.gave_up or self.stopping or not self.queue.push(payload):
            return []
        effects: list[LinkEffect] = []
        if self.queue.dropped == 1:
            effects.append(
                Log(
                    "warn",
                    "station {station}: queue for {upstream} is full ({limit} frames), dropping the oldest",
                    self._fields(limit=len(self.queue)),
                )
            )
        effects.append(Tell(Told.FRAME_DROPPED))
        return effects

    def attempt_failed(self, reason: str) -> list[LinkEffect]:
        """
        A connection attempt failed for C{reason}: the owner is told, and it counts
        towards giving up (unless the link is stopping, or gave up already).
        """
        self.last_failure = reason
        if self.stopping:
            return []
        effects: list[LinkEffect] = [
            Tell(Told.ATTEMPT_FAILED, reason),
            Log(
                "warn",
                "station {station}: connection to {upstream} ({url}) failed: {reason}",
                self._fields(url=self.url, reason=reason),
            ),
        ]
        if not self.gave_up:
            self.retries += 1
            self.failed_attempts += 1
            if self.failed_attempts >= self.max_attempts:
                effects.append(GiveUp())
        return effects

    def give_up(self) -> list[LinkEffect]:
        """Stop reconnecting for this station session (unless stopping, or done already); the queue is dropped."""
        if self.stopping or self.gave_up:
            return []
        self.gave_up = True
        self.queue.clear()
        return [
            Log(
                "error",
                "station {station}: giving up on {upstream} ({url}) after {attempts} failed attempts, last: {reason}",
                self._fields(url=self.url, attempts=self.failed_attempts, reason=self.last_failure),
            ),
            StopReconnecting(),
            Tell(Told.GAVE_UP),
        ]

    def opened(self) -> list[LinkEffect]:
        """The WebSocket handshake succeeded: the counts start again, the queue is flushed, the owner told."""
        self.ever_connected = True
        self.retries = 0
        self.failed_attempts = 0
        return [
            Log(
                "info",
                "station {station}: connected to {upstream} ({url}), {count} queued frames flushed",
                self._fields(url=self.url, count=len(self.queue)),
            ),
            Flush(),
            Tell(Told.CONNECTED),
        ]

    def flushed(self, now: float) -> list[LinkEffect]:
        """
        Every queued frame is sent and the connection takes more at C{now}: frames go
        straight out from now on; the frames dropped meanwhile are reported, a stall ends.
        """
        dropped = self.queue.dropped
        self.queue.drain()
        effects: list[LinkEffect] = []
        if dropped:
            effects.append(
                Log(
                    "warn",
                    "station {station}: {dropped} frames for {upstream} were dropped while it was away or stalled"
                    " (queue full)",
                    self._fields(dropped=dropped),
                )
            )
        if self.stalled_since is not None:
            effects.append(
                Log(
                    "info",
                    "station {station}: {upstream} takes frames again after a {duration:.1f} s stall",
                    self._fields(duration=now - self.stalled_since),
                )
            )
            self.stalled_since = None
        return effects

    def buffer_full(self, now: float, limit: int) -> list[LinkEffect]:
        """
        Over C{limit} bytes unsent at C{now}: frames wait in the queue until the buffer
        drains (then L{Flush}); a new stall is counted and logged.
        """
        if self.stalled_since is not None:
            return []
        self.stalled_since = now
        return [
            CountStall(),
            Log(
                "warn",
                "station {station}: {upstream} ({url}) is not taking frames as fast as they come (over {limit} bytes"
                " unsent): they wait in its queue",
                self._fields(url=self.url, limit=limit),
            ),
        ]

    def buffer_drained(self) -> list[LinkEffect]:
        """The buffer has drained: send what waited."""
        return [Flush()]

    def buffer_stalled(self, timeout: float) -> list[LinkEffect]:
        """The buffer has not drained within C{timeout} seconds: the connection is dropped, and made again."""
        return [
            Log(
                "warn",
                "station {station}: {upstream} ({url}) has not taken its unsent frames in {timeout:g} s (stalled):"
                " dropping the connection and reconnecting",
                self._fields(url=self.url, timeout=timeout),
            ),
            DropConnection(),
        ]

    def disconnected(self, reason: str) -> list[LinkEffect]:
        """The open connection was lost for C{reason}: a stall ends with it (the queue stays); a retry follows."""
        self.stalled_since = None
        self.retries += 1
        return [
            Log(
                "info",
                "station {station}: disconnected from {upstream} ({reason}), reconnecting",
                self._fields(reason=reason),
            ),
            Tell(Told.DISCONNECTED, reason),
        ]

    def stop(self) -> None:
        """The station's session ends: nothing more is queued, reported or retried."""
        self.stopping = True
        self.queue.clear()
        self.stalled_since = None


def backoff_exponent(retry: int) -> int:
    """
    The power of C{reconnect.factor} in the wait before the C{retry}-th retry (1-based):
    C{retry - 1}, between 0 and 64 (past that, any factor over 1 is at C{max_delay} long
    before, and the power would only overflow).
    """
    return min(max(retry - 1, 0), 64)


def jittered(delay: float, jitter: float) -> float:
    """C{delay} less up to 20% (C{jitter} in [0, 1)), so that stations dropped together do not all come back together."""
    return delay * (1.0 - 0.2 * jitter)
