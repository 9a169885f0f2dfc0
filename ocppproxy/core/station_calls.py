"""
CALLs from the central systems to the station, one at a time (OCPP-J: a party should not
send a CALL while an earlier one is unanswered), with a per-upstream policy of which
actions may reach the station. Pure: time is passed in, frames come back as
L{ocppproxy.core.effects.Send} effects.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from .effects import STATION, Send
from .ocppj import Frame, call_error


@dataclass(slots=True)
class _Waiting:
    upstream: str
    message_id: str
    payload: bytes
    since: float


class StationBoundCalls:
    """
    At most one upstream CALL outstanding at the station; the others wait in arrival
    order (at most C{waiting_limit}). A CALL that waits longer than C{timeout} is answered
    to its upstream with a CALLERROR; an outstanding CALL unanswered after C{timeout} is
    forgotten (its late answer is dropped) and the next one goes out.

    Since only one is ever outstanding, the primary's and the secondary's message ids
    cannot collide at the station and are never rewritten.
    """

    def __init__(self, timeout: float, waiting_limit: int = 100, policies: Mapping[str, frozenset | None] = {}) -> None:
        self._timeout = timeout
        self._waiting_limit = waiting_limit
        self._policies = dict(policies)
        self._outstanding: tuple[str, str, float] | None = None
        # A deque once a CALL has had to wait (an empty one is about 770 bytes, per station).
        self._waiting: deque[_Waiting] | tuple[()] = ()

    def __len__(self) -> int:
        return len(self._waiting) + (self._outstanding is not None)

    def set_policy(self, upstream: str, allowed: frozenset | None) -> None:
        """Which actions C{upstream} may send from now on (None: all)."""
        self._policies[upstream] = allowed

    def holds(self, upstream: str) -> bool:
        """Whether a CALL of C{upstream} is outstanding at the station or waiting for it."""
        outstanding = self._outstanding
        if outstanding is not None and outstanding[1] == upstream:
            return True
        return any(call.upstream == upstream for call in self._waiting)

    def offer(self, upstream: str, frame: Frame, payload: bytes, now: float) -> tuple[str, list[Send]]:
        """
        An upstream sent a CALL for the station: C{("sent" | "waiting" | "refused", sends)}
        where C{sends} holds the CALL itself when sent, a CALLERROR when refused, and
        whatever expired meanwhile.
        """
        sends = self.expire(now)
        allowed = self._policies.get(upstream)
        if allowed is not None and frame.action not in allowed:
            reason = f"{frame.action} from the {upstream} central system is not allowed by the proxy"
            return "refused", [*sends, Send(upstream, call_error(frame.message_id, "SecurityError", reason))]
        if self._outstanding is None:
            self._outstanding = (frame.message_id, upstream, now + self._timeout)
            return "sent", [*sends, Send(STATION, payload)]
        if len(self._waiting) >= self._waiting_limit:
            reason = "too many CALLs waiting for the station"
            return "refused", [*sends, Send(upstream, call_error(frame.message_id, "GenericError", reason))]
        waiting = self._waiting
        if not isinstance(waiting, deque):
            waiting = self._waiting = deque()
        waiting.append(_Waiting(upstream, frame.message_id, payload, now))
        return "waiting", sends

    def answer(self, message_id: str, payload: bytes, now: float) -> tuple[str | None, list[Send]]:
        """The station answered: the upstream it goes to (None if no such CALL is outstanding), and what follows."""
        sends = self.expire(now)
        outstanding = self._outstanding
        if outstanding is None or outstanding[0] != message_id:
            return None, sends
        self._outstanding = None
        return outstanding[1], [Send(outstanding[1], payload), *sends, *self._next(now)]

    def expire(self, now: float) -> list[Send]:
        """CALLERRORs for CALLs that waited too long, and the next CALL if the outstanding one timed out."""
        sends = []
        waiting = self._waiting
        while waiting and waiting[0].since + self._timeout <= now:
            late = waiting.popleft()
            reason = f"the station was busy with another CALL for {self._timeout:.0f} s"
            sends.append(Send(late.upstream, call_error(late.message_id, "GenericError", reason)))
        if self._outstanding is not None and self._outstanding[2] <= now:
            self._outstanding = None
            sends.extend(self._next(now))
        return sends

    def next_deadline(self) -> float | None:
        """When L{expire} next has something to do, or None."""
        deadlines = []
        if self._outstanding is not None:
            deadlines.append(self._outstanding[2])
        if self._waiting:
            deadlines.append(self._waiting[0].since + self._timeout)
        return min(deadlines) if deadlines else None

    def _next(self, now: float) -> list[Send]:
        if not self._waiting:
            return []
        call = self._waiting.popleft()
        self._outstanding = (call.message_id, call.upstream, now + self._timeout)
        return [Send(STATION, call.payload)]
