"""
The station's pending CALLs and which upstream's answer reaches the station, failover
included. Pure: time is passed in; each answer gets a verdict, the caller sends.
"""

from __future__ import annotations

from collections import OrderedDict

LATE = "primary answer to no pending station CALL (late or unknown)"


class _StationCall:
    """
    A station CALL waiting for its answer from C{answerer} (the primary when it was sent);
    C{count} > 1 if the station reused its id meanwhile.
    """

    __slots__ = ("answered", "answerer", "count", "deadline", "held")

    def __init__(self, deadline: float, answerer: str) -> None:
        self.deadline = deadline
        self.answerer = answerer
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

    Upstreams are named: C{primary} is the one whose answers reach the station for the
    CALLs sent from now on (each CALL keeps the primary of its time, so a change of
    primary never gives a CALL two answers), C{failover} the mirror playing the secondary's
    part above (None: no failover). L{answer} (and, for one primary and one secondary,
    L{primary_answer} and L{secondary_answer}) return None when the answer goes to the
    station, otherwise why not (L{LATE} for an answer to no pending CALL).
    """

    def __init__(
        self, timeout: float, limit: int, failover: bool | str | None = False, primary: str = "primary"
    ) -> None:
        self._timeout = timeout
        self._limit = limit
        self.failover: str | None = "secondary" if failover is True else (failover or None)
        self.primary = primary
        self._calls: OrderedDict[str, _StationCall] = OrderedDict()
        self._reasons: dict[str, str] = {}
        self.primary_connected = False

    def __len__(self) -> int:
        return len(self._calls)

    def station_call(self, message_id: str, now: float) -> None:
        """The station sent a CALL: the primary (and with failover the failover mirror) may answer it."""
        self._expire(now)
        call = self._calls.pop(message_id, None)
        if call is not None and not call.answered:
            # The station reused an id still unanswered: both answers are relayed.
            call.count += 1
            call.deadline = now + self._timeout
        else:
            call = _StationCall(now + self._timeout, self.primary)
        self._calls[message_id] = call
        while len(self._calls) > self._limit:
            self._calls.popitem(last=False)

    def answer(self, name: str, message_id: str, payload: bytes, now: float) -> str | None:
        """Upstream C{name} answered C{message_id} (with C{payload}): None if it goes to the station, else why not."""
        if name != self.primary and name != self.failover:
            # A mirror's answer, most often: consumed unless that mirror was the primary when the CALL was sent.
            call = self._calls.get(message_id)
            if call is None or call.answerer != name:
                return self._only_primary(name)
        self._expire(now)
        call = self._calls.get(message_id)
        if call is not None and call.answerer == name:
            call.count -= 1
            if call.count <= 0:
                del self._calls[message_id]
            if call.answered:
                return f"primary answer to a CALL the {self.failover} already answered"
            return None
        if name == self.failover:
            return self._failover_answer(call, name, payload)
        if call is None and name == self.primary:
            return LATE
        if call is not None and name == self.primary:
            return f"answer from {name}: {call.answerer} answers the CALLs sent before {name} became the primary"
        return self._only_primary(name)

    def _only_primary(self, name: str) -> str:
        reason = self._reasons.get(name)
        if reason is None:
            reason = self._reasons[name] = f"answer from {name}: only the primary answers the station"
        return reason

    def _failover_answer(self, call: _StationCall | None, name: str, payload: bytes) -> str | None:
        if call is None or call.answered:
            return f"{name} answer not needed"
        if self.primary_connected:
            call.held = payload
            return f"{name} answer held until the primary answers"
        call.answered = True
        call.held = None
        return None

    def primary_answer(self, message_id: str, now: float) -> str | None:
        """The primary answered C{message_id}: None if the answer goes to the station, else why not."""
        return self.answer(self.primary, message_id, b"", now)

    def secondary_answer(self, message_id: str, payload: bytes, now: float) -> str | None:
        """The secondary answered C{message_id} (with C{payload}, held if need be): None if it goes to the station."""
        return self.answer("secondary", message_id, payload, now)

    def next_deadline(self) -> float | None:
        """When the oldest pending station CALL stops waiting for its answer, or None."""
        for call in self._calls.values():
            return call.deadline
        return None

    def owes(self, name: str, now: float) -> bool:
        """Whether a pending station CALL waits for C{name}'s answer."""
        self._expire(now)
        return any(call.answerer == name for call in self._calls.values())

    def primary_lost(self, now: float) -> list[bytes]:
        """The primary link dropped: the held failover answers to its CALLs go to the station now, in order."""
        self.primary_connected = False
        self._expire(now)
        released = []
        primary = self.primary
        for call in self._calls.values():
            if call.held is not None and not call.answered and call.answerer == primary:
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
