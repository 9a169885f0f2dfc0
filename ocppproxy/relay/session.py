"""
One station's session: its connection, its routing state, its links to the central
systems, failover and transaction-id translation. The proxy service creates one per
accepted station handshake.
"""

from __future__ import annotations

from collections.abc import Callable

from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import Deferred, DeferredList

from ..config.model import Config
from ..core.observer import FROM_STATION, FROM_UPSTREAM, TO_STATION, FrameRecorder, ProxyObserver
from ..core.ocppj import CALL, FrameError, format_error_reply, parse_frame, shorten
from ..core.routing import PRIMARY, SECONDARY, STATION, StationRouter
from ..core.transactions import TransactionIdTranslator, TransactionStore
from ..logs import debug_enabled, proxy_logger
from ..wire.backpressure import WriteBufferWatch, WriteLimits
from ..wire.station import StationProtocol
from ..wire.upstream import UpstreamLink

UNSUPPORTED_DATA = 1003
TRY_AGAIN_LATER = 1013
REPLACED = 4000
NOT_READING = 1008


class StationSession:
    """One station connection, its routing state and its links to the central systems."""

    _log = proxy_logger()

    def __init__(
        self,
        station_id: str,
        protocol: StationProtocol,
        clock,
        on_ended: Callable[[StationSession], None],
        observer: ProxyObserver,
        recorder: FrameRecorder | None = None,
        write_limits: WriteLimits | None = None,
    ) -> None:
        self.station_id = station_id
        self._write_limits = write_limits or WriteLimits(clock)
        self._write_watch: WriteBufferWatch | None = None
        self._observer = observer
        self._recorder = recorder
        self.protocol = protocol
        self._clock = clock
        self._on_ended = on_ended
        self.links: dict[str, UpstreamLink] = {}
        self.router: StationRouter | None = None
        self.subprotocol: str | None = None
        self.connected_since: float | None = None
        self._closing = False
        self._primary_failed = False
        self._failover_since: float | None = None
        self._ended = False
        self._stopped: Deferred[None] | None = None
        self._expiry_timer = None
        self.translator: TransactionIdTranslator | None = None
        self._transactions: TransactionStore | None = None

    def attach(
        self, links: dict[str, UpstreamLink], offers: list[str], config: Config, transactions: TransactionStore
    ) -> None:
        """Give the session its upstream links (primary first); the primary starts connecting."""
        self.links = links
        self._transactions = transactions
        self._offers = offers
        self._handshake_timeout = config.handshake_timeout
        self.router = StationRouter(
            links,
            pending_timeout=config.pending_call_timeout,
            failover=config.failover and SECONDARY in links,
            call_policies=config.upstream_calls,
        )
        links[PRIMARY].start()

    def negotiate(self, station_offered: bool) -> Deferred:
        """
        Wait (at most C{handshake_timeout}) for the primary's handshake; fires with the
        subprotocol to answer the station with (None if it offered none), or fails with
        L{ConnectionDeny} carrying the primary's HTTP status when the primary refused.
        """
        primary = self.links[PRIMARY]
        outcome: Deferred = Deferred()
        timer = self._clock.callLater(self._handshake_timeout, lambda: outcome.called or outcome.callback(None))
        primary.first_outcome.addCallback(lambda result: outcome.called or outcome.callback(result))

        def decide(result):
            if timer.active():
                timer.cancel()
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
            if SECONDARY in self.links and chosen.startswith("ocpp1.6"):
                self.translator = TransactionIdTranslator(self.station_id, self._transactions)
            for link in self.links.values():
                link.set_subprotocols([chosen])
            if not self._closing:
                for name, link in self.links.items():
                    if name != PRIMARY:
                        link.start()
            return chosen if station_offered else None

        return outcome.addCallback(decide)

    def _tell(self, event: str, *args) -> None:
        """Pass an event to the observer; its failures are logged, never relayed."""
        try:
            getattr(self._observer, event)(*args)
        except Exception:
            self._log.failure("station {station}: observer failed on {event}", station=self.station_id, event=event)

    # --- the station's side

    def station_open(self) -> None:
        self.connected_since = self._clock.seconds()
        self._write_watch = WriteBufferWatch(self.protocol.transport, self._write_limits, self)
        self._log.info("station {station} connected from {peer}", station=self.station_id, peer=self.protocol.peer)
        self._tell("station_connected", self.station_id, self.protocol.peer)

    def from_station(self, payload: bytes, is_binary: bool) -> None:
        """A frame from the station: relay it to the upstreams the rules name."""
        try:
            recorder = self._recorder
            if recorder is not None and not is_binary:
                recorder(self.station_id, FROM_STATION, None, payload)
            self._relay_from_station(payload, is_binary)
        except Exception:
            self._log.failure(
                "station {station}: error relaying a frame from the station: {frame}",
                station=self.station_id,
                frame=shorten(payload),
            )

    def _relay_from_station(self, payload: bytes, is_binary: bool) -> None:
        if is_binary:
            self._log.warn("station {station} sent a binary frame: closing with 1003", station=self.station_id)
            self.close(UNSUPPORTED_DATA, "OCPP-J frames are text")
            return
        try:
            frame = parse_frame(payload)
        except FrameError as error:
            reply = format_error_reply(payload, self.subprotocol)
            self._log.warn(
                "station {station} sent a bad frame ({reason}){answered}: {frame}",
                station=self.station_id,
                reason=str(error),
                answered=", answered with a CALLERROR" if reply else "",
                frame=shorten(payload),
            )
            if reply is not None:
                self._to_station(reply)
            return
        route = self.router.from_station(frame, self._clock.seconds(), payload)
        if debug_enabled():
            self._log.debug(
                "station {station} -> {targets}: {frame}",
                station=self.station_id,
                targets=",".join(route.targets or [send.target for send in route.also]) or "nowhere",
                frame=shorten(payload),
            )
        if route.dropped_because:
            self._log.warn(
                "station {station}: {kind} {id} dropped: {reason}",
                station=self.station_id,
                kind=frame.kind_name,
                id=frame.message_id,
                reason=route.dropped_because,
            )
        translator = self.translator
        if translator is not None:
            translator.station_frame(frame)
        for target in route.targets:
            if target == SECONDARY and translator is not None:
                self.links[target].send(translator.to_secondary(frame, payload))
            else:
                self.links[target].send(payload)
        self._deliver(route.also)
        self._tell("station_frame", self.station_id, frame, payload)

    def _to_station(self, payload: bytes) -> None:
        """Send a frame to the station, unless its connection is closing (then it is gone with it)."""
        protocol = self.protocol
        if not self._closing and protocol.state == protocol.STATE_OPEN:
            protocol.sendMessage(payload, False)
            recorder = self._recorder
            if recorder is not None:
                recorder(self.station_id, TO_STATION, None, payload)
        elif debug_enabled():
            self._log.debug(
                "station {station} is closing: {frame} not sent", station=self.station_id, frame=shorten(payload)
            )

    def _deliver(self, sends) -> None:
        """Send the frames a routing decision produced, then keep the expiry timer right."""
        for send in sends:
            if send.target == STATION:
                self._to_station(send.payload)
            else:
                self.links[send.target].send(send.payload)
        self._schedule_expiry()

    def _schedule_expiry(self) -> None:
        deadline = self.router.station_calls.next_deadline()
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
        self._deliver(self.router.station_calls.expire(self._clock.seconds()))

    @property
    def stalled(self) -> bool:
        """Whether the station is not taking what is sent to it: its sources are paused."""
        return self._write_watch is not None and self._write_watch.full

    def write_buffer_full(self) -> None:
        """
        Over C{max_write_buffer} unsent to the station: stop reading from its upstream
        links and from the station itself (its own CALLs are what produce its answers),
        so that TCP holds the senders back.
        """
        self._write_limits.count_stall("station")
        self.protocol.transport.pauseProducing()
        for link in self.links.values():
            link.pause_reading()

    def write_buffer_drained(self) -> None:
        """The station's buffer has drained: read from it and its upstream links again."""
        self.protocol.transport.resumeProducing()
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
        self._log.info(
            "station {station} disconnected (code {code}, {reason})",
            station=self.station_id,
            code=code,
            reason=reason or "no reason",
        )
        if protocol.was_opened:
            self._tell("station_disconnected", self.station_id, code, reason)
        self._stop_links()

    # --- the upstreams' side

    def from_upstream(self, name: str, payload: bytes) -> None:
        """A frame from a central system: to the station, or consumed."""
        try:
            recorder = self._recorder
            if recorder is not None:
                recorder(self.station_id, FROM_UPSTREAM, name, payload)
            self._relay_from_upstream(name, payload)
        except Exception:
            self._log.failure(
                "station {station}: error relaying a frame from {upstream}: {frame}",
                station=self.station_id,
                upstream=name,
                frame=shorten(payload),
            )

    def _relay_from_upstream(self, name: str, payload: bytes) -> None:
        try:
            frame = parse_frame(payload)
        except FrameError as error:
            reply = format_error_reply(payload, self.subprotocol)
            self._log.warn(
                "station {station}: {upstream} sent a bad frame ({reason}){answered}: {frame}",
                station=self.station_id,
                upstream=name,
                reason=str(error),
                answered=", answered with a CALLERROR" if reply else "",
                frame=shorten(payload),
            )
            if reply is not None:
                self.links[name].send(reply)
            return
        translator = self.translator
        if translator is not None:
            if name == SECONDARY and frame.kind == CALL:
                payload = translator.from_secondary(frame, payload)
            else:
                translator.upstream_frame(name, frame)
        route = self.router.from_upstream(name, frame, self._clock.seconds(), payload)
        if STATION in route.targets:
            self._to_station(payload)
        elif route.also or frame.kind == CALL:
            if route.dropped_because and frame.kind == CALL:
                self._log.info(
                    "station {station}: {action} {id} from {upstream} {reason}",
                    station=self.station_id,
                    action=frame.action,
                    id=frame.message_id,
                    upstream=name,
                    reason=route.dropped_because,
                )
            self._deliver(route.also)
        elif route.late or debug_enabled():
            # A late answer is worth a warning; a consumed one (the secondary's) is normal.
            (self._log.warn if route.late else self._log.debug)(
                "station {station}: {kind} {id} from {upstream} {fate}: {reason}",
                station=self.station_id,
                kind=frame.kind_name,
                id=frame.message_id,
                upstream=name,
                fate="dropped" if route.late else "consumed",
                reason=route.dropped_because,
            )
        self._tell("upstream_frame", self.station_id, name, frame, payload)

    def upstream_connected(self, name: str) -> None:
        if name == PRIMARY:
            self._primary_failed = False
            if self.router.failover is not None:
                self.router.failover.primary_connected = True
        self._tell("upstream_connected", self.station_id, name, self.links[name].url)
        self._update_failover()

    def upstream_disconnected(self, name: str, reason: str) -> None:
        """Rule: when no upstream is left connected, the station is asked to come back later."""
        if name == PRIMARY:
            self._primary_lost()
        self._tell("upstream_disconnected", self.station_id, name, self.links[name].url, reason)
        self._update_failover()
        self._close_if_no_upstream()

    def upstream_attempt_failed(self, name: str, reason: str) -> None:
        if name == PRIMARY:
            self._primary_failed = True
            self._update_failover()
        self._tell("upstream_attempt_failed", self.station_id, name, self.links[name].url, reason)

    def upstream_gave_up(self, name: str) -> None:
        self._close_if_no_upstream()

    def upstream_frame_dropped(self, name: str) -> None:
        self._tell("frame_dropped", self.station_id, name)

    # --- failover

    def _primary_lost(self) -> None:
        self._primary_failed = True
        if self.router.failover is None:
            return
        for answer in self.router.failover.primary_lost(self._clock.seconds()):
            self._to_station(answer)

    def _update_failover(self) -> None:
        """Failover is on while the primary has failed and the secondary is connected."""
        if self.router.failover is None:
            return
        secondary = self.links[SECONDARY]
        active = self._primary_failed and secondary.connected and not self._closing
        now = self._clock.seconds()
        if active and self._failover_since is None:
            self._failover_since = now
            self._log.warn("station {station}: primary away, the secondary answers (failover)", station=self.station_id)
            self._tell("failover_started", self.station_id)
        elif not active and self._failover_since is not None:
            duration = now - self._failover_since
            self._failover_since = None
            self._log.info(
                "station {station}: failover ended after {duration:.0f} s", station=self.station_id, duration=duration
            )
            self._tell("failover_ended", self.station_id, duration)

    def _close_if_no_upstream(self) -> None:
        if not any(link.connected for link in self.links.values()):
            self.close(TRY_AGAIN_LATER, "no central system connected, try again later")

    # --- ending

    def close(self, code: int, reason: str) -> Deferred[None]:
        """Close the station with C{code} and its links; fires when all connections are gone."""
        if not self._closing:
            self._closing = True
            self._log.info(
                "station {station}: closing ({code} {reason})", station=self.station_id, code=code, reason=reason
            )
            self.protocol.sendCloseFrame(code, reason.encode("utf-8"), False)
        return DeferredList([self.protocol.when_closed(), self._stop_links()]).addCallback(lambda _: None)

    def _stop_links(self) -> Deferred[None]:
        if self._stopped is None:
            self._closing = True
            watch = self._write_watch
            if watch is not None:
                if watch.full:
                    # Frames to a closing station are not sent: read its close handshake.
                    self.protocol.transport.resumeProducing()
                watch.stopProducing()
            self._schedule_expiry()
            self._update_failover()
            self._stopped = DeferredList([link.stop() for link in self.links.values()]).addCallback(lambda _: None)
            self._stopped.addCallback(lambda _: self._end())
        stopped: Deferred[None] = Deferred()
        self._stopped.addCallback(lambda result: (stopped.callback(None), result)[1])
        return stopped

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_ended(self)
