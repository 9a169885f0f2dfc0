"""
The relaying rules for one station, as complete decisions: L{StationRelay} takes each
frame (from the station or an upstream) and each link or timer event, and returns the
ordered list of L{effects} that carry it out: what to send where, which links to open or
close, what to tell the observer, what to log. Pure: time is passed in, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .answers import LATE, StationCallAnswers
from .effects import API, STATION, Close, Effect, Log, Send, Timer
from .membership import LEAVING, Membership
from .observer import FrameDropped, StationConnected, StationDisconnected, StationFrame, UpstreamFrame
from .ocppj import ANSWERS, CALL, Frame, FrameError, format_error_reply, parse_frame
from .redact import Redactor
from .link_events import LinkEvents
from .route_change import BOOT, RouteChanges
from .routes import Route, UpstreamRules
from .station_calls import StationBoundCalls
from .transactions import START, STATION_ACTIONS, TransactionIdTranslator, TransactionStore

PRIMARY = "primary"
SECONDARY = "secondary"
UNSUPPORTED_DATA = 1003
BACKLOG_LIMIT = 1000

_UPSTREAM_CALL_FATES = {
    "sent": None,
    "waiting": "waits until the station has answered an earlier CALL",
    "refused": "refused by the proxy (not allowed, or too many waiting)",
}


class StationRelay(RouteChanges, LinkEvents):
    """
    One station's relaying state and rules. The station's C{route} names its primary and
    its mirrors: station CALLs (and SENDs) go to each upstream whose C{receives} admits
    their action; only the primary's answers reach the station (the failover mirror's too
    while the primary is away: see L{StationCallAnswers}); upstream CALLs reach the station
    one at a time (L{StationBoundCalls}) and the station's answer returns to the upstream
    that asked; OCPP 1.6 transaction ids are translated for every upstream with ids of
    its own (L{TransactionIdTranslator}); a station left with no connected upstream is
    closed with 1013. L{change_route} moves a connected station to another route.

    C{upstreams} maps each upstream's name to its URL, or to its L{UpstreamRules}. Without
    a C{route}, the first is the primary and the others its mirrors, C{secondary} the
    failover mirror if C{failover} (the shape of C{primary_url} / C{secondary_url}).
    Every method returns the effects to carry out, in order; L{Timer} effects say when to
    call L{expire}. C{debug} says whether debug log lines are wanted (asked per frame, as
    the level can change while running); C{redactor} masks what a log line quotes of a frame.
    """

    def __init__(
        self,
        station_id: str,
        upstreams: Mapping[str, str | UpstreamRules],
        transactions: TransactionStore | None = None,
        pending_timeout: float = 40.0,
        pending_limit: int = 1000,
        failover: bool = False,
        call_policies: Mapping[str, frozenset | None] = {},
        debug: Callable[[], bool] = lambda: False,
        redactor: Redactor | None = None,
        *,
        route: Route | None = None,
    ) -> None:
        self.station_id = station_id
        if route is None:
            names = tuple(upstreams)
            route = Route(names[0], names[1:], SECONDARY if failover and SECONDARY in names[1:] else None)
        self._route = route
        self.plain_primary: str | None = route.primary
        """The primary while it answers the station itself (None during failover): read per frame, without a call."""
        # The route waiting for its new primary's link (None: no change under way), and
        # the names of every upstream the configuration still defines (None: unknown).
        self._pending: Route | None = None
        self._known: frozenset[str] | None = None
        self._pending_timeout = pending_timeout
        self._transactions = transactions
        self._station_calls = StationBoundCalls(pending_timeout, policies=call_policies)
        self._answers = StationCallAnswers(pending_timeout, pending_limit, route.failover, route.primary)
        self._urls: dict[str, str] = {}
        receives: dict[str, frozenset | None] = {}
        for name, rules in upstreams.items():
            self._urls[name], receives[name] = self._rules(name, rules)
        self._links = links = Membership(route.upstreams, receives, BACKLOG_LIMIT)
        # The membership's own dicts, read on every frame without a call.
        self._link_states = links.states
        self._replays = links.replays
        self._fan_out = links.fan_out_cache
        self._translator: TransactionIdTranslator | None = None
        self._debug = debug
        self._redactor = redactor or Redactor()
        self._connected: set[str] = set()
        self._primary_failed = False
        self._failover_since: float | None = None
        self._closing = False
        self._last_boot = None
        self._replays_sent = 0
        self.subprotocol: str | None = None

    def _rules(self, name: str, rules: str | UpstreamRules) -> tuple[str, frozenset | None]:
        if isinstance(rules, str):
            return rules, None
        self._station_calls.set_policy(name, rules.calls)
        return rules.url, rules.receives

    @property
    def route(self) -> Route:
        """The route in force: the one whose primary answers the station's CALLs sent now."""
        return self._route

    @property
    def failing_over(self) -> bool:
        """Whether the failover mirror answers the station now (its primary away)."""
        return self._failover_since is not None

    @property
    def pending_route(self) -> Route | None:
        """The route the station moves to once its new primary's link is open, or None."""
        return self._pending

    def use_subprotocol(self, subprotocol: str) -> None:
        """The OCPP version agreed with the station: its bad frames are answered in its words; 1.6 ids translated."""
        self.subprotocol = subprotocol
        self._update_translator()

    def _update_translator(self) -> None:
        if (
            self._translator is None
            and len(self._links) > 1
            and self._transactions is not None
            and (self.subprotocol or "").startswith("ocpp1.6")
        ):
            self._translator = TransactionIdTranslator(self.station_id, self._transactions, self._route.primary)

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
            if self._links.leaving():
                self._close_drained(effects, now)
            effects.append(Timer(self._deadline()))
        else:
            action = frame.action
            if frame.kind == CALL:
                self._answers.station_call(frame.message_id, now)
                if action == BOOT:
                    self._last_boot = frame.body
            live, held = self._fan_out.get(action) or self._links.fan_out(action)
            effects = []
            if self._debug():
                self._log_relayed(effects, live, payload)
            translator = self._translator
            if translator is None or action not in STATION_ACTIONS or frame.kind != CALL:
                for name in live:
                    effects.append(Send(name, payload))
                if held:
                    for name in held:
                        self._hold(effects, name, payload)
            else:
                self._translated(effects, translator, frame, payload, live, held)
        effects.append(StationFrame(station, frame, payload))
        return effects

    def _translated(self, effects, translator, frame: Frame, payload: bytes, live, held) -> None:
        """A 1.6 transaction CALL of the station: each upstream gets its own transaction id."""
        targets = live + held
        if frame.action == START:
            translator.start_sent(frame.message_id, len(targets))
            payloads = None
        else:
            payloads, logs = translator.outgoing(frame, payload, targets, self._answers.primary)
            effects.extend(logs)
        for number, name in enumerate(targets):
            translated = payload if payloads is None else payloads[number]
            if number < len(live):
                effects.append(Send(name, translated))
            else:
                self._hold(effects, name, translated)

    def _hold(self, effects: list[Effect], name: str, payload: bytes) -> None:
        if self._links.hold(name, payload):
            effects.append(FrameDropped(self.station_id, name))

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
        """
        The L{Timer} is due: CALLERRORs for upstream CALLs that waited too long, the next
        CALL, and live traffic for an upstream whose replayed BootNotification went unanswered.
        """
        effects: list[Effect] = self._station_calls.expire(now)
        for name, (_, deadline) in list(self._links.replays.items()):
            if deadline <= now:
                effects.append(
                    Log(
                        "warn",
                        "station {station}: {upstream} has not answered the replayed BootNotification in {timeout:g} s:"
                        " relaying to it all the same",
                        {"station": self.station_id, "upstream": name, "timeout": self._pending_timeout},
                    )
                )
                self._go_live(effects, name, now)
        if self._links.leaving():
            self._close_drained(effects, now)
        effects.append(Timer(self._deadline()))
        return effects

    def _deadline(self) -> float | None:
        if self._closing:
            return None
        calls = self._station_calls.next_deadline()
        leaving = self._links.leaving()
        if not self._replays and not leaving:
            return calls
        # A link off the route closes once the station CALLs it owes an answer expire, at the latest.
        deadlines = (calls, self._links.next_replay_deadline(), self._answers.next_deadline() if leaving else None)
        return min((deadline for deadline in deadlines if deadline is not None), default=None)

    # --- the upstreams' side

    def from_upstream(self, name: str, payload: bytes, now: float, frame: Frame | None = None) -> list[Effect]:
        """
        A frame from upstream C{name}: to the station (a CALL, the answer the station waits
        for), or consumed. C{frame}: C{payload} parsed, if the caller parsed it already.
        """
        station = self.station_id
        state = self._link_states.get(name)
        if state is None:
            return self._from_a_stranger(name, payload)
        if frame is None:
            try:
                frame = parse_frame(payload)
            except FrameError as error:
                return self._bad_frame(name, payload, error)
        translator = self._translator
        if frame.kind == CALL:
            if translator is not None:
                payload = translator.incoming(name, frame, payload)
            if state is LEAVING:
                effects = self._refuse_leaving(name, frame)
            else:
                effects = self._upstream_call(name, frame, payload, now)
        elif frame.kind in ANSWERS:
            effects = []
            if self._replays and self._replays.get(name, ("",))[0] == frame.message_id:
                self._log_not_relayed(effects, name, frame, "answer to the replayed BootNotification")
                self._go_live(effects, name, now)
                effects.append(Timer(self._deadline()))
            else:
                reason = self._answers.answer(name, frame.message_id, payload, now)
                if translator is not None and frame.message_id in translator.starts:
                    effects.extend(translator.answer(name, frame, reason is None))
                if reason is None:
                    effects.append(Send(STATION, payload))
                else:
                    self._log_not_relayed(effects, name, frame, reason, late=reason is LATE)
                if state is LEAVING:
                    self._close_drained(effects, now)
        else:
            effects = []
            self._log_not_relayed(effects, name, frame, f"{frame.kind_name} from a central system is not relayed")
        effects.append(UpstreamFrame(station, name, frame, payload))
        return effects

    def api_call(self, frame: Frame, payload: bytes, now: float) -> tuple[str, list[Effect]]:
        """
        The proxy's own CALL to the station (the control-plane API), queued with the central
        systems' CALLs as the party L{API}, so it never overlaps theirs: C{("sent" |
        "waiting" | "refused", effects)}; refused when the queue is full (its CALLERROR is a
        L{Send} to L{API}). The station's answer comes back as a L{Send} to L{API}, never
        to an upstream.
        """
        if self._closing:
            return "refused", []
        outcome, sends = self._station_calls.offer(API, frame, payload, now)
        return outcome, [*sends, Timer(self._deadline())]

    @property
    def calls_waiting(self) -> int:
        """CALLs to the station outstanding or waiting (the central systems' and the API's)."""
        return len(self._station_calls)

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
        # A late answer is worth a warning; a consumed one (a mirror's) is normal.
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
