"""
Per-station routing decisions: where a frame goes and which upstream asked what (the
queue of frames waiting for an upstream is L{ocppproxy.core.frame_queue}). Pure: time is
passed in, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .ocppj import ANSWERS, CALL, Frame
from .station_calls import Send, StationBoundCalls

STATION = "station"
PRIMARY = "primary"
SECONDARY = "secondary"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one frame goes: a tuple of targets (upstream names or L{STATION}), and why not if empty."""

    targets: tuple[str, ...]
    dropped_because: str | None = None
    also: tuple[Send, ...] = ()
    late: bool = False  # an answer to a CALL that has expired or was never seen


class _StationCall:
    """A station CALL waiting for its answer; C{count} > 1 if the station reused its id meanwhile."""

    __slots__ = ("answered", "count", "deadline", "held")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.count = 1
        self.answered = False
        self.held: bytes | None = None


class StationCallAnswers:
    """
    The station's pending CALLs, and which upstream's answer reaches the station.

    Without failover only the primary's answers do, and only to a CALL sent less than
    C{timeout} seconds ago: a late answer (or one to an id the station never used) is
    dropped, and at most C{limit} CALLs are remembered, so a station whose CALLs nobody
    answers cannot grow memory.

    With failover, while the primary is connected its answers go to the station and the
    secondary's are held back until the primary answers (then dropped) or the primary
    link drops (then relayed). While the primary is away the secondary's answers go to
    the station at once, and the primary's answers to CALLs already answered are dropped
    when it is back. The station never receives two answers to one CALL.
    """

    def __init__(self, timeout: float, limit: int, failover: bool = False) -> None:
        self._timeout = timeout
        self._limit = limit
        self._failover = failover
        self._calls: OrderedDict[str, _StationCall] = OrderedDict()
        self.primary_connected = False

    def __len__(self) -> int:
        return len(self._calls)

    def station_call(self, message_id: str, now: float) -> None:
        """The station sent a CALL: the primary (and with failover the secondary) may answer it."""
        self._expire(now)
        call = self._calls.pop(message_id, None)
        if call is not None and not call.answered:
            # The station reused an id still unanswered: both answers are relayed.
            call.count += 1
            call.deadline = now + self._timeout
        else:
            call = _StationCall(now + self._timeout)
        self._calls[message_id] = call
        while len(self._calls) > self._limit:
            self._calls.popitem(last=False)

    def primary_answer(self, message_id: str, now: float) -> Route:
        self._expire(now)
        call = self._calls.get(message_id)
        if call is None:
            return Route((), "primary answer to no pending station CALL (late or unknown)", late=True)
        call.count -= 1
        if call.count <= 0:
            del self._calls[message_id]
        if call.answered:
            return Route((), "primary answer to a CALL the secondary already answered")
        return Route((STATION,))

    def secondary_answer(self, message_id: str, payload: bytes, now: float) -> Route:
        if not self._failover:
            return Route((), "answer from secondary: only the primary answers the station")
        self._expire(now)
        call = self._calls.get(message_id)
        if call is None or call.answered:
            return Route((), "secondary answer not needed")
        if self.primary_connected:
            call.held = payload
            return Route((), "secondary answer held until the primary answers")
        call.answered = True
        call.held = None
        return Route((STATION,))

    def primary_lost(self, now: float) -> list[bytes]:
        """The primary link dropped: the held secondary answers go to the station now, in order."""
        self.primary_connected = False
        self._expire(now)
        released = []
        for call in self._calls.values():
            if call.held is not None and not call.answered:
                released.append(call.held)
                call.held = None
                call.answered = True
        return released

    def _expire(self, now: float) -> None:
        calls = self._calls
        while calls:
            call = next(iter(calls.values()))
            if call.deadline > now:
                break
            calls.popitem(last=False)


class StationRouter:
    """
    The relaying rules for one station in front of a primary and optional secondary.

    Station CALLs go to every upstream; only the primary's answers reach the station
    (with C{failover}, the secondary's too while the primary is away: see
    L{StationCallAnswers}); an upstream's CALL reaches the station and the station's answer
    returns to that upstream only.
    """

    def __init__(
        self,
        upstreams: Iterable[str],
        pending_timeout: float = 40.0,
        pending_limit: int = 1000,
        failover: bool = False,
        call_policies: Mapping[str, frozenset | None] = {},
    ) -> None:
        self.upstreams = tuple(upstreams)
        self.station_calls = StationBoundCalls(pending_timeout, policies=call_policies)
        self.answers = StationCallAnswers(pending_timeout, pending_limit, failover)
        self.failover = self.answers if failover else None

    def from_station(self, frame: Frame, now: float, payload: bytes = b"") -> Route:
        """Where a frame sent by the station goes (an answer may release the next upstream CALL in C{also})."""
        if frame.kind in ANSWERS:
            upstream, sends = self.station_calls.answer(frame.message_id, payload, now)
            if upstream is None:
                return Route((), "answer to no outstanding upstream CALL (late or unknown)", tuple(sends))
            return Route((), None, tuple(sends))
        if frame.kind == CALL:
            self.answers.station_call(frame.message_id, now)
        return Route(self.upstreams)

    def from_upstream(self, upstream: str, frame: Frame, now: float, payload: bytes = b"") -> Route:
        """Where a frame sent by C{upstream} goes (C{payload} is its text, kept by failover)."""
        if frame.kind == CALL:
            outcome, sends = self.station_calls.offer(upstream, frame, payload, now)
            because = {
                "sent": None,
                "waiting": "waits until the station has answered an earlier CALL",
                "refused": "refused by the proxy (not allowed, or too many waiting)",
            }[outcome]
            return Route((), because, tuple(sends))
        if frame.kind in ANSWERS:
            if upstream == PRIMARY:
                return self.answers.primary_answer(frame.message_id, now)
            return self.answers.secondary_answer(frame.message_id, payload, now)
        return Route((), f"{frame.kind_name} from a central system is not relayed")
