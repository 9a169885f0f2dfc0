"""
One station's session: its connection and its links to the central systems, wired
through the pure L{ocppproxy.core.routing.StationRelay}, whose effects it carries out
(sends, closes, observer events, log lines, the expiry timer). The proxy service creates
one per accepted station handshake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import LogLevel

from ..config.model import Config
from ..core.effects import STATION, Close, CloseLink, Effect, Log, OpenLink, Send, Timer
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
from ..wire.limits import StationLimits
from ..wire.station import StationProtocol
from ..wire.upstream import UpstreamLink
from .observers import frame_recorder

REPLACED = 4000
NOT_READING = 1008
_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}
# Why reading from a station is paused (both may hold at once): its write buffer is
# full, or it sends frames faster than limits.max_frames_per_second.
BUFFER_FULL = 1
THROTTLED = 2


class StationSession:
    """
    One station connection and its links to the central systems, doing what its
    L{StationRelay} decides. C{limits} gives the station's frame rate (a L{TokenBucket}
    over every frame it sends: over it, reading from the station pauses until the debt
    is paid) and is told when the primary accepted the connection.
    """

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
        self._expiry_timer = None

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
            self.relay.use_subprotocol(chosen)
            for link in self.links.values():
                link.set_subprotocols([chosen])
            if not self._closing:
                for name, link in self.links.items():
                    if name != primary_name:
                        link.start()
            return chosen if station_offered else None

        return outcome.addCallback(decide)

    def _tell(self, event: ProxyEvent) -> None:
        """Pass an event to the observer; its failures are logged, never relayed."""
        try:
            event.tell(self._observer)
        except Exception:
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
                else:
                    self.links[effect.target].send(effect.payload)
            elif isinstance(effect, ProxyEvent):
                self._tell(effect)
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

    def change_route(self, route: Route, upstreams: Mapping[str, UpstreamRules] | None = None) -> None:
        """Move the station to C{route} (see L{StationRelay.change_route}): links opened and closed as it decides."""
        if self.relay is not None:
            self._carry_out(self.relay.change_route(route, self._clock.seconds(), upstreams))

    def _open_link(self, name: str) -> None:
        """
        A change of route asks for a link to C{name}: it offers the subprotocol the station
        agreed; a refusal, or no handshake within C{handshake_timeout}, is told to the relay.
        """
        if self._closing or self._make_link is None:
            return
        link = self._make_link(name)
        self.links[name] = link
        if self.subprotocol:
            link.set_subprotocols([self.subprotocol])
        timeout = self._handshake_timeout

        def failed(reason: str) -> None:
            if self.links.get(name) is link and not link.connected and not self._closing:
                self._carry_out(self.relay.upstream_failed_to_open(name, reason, self._clock.seconds()))

        timer = self._clock.callLater(timeout, failed, f"no handshake within {timeout:g} s (handshake_timeout)")

        def first(outcome) -> None:
            if timer.active():
                timer.cancel()
            if outcome.subprotocol is None and (outcome.refused_status is not None or outcome.reason):
                status = f"HTTP {outcome.refused_status} " if outcome.refused_status is not None else ""
                failed(f"{status}{outcome.reason}".strip())

        link.first_outcome.addCallback(first)
        link.start()

    def relink(self, name: str) -> None:
        """
        Upstream C{name}'s URL, credentials or TLS changed: the station's link to it is
        replaced by one opened with the new settings. An open link is replaced once the
        new one is open (make before break: the station never has none), frames queued
        for it passed on; a link that is not open is replaced at once. A new link that
        does not open within C{handshake_timeout} is given up and the old one kept.
        """
        old = self.links.get(name)
        if old is None or self._closing or self._make_link is None:
            return
        if not old.connected:
            self.links.pop(name)
            old.stop()
            self._open_link(name)
            return
        owner = _Candidate(self, name)
        link = self._make_link(name, owner)
        if self.subprotocol:
            link.set_subprotocols([self.subprotocol])

        def give_up(reason: str) -> None:
            if not owner.promoted and not owner.abandoned:
                owner.abandoned = True
                self._log.warn(
                    "station {station}: the new link to {upstream} did not open ({reason}): keeping the old one",
                    station=self.station_id,
                    upstream=name,
                    reason=reason,
                )
                link.stop()

        timer = self._clock.callLater(
            self._handshake_timeout, give_up, f"no handshake within {self._handshake_timeout:g} s (handshake_timeout)"
        )

        def first(outcome) -> None:
            if timer.active():
                timer.cancel()
            if outcome.subprotocol is None:
                give_up(f"{outcome.refused_status or ''} {outcome.reason}".strip())
                return
            if owner.abandoned or self._closing or self.links.get(name) is not old:
                link.stop()
                return
            owner.promoted = True
            self.links[name] = link
            # The new link is open but not yet flushing: what waited for the old one goes first.
            while len(old.queue):
                link.send(old.queue.popleft())
            old.stop()
            self._log.info("station {station}: re-linked to {upstream} ({url})", station=self.station_id,
                           upstream=name, url=link.url)

        link.first_outcome.addCallback(first)
        link.start()

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
            self._carry_out(self.relay.from_station(payload, now, is_binary))
        except Exception:
            self._log.failure(
                "station {station}: error relaying a frame from the station: {frame}",
                station=self.station_id,
                frame=self._redactor.shorten(payload),
            )

    def _to_station(self, payload: bytes) -> None:
        """Send a frame to the station, unless its connection is closing (then it is gone with it)."""
        protocol = self.protocol
        if not self._closing and protocol.state == protocol.STATE_OPEN:
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

    @property
    def stalled(self) -> bool:
        """Whether the station is not taking what is sent to it: its sources are paused."""
        return self._write_watch is not None and self._write_watch.full

    @property
    def throttled(self) -> bool:
        """Whether reading from the station is paused because it sends over its frame rate."""
        return bool(self._paused_by & THROTTLED)

    def _pause_reading(self, reason: int) -> None:
        if not self._paused_by:
            self.protocol.transport.pauseProducing()
        self._paused_by |= reason

    def _resume_reading(self, reason: int) -> None:
        if self._paused_by & reason:
            self._paused_by &= ~reason
            if not self._paused_by:
                self.protocol.transport.resumeProducing()

    def _throttle(self, now: float) -> None:
        """Over the frame rate: stop reading from the station until its debt is paid (one warning per episode)."""
        if self._closing:
            return  # its close handshake is read whatever it sends
        bucket = self._bucket
        if bucket.rested:
            bucket.rested = False
            self._log.warn(
                "station {station} ({peer}) sends over {rate:g} frames/s (limits.max_frames_per_second, burst"
                " limits.frame_burst {burst}): reading from it paused until its rate is back under the limit",
                station=self.station_id,
                peer=self.protocol.peer,
                rate=bucket.rate,
                burst=int(bucket.burst),
            )
        self._pause_reading(THROTTLED)
        self._throttle_timer = self._clock.callLater(bucket.wait(now), self._throttle_over)

    def _throttle_over(self) -> None:
        # Frames read after the pause began (the rest of that read) added to the debt.
        wait = self._bucket.wait(self._clock.seconds())
        if wait > 0.0:
            self._throttle_timer = self._clock.callLater(wait, self._throttle_over)
            return
        self._throttle_timer = None
        self._resume_reading(THROTTLED)

    def write_buffer_full(self) -> None:
        """
        Over C{max_write_buffer} unsent to the station: stop reading from its upstream
        links and from the station itself (its own CALLs are what produce its answers),
        so that TCP holds the senders back.
        """
        self._write_limits.count_stall("station")
        self._pause_reading(BUFFER_FULL)
        for link in self.links.values():
            link.pause_reading()

    def write_buffer_drained(self) -> None:
        """The station's buffer has drained: read from it (unless throttled) and its upstream links again."""
        self._resume_reading(BUFFER_FULL)
        for link in self.links.values():
            link.resume_reading()

    def write_buffer_stalled(self) -> None:
        """Nothing drained within C{stall_timeout}: close the station, without waiting for a close handshake."""
        self._log.warn(
            "station {station} ({peer}) has not taken its unsent frames in {timeout:g} s (stalled, over {limit} bytes):"
            " closing it with {code}",
            station=self.station_id,
            peer=self.protocol.peer,
            timeout=self._write_limits.stall_timeout,
            limit=self._write_limits.max_write_buffer,
            code=NOT_READING,
        )
        self.close(NOT_READING, "not reading what is sent to it")
        # Its close frame waits behind what it does not read: the close handshake cannot end.
        self.protocol.dropConnection(abort=True)

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

    def upstream_disconnected(self, name: str, reason: str) -> None:
        """An open link dropped: the relay releases held answers, starts failover, or closes with 1013."""
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
            self._stopped = DeferredList([link.stop() for link in self.links.values()]).addCallback(lambda _: None)
            self._stopped.addCallback(lambda _: self._end())
        stopped: Deferred[None] = Deferred()
        self._stopped.addCallback(lambda result: (stopped.callback(None), result)[1])
        return stopped

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_ended(self)


class _Candidate:
    """
    The owner of a link opened to replace another (see L{StationSession.relink}): until
    it is promoted, its attempts and give-ups are its own business (the old link still
    serves the station); from then on it reports to the session like any link.
    """

    def __init__(self, session: StationSession, name: str) -> None:
        self._session = session
        self._name = name
        self.promoted = False
        self.abandoned = False

    def from_upstream(self, name: str, payload: bytes) -> None:
        if self.promoted:
            self._session.from_upstream(name, payload)

    def upstream_connected(self, name: str) -> None:
        if self.promoted:
            self._session.upstream_connected(name)

    def upstream_disconnected(self, name: str, reason: str) -> None:
        if self.promoted:
            self._session.upstream_disconnected(name, reason)

    def upstream_gave_up(self, name: str) -> None:
        if self.promoted:
            self._session.upstream_gave_up(name)

    def upstream_attempt_failed(self, name: str, reason: str) -> None:
        if self.promoted:
            self._session.upstream_attempt_failed(name, reason)

    def upstream_frame_dropped(self, name: str) -> None:
        if self.promoted:
            self._session.upstream_frame_dropped(name)
