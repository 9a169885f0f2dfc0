"""
One station's session: its connection and its links to the central systems, wired
through the pure L{ocppproxy.core.routing.StationRelay}, whose effects it carries out
(sends, closes, observer events, log lines, the expiry timer). The proxy service creates
one per accepted station handshake.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping

from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.logger import LogLevel

from ..config.model import Config
from ..core.effects import API, STATION, Close, CloseLink, Effect, Log, OpenLink, Send, Timer
from ..core.ocppj import parse_frame
from ..core.observer import (
    FROM_STATION,
    FROM_UPSTREAM,
    TO_STATION,
    FrameRecorder,
    ProxyEvent,
    ProxyObserver,
    event_name,
)
from ..core.redact import Redactor
from ..core.rates import TokenBucket
from ..core.routes import Route, UpstreamRules
from ..core.routing import StationRelay
from ..core.transactions import TransactionStore
from ..logs import debug_enabled, proxy_logger
from ..wire.backpressure import WriteBufferWatch, WriteLimits
from ..wire.closing import OPEN
from ..wire.limits import StationLimits
from ..wire.station import StationProtocol
from ..wire.upstream import UpstreamLink
from .api_calls import ApiCalls, StationGone
from .flow import THROTTLED, ReadingFlow
from .link_changes import RouteLinks
from .observers import frame_recorder
from .outbox_links import OutboxLinks

REPLACED = 4000
_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}


class StationSession(RouteLinks, ReadingFlow, OutboxLinks):
    """
    One station connection and its links to the central systems, doing what its
    L{StationRelay} decides. C{limits} gives the station's frame rate (a L{TokenBucket}
    over every frame it sends: over it, reading from the station pauses until the debt
    is paid) and is told when the primary accepted the connection. How a change of route
    opens and replaces links is L{RouteLinks}'; when the station is read from, L{ReadingFlow}'s.
    """

    # Some forty attributes over a session's life (its mixins' included): past CPython
    # 3.11's 30 shared keys, each session had a dictionary of its own (about 1.6 KiB).
    # Names with a class-level default in a mixin stay in the dictionary.
    __slots__ = (
        *("_bucket", "_clock", "_closing", "_ended", "_expiry_timer", "_handshake_timeout", "_limits"),
        *("_make_link", "_negotiation", "_observer", "_offers", "_on_ended", "_paused_by"),
        *("_primary_accepted", "_redactor", "_stopped", "_throttle_timer", "_write_limits", "_write_watch"),
        *("after_drain", "api_calls", "connected_since", "link_settings", "links", "outbox_sent_auth"),
        *("protocol", "recorder", "relay", "routing", "station_id", "subprotocol"),
    )
    _log = proxy_logger()

    def __init__(
        self,
        station_id: str,
        protocol: StationProtocol,
        clock,
        on_ended: Callable[[StationSession], None],
        observer: ProxyObserver,
        write_limits: WriteLimits | None = None,
        redactor: Redactor | None = None,
        *,
        limits: StationLimits | None = None,
    ) -> None:
        self.station_id = station_id
        # What a log line may quote of a frame (see ocppproxy.core.redact).
        self._redactor = redactor or Redactor()
        self._limits = limits if limits is not None else StationLimits(clock)
        self._bucket = TokenBucket(self._limits.max_frames_per_second, self._limits.frame_burst, clock.seconds())
        self._paused_by = 0
        self._throttle_timer = None
        self._primary_accepted = False
        self._write_limits = write_limits or WriteLimits(clock)
        self._write_watch: WriteBufferWatch | None = None
        self._observer = observer
        # The frames crossing the wire, for the observers that see them (the traffic log).
        self.recorder: FrameRecorder | None = frame_recorder(observer)
        self.protocol = protocol
        self._clock = clock
        self._on_ended = on_ended
        self.links: dict[str, UpstreamLink] = {}
        # What each link was opened with (URL, credentials, TLS): a change re-links it.
        self.link_settings: dict[str, object] = {}
        # The routing (see ocppproxy.relay.routing_state) the station's route was last taken from.
        self.routing: object | None = None
        self._make_link: Callable[..., UpstreamLink] | None = None
        self.relay: StationRelay | None = None
        self.subprotocol: str | None = None
        self.connected_since: float | None = None
        self._closing = False
        self._ended = False
        self._stopped: Deferred[None] | None = None
        self._negotiation: Deferred | None = None
        # Fires when the links of a drain of this station's backlog are gone (see ocppproxy.relay.outbox_drain).
        self.after_drain: Deferred | None = None
        self._expiry_timer = None
        # The control-plane API's CALLs waiting for the station's answer.
        self.api_calls = ApiCalls(clock)

    def attach(
        self,
        links: dict[str, UpstreamLink],
        offers: list[str],
        config: Config,
        transactions: TransactionStore,
        make_link: Callable[..., UpstreamLink] | None = None,
        *,
        route: Route | None = None,
        upstreams: Mapping[str, UpstreamRules] | None = None,
    ) -> None:
        """
        Give the session its upstream links (C{route}'s upstreams; without a route, the
        primary first and the others its mirrors) with their C{upstreams} rules; the
        primary starts connecting. C{make_link(name, owner=None)} makes the link to another
        upstream when a change of route (or a changed upstream) asks for one.
        """
        self.links = links
        self._make_link = make_link
        self._offers = offers
        self._handshake_timeout = config.handshake_timeout
        self.relay = StationRelay(
            self.station_id,
            upstreams if upstreams is not None else {name: link.url for name, link in links.items()},
            transactions,
            pending_timeout=config.pending_call_timeout,
            failover=config.failover,
            call_policies=config.upstream_calls,
            debug=debug_enabled,
            redactor=self._redactor,
            route=route,
        )
        links[self.relay.route.primary].start()

    def _start_others(self, primary_name: str) -> None:
        """Start every link but the primary's, once the links of a drain of this station are gone (L{after_drain})."""
        drain = self.after_drain
        if drain is not None and not drain.called:
            drain.addCallback(lambda _: None if self._closing else self._start_others(primary_name))
            return
        for name, link in self.links.items():
            if name != primary_name:
                link.start()

    @property
    def ready(self) -> bool:
        """Whether the station's handshake is complete and it is not closing: its route may change."""
        return self.connected_since is not None and not self._closing and self.relay is not None

    @property
    def target_route(self) -> Route | None:
        """The route the station is on, or moving to."""
        relay = self.relay
        return None if relay is None else (relay.pending_route or relay.route)

    def negotiate(self, station_offered: bool) -> Deferred:
        """
        Wait (at most C{handshake_timeout}) for the primary's handshake; fires with the
        subprotocol to answer the station with (None if it offered none), or fails with
        L{ConnectionDeny} carrying the primary's HTTP status when the primary refused.
        """
        primary_name = self.relay.route.primary
        primary = self.links[primary_name]
        outcome: Deferred = Deferred()
        self._negotiation = outcome
        timer = self._clock.callLater(self._handshake_timeout, lambda: outcome.called or outcome.callback(None))
        primary.first_outcome.addCallback(lambda result: outcome.called or outcome.callback(result))

        def decide(result):
            if timer.active():
                timer.cancel()
            if isinstance(result, ConnectionDeny):
                raise result  # closed while waiting: see close()
            chosen = self._offers[0]
            if result is not None and result.refused_status is not None:
                self._log.warn(
                    "station {station}: refused, as the primary refused it: HTTP {status} {reason}",
                    station=self.station_id,
                    status=result.refused_status,
                    reason=result.reason,
                )
                raise ConnectionDeny(result.refused_status, result.reason)
            if result is not None and result.subprotocol:
                chosen = result.subprotocol
            elif result is None:
                self._log.warn(
                    "station {station}: primary has not answered within {timeout} s; accepting with {subprotocol}",
                    station=self.station_id,
                    timeout=self._handshake_timeout,
                    subprotocol=chosen,
                )
            self.subprotocol = chosen
            if self.outbox is not None:
                self.outbox.station_connected(self.station_id, chosen, self.outbox_sent_auth)
            self.relay.use_subprotocol(chosen)
            for link in self.links.values():
                link.set_subprotocols([chosen])
            if not self._closing:
                self._start_others(primary_name)
            return chosen if station_offered else None

        return outcome.addCallback(decide)

    def _observer_failed(self, event: ProxyEvent) -> None:
        """Call from an C{except} block: the observer failed on C{event}; logged, never relayed."""
        self._log.failure(
            "station {station}: observer failed on {event}", station=self.station_id, event=event_name(event)
        )

    def _carry_out(self, effects: list[Effect]) -> None:
        """Do what the relay decided, in order."""
        for effect in effects:
            kind = effect.__class__
            if kind is Send:
                if effect.target == STATION:
                    self._to_station(effect.payload)
                elif effect.target == API:
                    self.api_calls.answered(effect.payload)
                elif self.outbox is None or not self._outbox_send(effect.target, effect.payload):
                    # (Without an outbox, nothing to ask it: the common case, on every frame.)
                    self.links[effect.target].send(effect.payload)
            elif isinstance(effect, ProxyEvent):
                # Told here, not through a method of its own: three of these per relayed CALL.
                try:
                    effect.tell(self._observer)
                except Exception:  # noqa: BLE001 (an observer never breaks the relaying)
                    self._observer_failed(effect)
            elif kind is OpenLink:
                self._open_link(effect.name)
            elif kind is CloseLink:
                self.link_settings.pop(effect.name, None)
                link = self.links.pop(effect.name, None)
                if link is not None:
                    link.stop()
            elif kind is Timer:
                self._schedule_expiry(effect.deadline)
            elif kind is Log:
                self._log.emit(_LEVELS[effect.level], effect.text, **effect.fields)
            elif kind is Close:
                self.close(effect.code, effect.reason)
            else:
                raise TypeError(f"unknown effect {effect!r}")

    def api_call(self, action: str, payload: object, timeout: float) -> Deferred[bytes]:
        """
        Send the station a CALL of the proxy's own (the control-plane API), with a message
        id of its own, through the queue of the central systems' CALLs: fires with the
        station's answer (bytes), which goes to no central system; fails with
        L{ocppproxy.relay.api_calls.CallTimeout}, C{StationGone} or C{QueueFull}.
        """
        if not self.ready:
            return fail(StationGone())
        message_id = f"api-{uuid.uuid4().hex}"
        text = json.dumps([2, message_id, action, payload], ensure_ascii=False, separators=(",", ":")).encode()
        answer = self.api_calls.start(message_id, timeout)
        outcome, effects = self.relay.api_call(parse_frame(text), text, self._clock.seconds())
        if outcome == "refused":
            self.api_calls.refused(message_id)
        self._carry_out(effects)
        return answer

    # --- the station's side

    def station_open(self) -> None:
        self.connected_since = self._clock.seconds()
        self._write_watch = WriteBufferWatch(self.protocol.transport, self._write_limits, self)
        self._carry_out(self.relay.station_opened(self.protocol.peer))

    def from_station(self, payload: bytes, is_binary: bool) -> None:
        """
        A frame from the station: relay it to the upstreams the rules name. Over its
        frame rate, reading pauses; the frames of the same read are relayed all the same.
        """
        try:
            now = self._clock.seconds()
            if self._bucket.take(now) < 0.0 and not self._paused_by & THROTTLED:
                self._throttle(now)
            recorder = self.recorder
            if recorder is not None and not is_binary:
                recorder(self.station_id, FROM_STATION, None, payload)
            if self.outbox is None:
                self._carry_out(self.relay.from_station(payload, now, is_binary))
            else:
                effects = self.relay.from_station(payload, now, is_binary)
                self._outbox_station_frame(payload, effects)
                try:
                    self._carry_out(effects)
                finally:
                    self._station_frame = self._station_payload = None
        except Exception:
            self._log.failure(
                "station {station}: error relaying a frame from the station: {frame}",
                station=self.station_id,
                frame=self._redactor.shorten(payload),
            )

    def _to_station(self, payload: bytes) -> None:
        """Send a frame to the station, unless its connection is closing (then it is gone with it)."""
        protocol = self.protocol
        if not self._closing and protocol.state == OPEN:
            protocol.sendMessage(payload, False)
            recorder = self.recorder
            if recorder is not None:
                recorder(self.station_id, TO_STATION, None, payload)
        elif debug_enabled():
            self._log.debug(
                "station {station} is closing: {frame} not sent",
                station=self.station_id,
                frame=self._redactor.shorten(payload),
            )

    def _schedule_expiry(self, deadline: float | None) -> None:
        """Have the relay's C{expire} called at C{deadline} (None, or closing: not at all)."""
        timer = self._expiry_timer
        if deadline is None or self._closing:
            if timer is not None and timer.active():
                timer.cancel()
            self._expiry_timer = None
            return
        if timer is not None and timer.active():
            if timer.getTime() == deadline:
                return
            timer.cancel()
        self._expiry_timer = self._clock.callLater(max(deadline - self._clock.seconds(), 0), self._expire)

    def _expire(self) -> None:
        self._expiry_timer = None
        self._carry_out(self.relay.expire(self._clock.seconds()))

    def station_closed(self, protocol: StationProtocol, code: int | None, reason: str | None) -> None:
        """The station's connection is gone: close its upstream links."""
        self._carry_out(self.relay.station_closed(code, reason, protocol.was_opened, self._clock.seconds()))
        self._stop_links()

    # --- the upstreams' side

    def from_upstream(self, name: str, payload: bytes) -> None:
        """A frame from a central system: to the station, or consumed."""
        try:
            if debug_enabled():
                self._log.debug(
                    "station {station}: {upstream} -> {frame}",
                    station=self.station_id,
                    upstream=name,
                    frame=self._redactor.shorten(payload),
                )
            recorder = self.recorder
            if recorder is not None:
                recorder(self.station_id, FROM_UPSTREAM, name, payload)
            if self._outbox_answer(name, payload):
                return  # an answer to the outbox's backlog: consumed
            self._carry_out(self.relay.from_upstream(name, payload, self._clock.seconds()))
        except Exception:
            self._log.failure(
                "station {station}: error relaying a frame from {upstream}: {frame}",
                station=self.station_id,
                upstream=name,
                frame=self._redactor.shorten(payload),
            )

    def upstream_connected(self, name: str) -> None:
        if not self._primary_accepted and name == self.relay.route.primary:
            # What limits.max_connects_per_minute counts: connections the primary accepted.
            self._primary_accepted = True
            self._limits.connect_accepted(self.station_id)
        self._carry_out(self.relay.upstream_connected(name, self._clock.seconds()))
        self._outbox_connected(name)

    def upstream_disconnected(self, name: str, reason: str) -> None:
        """An open link dropped: the relay releases held answers, starts failover, or closes with 1013."""
        self._outbox_disconnected(name)
        self._carry_out(self.relay.upstream_disconnected(name, reason, self._clock.seconds()))

    def upstream_attempt_failed(self, name: str, reason: str) -> None:
        self._carry_out(self.relay.upstream_attempt_failed(name, reason, self._clock.seconds()))

    def upstream_gave_up(self, name: str) -> None:
        self._carry_out(self.relay.upstream_gave_up(name))

    def upstream_frame_dropped(self, name: str) -> None:
        self._carry_out(self.relay.frame_dropped(name))

    # --- ending

    def close(self, code: int, reason: str) -> Deferred[None]:
        """Close the station with C{code} and its links; fires when all connections are gone."""
        if not self._closing:
            self._closing = True
            self._log.info(
                "station {station}: closing ({code} {reason})", station=self.station_id, code=code, reason=reason
            )
            negotiation = self._negotiation
            if negotiation is not None and not negotiation.called:
                # Its opening handshake still waits for the primary: no close frame can
                # be sent yet, so the handshake is refused (503) instead.
                negotiation.callback(ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, reason))
            else:
                self.protocol.sendCloseFrame(code, reason.encode("utf-8"), False)
        return DeferredList([self.protocol.when_closed(), self._stop_links()]).addCallback(lambda _: None)

    def _stop_links(self) -> Deferred[None]:
        if self._stopped is None:
            self._closing = True
            watch = self._write_watch
            if watch is not None:
                watch.stopProducing()
            timer, self._throttle_timer = self._throttle_timer, None
            if timer is not None and timer.active():
                timer.cancel()
            if self._paused_by:
                # Frames to a closing station are not sent, nor throttled: read its close handshake.
                self._paused_by = 0
                self.protocol.transport.resumeProducing()
            self._carry_out(self.relay.closing(self._clock.seconds()))
            self.api_calls.gone()
            self._stopped = DeferredList([link.stop() for link in self.links.values()]).addCallback(lambda _: None)
            self._stopped.addCallback(lambda _: self._end())
        stopped: Deferred[None] = Deferred()
        self._stopped.addCallback(lambda result: (stopped.callback(None), result)[1])
        return stopped

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_ended(self)
