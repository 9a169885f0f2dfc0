"""
The station's pending CALLs and which upstream's answer reaches the station, failover
included. Pure: time is passed in; each answer gets a verdict, the caller sends.
"""

from __future__ import annotations

from collections import OrderedDict

LATE = "primary answer to no pending station CALL (late or unknown)"


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

    L{primary_answer} and L{secondary_answer} return None when the answer goes to the
    station, otherwise why not (L{LATE} for an answer to no pending CALL).
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

    def primary_answer(self, message_id: str, now: float) -> str | None:
        """The primary answered C{message_id}: None if the answer goes to the station, else why not."""
        self._expire(now)
        call = self._calls.get(message_id)
        if call is None:
            return LATE
        call.count -= 1
        if call.count <= 0:
            del self._calls[message_id]
        if call.answered:
            return "primary answer to a CALL the secondary already answered"
        return None

    def secondary_answer(self, message_id: str, payload: bytes, now: float) -> str | None:
        """The secondary answered C{message_id} (with C{payload}, held if need be): None if it goes to the station."""
        if not self._failover:
            return "answer from secondary: only the primary answers the station"
        self._expire(now)
        call = self._calls.get(message_id)
        if call is None or call.answered:
            return "secondary answer not needed"
        if self.primary_connected:
            call.held = payload
            return "secondary answer held until the primary answers"
        call.answered = True
        call.held = None
        return None

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
