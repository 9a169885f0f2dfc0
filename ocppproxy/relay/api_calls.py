"""
The control-plane API's CALLs to one station, waiting for their answers: each a Deferred
that fires with the station's answer (a CALLRESULT or CALLERROR, as bytes) or fails
with L{CallTimeout}, L{StationGone} or L{QueueFull}. The CALL itself goes through the
station's queue of CALLs (L{ocppproxy.core.routing.StationRelay.api_call}); the session
hands the answers addressed to L{ocppproxy.core.effects.API} here.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred


class CallTimeout(Exception):
    """The station did not answer within the call's timeout."""


class StationGone(Exception):
    """The station is not connected, or left before answering."""


class QueueFull(Exception):
    """Too many CALLs already wait for the station."""


class ApiCalls:
    """The API's CALLs outstanding at one station, by message id; C{clock} times them out."""

    def __init__(self, clock) -> None:
        self._clock = clock
        self._pending: dict[str, tuple[Deferred[bytes], object]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def start(self, message_id: str, timeout: float) -> Deferred[bytes]:
        """A CALL C{message_id} is about to be offered: its answer, or L{CallTimeout} after C{timeout} seconds."""
        answer: Deferred[bytes] = Deferred()
        timer = self._clock.callLater(timeout, self._fail, message_id, CallTimeout())
        self._pending[message_id] = (answer, timer)
        return answer

    def answered(self, payload: bytes) -> None:
        """The station's answer to one of the API's CALLs (a late or unknown one is dropped)."""
        try:
            message_id = json.loads(payload)[1]
        except (ValueError, IndexError, TypeError, KeyError):
            return
        entry = self._pending.pop(message_id, None) if isinstance(message_id, str) else None
        if entry is not None:
            answer, timer = entry
            if timer.active():
                timer.cancel()
            answer.callback(payload)

    def refused(self, message_id: str) -> None:
        """The queue of CALLs to the station was full: L{QueueFull}."""
        self._fail(message_id, QueueFull())

    def gone(self) -> None:
        """The station left: every CALL still waiting fails with L{StationGone}."""
        for message_id in list(self._pending):
            self._fail(message_id, StationGone())

    def _fail(self, message_id: str, error: Exception) -> None:
        entry = self._pending.pop(message_id, None)
        if entry is not None:
            answer, timer = entry
            if timer.active():
                timer.cancel()
            answer.errback(error)
