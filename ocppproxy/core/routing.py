"""
The relaying rules for one station, as complete decisions: L{StationRelay} takes each
frame (from the station or an upstream) and each link or timer event, and returns the
ordered list of L{effects} that carry it out: what to send where, what to close, what to
tell the observer, what to log. Pure: time is passed in, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .answers import LATE, StationCallAnswers
from .effects import STATION, Close, Effect, Log, Send, Timer
from .observer import (
    FailoverEnded,
    FailoverStarted,
    FrameDropped,
    StationConnected,
    StationDisconnected,
    StationFrame,
    UpstreamAttemptFailed,
    UpstreamConnected,
    UpstreamDisconnected,
    UpstreamFrame,
)
from .ocppj import ANSWERS, CALL, Frame, FrameError, format_error_reply, parse_frame
from .redact import Redactor
from .station_calls import StationBoundCalls
from .transactions import TransactionIdTranslator, TransactionStore

PRIMARY = "primary"
SECONDARY = "secondary"
UNSUPPORTED_DATA = 1003
TRY_AGAIN_LATER = 1013

_UPSTREAM_CALL_FATES = {
    "sent": None,
    "waiting": "waits until the station has answered an earlier CALL",
    "refused": "refused by the proxy (not allowed, or too many waiting)",
}


class StationRelay:
    """
    One station's relaying state and rules: station CALLs (and SENDs) go to every
    upstream; only the primary's answers reach the station (with C{failover}, the
    secondary's too while the primary is away: see L{StationCallAnswers}); upstream CALLs
    reach the station one at a time (L{StationBoundCalls}) and the station's answer returns
    to the upstream that asked; OCPP 1.6 transaction ids are translated for the secondary;
    a station left with no connected upstream is closed with 1013.

    C{upstreams} maps each upstream's name to its URL (primary first). Every method
    returns the effects to carry out, in order; L{Timer} effects say when to call
    L{expire}. C{debug} says whether debug log lines are wanted (asked per frame, as the
    level can change while running); C{redactor} masks what a log line quotes of a frame.
    """

    def __init__(
        self,
        station_id: str,
        upstreams: Mapping[str, str],
        transactions: TransactionStore | None = None,
        pending_timeout: float = 40.0,
        pending_limit: int = 1000,
        failover: bool = False,
        call_policies: Mapping[str, frozenset | None] = {},
        debug: Callable[[], bool] = lambda: False,
        redactor: Redactor | None = None,
    ) -> None:
        self.station_id = station_id
        self._urls = dict(upstreams)
        self._names = tuple(upstreams)
        self._transactions = transactions
        self._failover = failover and SECONDARY in self._urls
        self._station_calls = StationBoundCalls(pending_timeout, policies=call_policies)
        self._answers = StationCallAnswers(pending_timeout, pending_limit, self._failover)
        self._translator: TransactionIdTranslator | None = None
        self._debug = debug
        self._redactor = redactor or Redactor()
        self._connected: set[str] = set()
        self._primary_failed = False
        self._failover_since: float | None = None
        self._closing = False
        self.subprotocol: str | None = None

    def use_subprotocol(self, subprotocol: str) -> None:
        """The OCPP version agreed with the station: its bad frames are answered in its words; 1.6 ids translated."""
        self.subprotocol = subprotocol
        if SECONDARY in self._urls and self._transactions is not None and subprotocol.startswith("ocpp1.6"):
            self._translator = TransactionIdTranslator(self.station_id, self._transactions)

    # --- the station's side

    def station_opened(self, peer: str) -> list[Effect]:
        """The station's handshake is complete."""
        station = self.station_id
        return [
            Log("info", "station {station} connected from {peer}", {"station": station, "peer": peer}),
            StationConnected(station, peer),
        ]

    def from_station(self, payload: bytes, now: float, binary: bool = False) -> list[Effect]:
        """A frame from the station: to every upstream (a CALL or SEND), or to the upstream whose CALL it answers."""
        station = self.station_id
        if binary:
            return [
                Log("warn", "station {station} sent a binary frame: closing with 1003", {"station": station}),
                Close(UNSUPPORTED_DATA, "OCPP-J frames are text"),
            ]
        try:
            frame = parse_frame(payload)
        except FrameError as error:
            return self._bad_frame(STATION, payload, error)
        if frame.kind in ANSWERS:
            upstream, sends = self._station_calls.answer(frame.message_id, payload, now)
            effects = []
            if self._debug():
                self._log_relayed(effects, [send.target for send in sends], payload)
            if upstream is None:
                effects.append(self._dropped(frame, "answer to no outstanding upstream CALL (late or unknown)"))
            effects.extend(sends)
            effects.append(Timer(self._deadline()))
        else:
            if frame.kind == CALL:
                self._answers.station_call(frame.message_id, now)
            effects = []
            if self._debug():
                self._log_relayed(effects, self._names, payload)
            translator = self._translator
            if translator is None:
                for name in self._names:
                    effects.append(Send(name, payload))
            else:
                translator.station_frame(frame)
                for name in self._names:
                    effects.append(
                        Send(name, translator.to_secondary(frame, payload) if name == SECONDARY else payload)
                    )
        effects.append(StationFrame(station, frame, payload))
        return effects

    def _log_relayed(self, effects: list[Effect], targets, payload: bytes) -> None:
        effects.append(
            Log(
                "debug",
                "station {station} -> {targets}: {frame}",
                {
                    "station": self.station_id,
                    "targets": ",".join(targets) or "nowhere",
                    "frame": self._redactor.shorten(payload),
                },
            )
        )

    def _dropped(self, frame: Frame, reason: str) -> Log:
        return Log(
            "warn",
            "station {station}: {kind} {id} dropped: {reason}",
            {"station": self.station_id, "kind": frame.kind_name, "id": frame.message_id, "reason": reason},
        )

    def _bad_frame(self, sender: str, payload: bytes, error: FrameError) -> list[Effect]:
        """A warning, and the CALLERROR its OCPP version prescribes to C{sender} if a CALL's id can be read."""
        reply = format_error_reply(payload, self.subprotocol)
        fields = {
            "station": self.station_id,
            "reason": str(error),
            "answered": ", answered with a CALLERROR" if reply else "",
            "frame": self._redactor.shorten(payload),
        }
        if sender == STATION:
            text = "station {station} sent a bad frame ({reason}){answered}: {frame}"
        else:
            text = "station {station}: {upstream} sent a bad frame ({reason}){answered}: {frame}"
            fields["upstream"] = sender
        effects: list[Effect] = [Log("warn", text, fields)]
        if reply is not None:
            effects.append(Send(sender, reply))
        return effects

    def station_closed(self, code: int | None, reason: str | None, was_opened: bool, now: float) -> list[Effect]:
        """The station's connection is gone (C{was_opened}: after its handshake completed)."""
        station = self.station_id
        effects: list[Effect] = [
            Log(
                "info",
                "station {station} disconnected (code {code}, {reason})",
                {"station": station, "code": code, "reason": reason or "no reason"},
            )
        ]
        if was_opened:
            effects.append(StationDisconnected(station, code, reason))
        effects.extend(self.closing(now))
        return effects

    def closing(self, now: float) -> list[Effect]:
        """The station is closing (or gone): no more expiry timer, and failover ends. Only the first call counts."""
        if self._closing:
            return []
        self._closing = True
        effects: list[Effect] = [Timer(None)]
        self._update_failover(effects, now)
        return effects

    def expire(self, now: float) -> list[Effect]:
        """The L{Timer} is due: CALLERRORs for upstream CALLs that waited too long, and the next CALL."""
        effects: list[Effect] = self._station_calls.expire(now)
        effects.append(Timer(self._deadline()))
        return effects

    def _deadline(self) -> float | None:
        return None if self._closing else self._station_calls.next_deadline()

    # --- the upstreams' side

    def from_upstream(self, name: str, payload: bytes, now: float) -> list[Effect]:
        """A frame from upstream C{name}: to the station (a CALL, the answer the station waits for), or consumed."""
        station = self.station_id
        try:
            frame = parse_frame(payload)
        except FrameError as error:
            return self._bad_frame(name, payload, error)
        translator = self._translator
        if translator is not None:
            if name == SECONDARY and frame.kind == CALL:
                payload = translator.from_secondary(frame, payload)
            else:
                translator.upstream_frame(name, frame)
        if frame.kind == CALL:
            effects = self._upstream_call(name, frame, payload, now)
        elif frame.kind in ANSWERS:
            if name == PRIMARY:
                reason = self._answers.primary_answer(frame.message_id, now)
            else:
                reason = self._answers.secondary_answer(frame.message_id, payload, now)
            if reason is None:
                effects = [Send(STATION, payload)]
            else:
                effects = []
                self._log_not_relayed(effects, name, frame, reason, late=reason is LATE)
        else:
            effects = []
            self._log_not_relayed(effects, name, frame, f"{frame.kind_name} from a central system is not relayed")
        effects.append(UpstreamFrame(station, name, frame, payload))
        return effects

    def _upstream_call(self, name: str, frame: Frame, payload: bytes, now: float) -> list[Effect]:
        outcome, sends = self._station_calls.offer(name, frame, payload, now)
        effects: list[Effect] = []
        reason = _UPSTREAM_CALL_FATES[outcome]
        if reason is not None:
            effects.append(
                Log(
                    "info",
                    "station {station}: {action} {id} from {upstream} {reason}",
                    {
                        "station": self.station_id,
                        "action": frame.action,
                        "id": frame.message_id,
                        "upstream": name,
                        "reason": reason,
                    },
                )
            )
        effects.extend(sends)
        effects.append(Timer(self._deadline()))
        return effects

    def _log_not_relayed(self, effects: list[Effect], name: str, frame: Frame, reason: str, late: bool = False) -> None:
        # A late answer is worth a warning; a consumed one (the secondary's) is normal.
        if late or self._debug():
            effects.append(
                Log(
                    "warn" if late else "debug",
                    "station {station}: {kind} {id} from {upstream} {fate}: {reason}",
                    {
                        "station": self.station_id,
                        "kind": frame.kind_name,
                        "id": frame.message_id,
                        "upstream": name,
                        "fate": "dropped" if late else "consumed",
                        "reason": reason,
                    },
                )
            )

    def upstream_connected(self, name: str, now: float) -> list[Effect]:
        """The link to C{name} completed its handshake (its queued frames are already flushed)."""
        self._connected.add(name)
        if name == PRIMARY:
            self._primary_failed = False
            self._answers.primary_connected = True
        effects: list[Effect] = [UpstreamConnected(self.station_id, name, self._urls[name])]
        self._update_failover(effects, now)
        return effects

    def upstream_disconnected(self, name: str, reason: str, now: float) -> list[Effect]:
        """An open link dropped: held failover answers are released; with no upstream left, the station is closed."""
        self._connected.discard(name)
        effects: list[Effect] = []
        if name == PRIMARY:
            self._primary_failed = True
            if self._failover:
                for answer in self._answers.primary_lost(now):
                    effects.append(Send(STATION, answer))
        effects.append(UpstreamDisconnected(self.station_id, name, self._urls[name], reason))
        self._update_failover(effects, now)
        self._close_if_no_upstream(effects)
        return effects

    def upstream_attempt_failed(self, name: str, reason: str, now: float) -> list[Effect]:
        """A connection attempt to C{name} failed."""
        effects: list[Effect] = []
        if name == PRIMARY:
            self._primary_failed = True
            self._update_failover(effects, now)
        effects.append(UpstreamAttemptFailed(self.station_id, name, self._urls[name], reason))
        return effects

    def upstream_gave_up(self, name: str) -> list[Effect]:
        """The link to C{name} stopped retrying: with no upstream left, the station is closed."""
        effects: list[Effect] = []
        self._close_if_no_upstream(effects)
        return effects

    def frame_dropped(self, name: str) -> list[Effect]:
        """The queue for C{name} was full: its oldest frame was dropped."""
        return [FrameDropped(self.station_id, name)]

    def _close_if_no_upstream(self, effects: list[Effect]) -> None:
        if not self._connected and not self._closing:
            effects.append(Close(TRY_AGAIN_LATER, "no central system connected, try again later"))

    def _update_failover(self, effects: list[Effect], now: float) -> None:
        """Failover is on while the primary has failed and the secondary is connected."""
        if not self._failover:
            return
        active = self._primary_failed and SECONDARY in self._connected and not self._closing
        station = self.station_id
        if active and self._failover_since is None:
            self._failover_since = now
            effects.append(
                Log("warn", "station {station}: primary away, the secondary answers (failover)", {"station": station})
            )
            effects.append(FailoverStarted(station))
        elif not active and self._failover_since is not None:
            duration = now - self._failover_since
            self._failover_since = None
            effects.append(
                Log(
                    "info",
                    "station {station}: failover ended after {duration:.0f} s",
                    {"station": station, "duration": duration},
                )
            )
            effects.append(FailoverEnded(station, duration))
