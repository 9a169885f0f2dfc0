"""
One station's link to one central system: an Autobahn client protocol and factory kept
connected by a L{ClientService}, with a bounded queue for frames sent while it is away.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from ..config.model import ReconnectPolicy
from ..core.frame_queue import FrameQueue
from ..core.observer import TO_UPSTREAM, FrameRecorder
from ..logs import autobahn_logger, proxy_logger
from .backpressure import WriteBufferWatch, WriteLimits
from .tls import ClientTLS, TLSClientEndpoint, default_client_tls

if TYPE_CHECKING:
    from ..fastpath import FastPath

GOING_AWAY = 1001
# The status a station is refused with when its primary's handshake failed and the
# primary's own status is not known (see UpstreamProtocol.refusal_status).
GENERIC_REFUSAL = 502


def backoff_delay(policy: ReconnectPolicy, retry: int, jitter: float) -> float:
    """
    How long to wait before the C{retry}-th retry (1-based): C{initial_delay * factor **
    (retry - 1)}, capped at C{max_delay}, less up to 20% jitter (C{jitter} in [0, 1)) so
    that stations dropped together do not all come back together.
    """
    exponent = min(max(retry - 1, 0), 64)
    base = min(policy.initial_delay * policy.factor**exponent, policy.max_delay)
    return base * (1.0 - 0.2 * jitter)


@dataclass(frozen=True)
class HandshakeOutcome:
    """How a link's first connection attempt ended: the subprotocol chosen, or the refusal."""

    subprotocol: str | None = None
    refused_status: int | None = None
    reason: str = ""


class LinkOwner(Protocol):
    """What an L{UpstreamLink} reports to (the station session)."""

    def from_upstream(self, name: str, payload: bytes) -> None: ...

    def upstream_connected(self, name: str) -> None: ...

    def upstream_disconnected(self, name: str, reason: str) -> None: ...

    def upstream_gave_up(self, name: str) -> None: ...

    def upstream_attempt_failed(self, name: str, reason: str) -> None: ...

    def upstream_frame_dropped(self, name: str) -> None: ...


class UpstreamProtocol(WebSocketClientProtocol):
    """
    The WebSocket connection to a central system; hands everything to its link. On
    Autobahn's stock frame path: given a fast path, L{UpstreamFactory} builds a subclass
    of this one with the fast path's frame hooks (L{ocppproxy.fastpath.frames}).
    """

    log = autobahn_logger("ocppproxy.wire.upstream.UpstreamProtocol")

    def __init__(self) -> None:
        super().__init__()
        self._lost_reason: Failure | None = None
        self._close_waiters: list[Deferred[None]] = []
        self._closed = False
        self.was_open = False
        self.refused_status: int | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        # Autobahn never applies its tcpNoDelay option (WebSocketAdapterProtocol's
        # connectionMade reads it before _connectionMade copies it from the factory);
        # without it a relayed frame can wait ~40 ms for Nagle and delayed ACKs.
        self.transport.setTcpNoDelay(True)

    def onOpen(self) -> None:
        self.was_open = True
        self.factory.link.opened(self)

    def failHandshake(self, reason: str) -> None:
        self.refused_status = self.refusal_status(reason)
        super().failHandshake(reason)

    def refusal_status(self, reason: str) -> int | None:
        """
        The HTTP status to refuse the station with, now that this handshake failed for
        C{reason} (None: it was not refused). Autobahn gives no status, only a text whose
        wording is not an API: every failed handshake is a refusal with L{GENERIC_REFUSAL}
        (the fast path reads the primary's own status from the text).
        """
        return GENERIC_REFUSAL

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.link.received(payload, isBinary)

    def connectionLost(self, reason: Failure) -> None:
        self._lost_reason = reason
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        why = reason or (f"close code {code}" if code else "connection lost")
        lost = self._lost_reason
        # A TLS verification failure only shows in connectionLost's reason.
        if lost is not None and not lost.check(ConnectionDone, ConnectionAborted):
            detail = lost.getErrorMessage()
            if detail and detail not in why:
                why = f"{why}: {detail}"
        self._closed = True
        self.factory.link.closed(self, why)
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def when_closed(self) -> Deferred[None]:
        """A Deferred that fires once the connection is closed (at once if it already is)."""
        if self._closed:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._close_waiters.append(waiter)
        return waiter


class UpstreamFactory(WebSocketClientFactory):
    """
    Client factory for one station's connection to one central system. With
    C{fast_path}, it builds its protocols through it (see
    L{ocppproxy.fastpath.FastPath.equip}); without, L{UpstreamProtocol}.
    """

    protocol = UpstreamProtocol
    noisy = False

    def __init__(
        self, link: UpstreamLink, websocket_options: dict, fast_path: FastPath | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.link = link
        self.setProtocolOptions(**websocket_options)
        if fast_path is not None:
            fast_path.equip(self)


def upstream_endpoint(
    reactor,
    url: str,
    tls: ClientTLS | Callable[[], ClientTLS | None] | None = None,
    fast_path: FastPath | None = None,
):
    """
    The client endpoint for a ws:// or wss:// URL (wss verifies the server's certificate
    and name, over L{ocppproxy.wire.tls} with C{fast_path}). C{tls} may be a function
    asked at each connection attempt (the TLS files in force then); where it gives None,
    the system's trust store is used.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    endpoint = HostnameEndpoint(reactor, parts.hostname, port, timeout=10)
    if secure and callable(tls):
        asked = tls
        endpoint = TLSClientEndpoint(endpoint, lambda: asked() or default_client_tls(parts.hostname), fast_path)
    elif secure:
        endpoint = TLSClientEndpoint(endpoint, tls or default_client_tls(parts.hostname), fast_path)
    return endpoint


@implementer(IStreamClientEndpoint)
class _FailureReportingEndpoint:
    """Wraps a client endpoint to tell the link why a connection attempt failed."""

    def __init__(self, endpoint: IStreamClientEndpoint, on_failure: Callable[[str], None]) -> None:
        self._endpoint = endpoint
        self._on_failure = on_failure

    def connect(self, factory):
        def failed(failure: Failure) -> Failure:
            self._on_failure(failure.getErrorMessage())
            return failure

        return self._endpoint.connect(factory).addErrback(failed)


class UpstreamLink:
    """
    Keeps one station connected to one central system.

    Frames given to L{send} while the connection is down, or while the central system
    does not read them fast enough (more than C{write_limits.max_write_buffer} bytes
    unsent), are queued (bounded) and flushed in order when the handshake is done or the
    buffer has drained; a connection whose buffer has not drained within
    C{write_limits.stall_timeout} is dropped and reconnected. A refused handshake counts as a failed
    attempt like a refused TCP connection; after C{max_attempts} failed attempts in a
    row the link gives up for this station session and tells its owner. C{fast_path}
    goes to its factory and its TLS (None: the stock Autobahn and Twisted paths).
    """

    _log = proxy_logger()

    def __init__(
        self,
        name: str,
        url: str,
        station_id: str,
        owner: LinkOwner,
        reactor,
        policy: ReconnectPolicy,
        queue_limit: int,
        subprotocols: list[str],
        headers: dict[str, str],
        useragent: str | None,
        tls: ClientTLS | Callable[[], ClientTLS | None] | None = None,
        jitter: Callable[[], float] = random.random,
        endpoint: IStreamClientEndpoint | None = None,
        websocket_options: dict | None = None,
        recorder: FrameRecorder | None = None,
        write_limits: WriteLimits | None = None,
        fast_path: FastPath | None = None,
    ) -> None:
        self.name = name
        self._write_limits = write_limits or WriteLimits(reactor)
        self._write_watch: WriteBufferWatch | None = None
        # The open protocol while frames go straight out; None while away or stalled.
        self._writing_to: UpstreamProtocol | None = None
        self._stalled_since: float | None = None
        self._reading_paused = False
        self._recorder = recorder
        self.url = url
        self.station_id = station_id
        self._owner = owner
        self._clock: IReactorTime = reactor
        self._policy = policy
        self._jitter = jitter
        self.queue: FrameQueue[bytes] = FrameQueue(queue_limit)
        self.protocol: UpstreamProtocol | None = None
        self.ever_connected = False
        self.gave_up = False
        self._stopping = False
        self._retries = 0
        self._failed_attempts = 0
        self._disconnected_since_last_retry = False
        self._last_failure = "no attempt yet"
        self.first_outcome: Deferred[HandshakeOutcome] = Deferred()
        self._factory = factory = UpstreamFactory(
            self,
            websocket_options or {"openHandshakeTimeout": 10, "closeHandshakeTimeout": 5},
            fast_path,
            url=url,
            protocols=subprotocols,
            headers=headers,
            useragent=useragent,
            reactor=reactor,
        )
        # No prepareConnection: ClientService cannot survive a connection lost while it
        # prepares (automat NoTransition), so handshake failures are counted here instead.
        self.service = ClientService(
            _FailureReportingEndpoint(endpoint or upstream_endpoint(reactor, url, tls, fast_path), self._attempt_failed),
            factory,
            retryPolicy=self._retry_delay,
            clock=reactor,
        )

    @property
    def connected(self) -> bool:
        """Whether frames sent now go straight out."""
        return self.protocol is not None

    @property
    def failed_attempts(self) -> int:
        """Failed connection attempts since the link was last connected."""
        return self._failed_attempts

    def start(self) -> None:
        """Start connecting."""
        if not self.service.running and not self._stopping:
            self.service.startService()

    def set_subprotocols(self, subprotocols: list[str]) -> None:
        """The subprotocols offered from the next connection attempt on."""
        self._factory.protocols = list(subprotocols)

    def _first(self, outcome: HandshakeOutcome) -> None:
        if not self.first_outcome.called:
            self.first_outcome.callback(outcome)

    def _retry_delay(self, _attempt: int) -> float:
        """ClientService's retryPolicy: called once per failed attempt or lost connection."""
        self._retries += 1
        if self._disconnected_since_last_retry:
            self._disconnected_since_last_retry = False
        else:
            self._failed_attempts += 1
            if self._failed_attempts >= self._policy.max_attempts:
                self._clock.callLater(0, self._give_up)
        return backoff_delay(self._policy, self._retries, self._jitter())

    def _give_up(self) -> None:
        if self._stopping or self.gave_up:
            return
        self.gave_up = True
        self._log.error(
            "station {station}: giving up on {upstream} ({url}) after {attempts} failed attempts, last: {reason}",
            station=self.station_id,
            upstream=self.name,
            url=self.url,
            attempts=self._failed_attempts,
            reason=self._last_failure,
        )
        self.queue.clear()
        self.service.stopService()
        self._owner.upstream_gave_up(self.name)

    def send(self, payload: bytes) -> None:
        """Send a text frame now, or queue it until the link is connected."""
        protocol = self._writing_to
        if protocol is not None and protocol.state == protocol.STATE_OPEN:
            protocol.sendMessage(payload, False)
            recorder = self._recorder
            if recorder is not None:
                recorder(self.station_id, TO_UPSTREAM, self.name, payload)
            return
        # Away, stalled or closing: the frame waits in the queue.
        if self.gave_up or self._stopping:
            return
        if self.queue.push(payload):
            self._queue_overflowed()

    def _queue_overflowed(self) -> None:
        """The oldest queued frame was dropped: warn once per outage or stall, tell the owner every time."""
        if self.queue.dropped == 1:
            self._log.warn(
                "station {station}: queue for {upstream} is full ({limit} frames), dropping the oldest",
                station=self.station_id,
                upstream=self.name,
                limit=len(self.queue),
            )
        self._owner.upstream_frame_dropped(self.name)

    def opened(self, protocol: UpstreamProtocol) -> None:
        """The handshake succeeded: flush the queue in order, then relay directly."""
        if self._stopping:
            protocol.sendCloseFrame(GOING_AWAY, b"station disconnected from proxy", False)
            return
        self.ever_connected = True
        self._first(HandshakeOutcome(subprotocol=protocol.websocket_protocol_in_use))
        self._retries = 0
        self._failed_attempts = 0
        self._log.info(
            "station {station}: connected to {upstream} ({url}), {count} queued frames flushed",
            station=self.station_id,
            upstream=self.name,
            url=self.url,
            count=len(self.queue),
        )
        self.protocol = protocol
        self._write_watch = WriteBufferWatch(protocol.transport, self._write_limits, self)
        if self._reading_paused:
            protocol.transport.pauseProducing()
        self._flush()
        self._owner.upstream_connected(self.name)

    def _flush(self) -> None:
        """
        Send the queued frames in order while the connection's buffer has room; once
        all are sent, relay directly again. Called when the connection opens and each
        time its buffer has drained.
        """
        protocol, watch, queue, recorder = self.protocol, self._write_watch, self.queue, self._recorder
        while len(queue) and not watch.full and protocol.state == protocol.STATE_OPEN:
            payload = queue.popleft()
            protocol.sendMessage(payload, False)
            if recorder is not None:
                recorder(self.station_id, TO_UPSTREAM, self.name, payload)
        if watch.full or protocol.state != protocol.STATE_OPEN:
            return  # the rest waits for the next drain, or the next connection
        dropped = queue.dropped
        queue.drain()
        if dropped:
            self._log.warn(
                "station {station}: {dropped} frames for {upstream} were dropped while it was away or stalled"
                " (queue full)",
                station=self.station_id,
                upstream=self.name,
                dropped=dropped,
            )
        if self._stalled_since is not None:
            self._log.info(
                "station {station}: {upstream} takes frames again after a {duration:.1f} s stall",
                station=self.station_id,
                upstream=self.name,
                duration=self._clock.seconds() - self._stalled_since,
            )
            self._stalled_since = None
        self._writing_to = protocol

    @property
    def stalled(self) -> bool:
        """Whether the central system is not taking frames fast enough: they wait in the queue."""
        return self._stalled_since is not None

    def write_buffer_full(self) -> None:
        """Over C{max_write_buffer} unsent: queue from now on, until the buffer drains."""
        self._writing_to = None
        if self._stalled_since is None:
            self._stalled_since = self._clock.seconds()
            self._write_limits.count_stall(self.name)
            self._log.warn(
                "station {station}: {upstream} ({url}) is not taking frames as fast as they come (over {limit} bytes"
                " unsent): they wait in its queue",
                station=self.station_id,
                upstream=self.name,
                url=self.url,
                limit=self._write_limits.max_write_buffer,
            )

    def write_buffer_drained(self) -> None:
        """The buffer has drained: send what waited."""
        self._flush()

    def write_buffer_stalled(self) -> None:
        """The buffer has not drained within C{stall_timeout}: drop the connection; ClientService reconnects."""
        self._log.warn(
            "station {station}: {upstream} ({url}) has not taken its unsent frames in {timeout:g} s (stalled):"
            " dropping the connection and reconnecting",
            station=self.station_id,
            upstream=self.name,
            url=self.url,
            timeout=self._write_limits.stall_timeout,
        )
        self.protocol.dropConnection(abort=True)

    def pause_reading(self) -> None:
        """Stop reading from the central system (the station is not taking what it sends), also after reconnecting."""
        self._reading_paused = True
        if self.protocol is not None:
            self.protocol.transport.pauseProducing()

    def resume_reading(self) -> None:
        """Read from the central system again."""
        if self._reading_paused:
            self._reading_paused = False
            if self.protocol is not None:
                self.protocol.transport.resumeProducing()

    def received(self, payload: bytes, is_binary: bool) -> None:
        """A frame from the central system."""
        if is_binary:
            self._log.warn(
                "station {station}: {upstream} sent a binary frame: closing that connection with 1003",
                station=self.station_id,
                upstream=self.name,
            )
            if self.protocol is not None:
                self.protocol.sendCloseFrame(1003, b"OCPP-J frames are text", False)
            return
        self._owner.from_upstream(self.name, payload)

    def _attempt_failed(self, reason: str, refused_status: int | None = None) -> None:
        self._last_failure = reason
        self._first(HandshakeOutcome(refused_status=refused_status, reason=reason))
        if not self._stopping:
            self._owner.upstream_attempt_failed(self.name, reason)
            self._log.warn(
                "station {station}: connection to {upstream} ({url}) failed: {reason}",
                station=self.station_id,
                upstream=self.name,
                url=self.url,
                reason=reason,
            )

    def closed(self, protocol: UpstreamProtocol, reason: str) -> None:
        """A connection ended, open or not."""
        if not protocol.was_open:
            self._attempt_failed(reason, protocol.refused_status)
            return
        if protocol is not self.protocol:
            return
        self._connection_gone()
        self._disconnected_since_last_retry = True
        self._log.info(
            "station {station}: disconnected from {upstream} ({reason}), reconnecting",
            station=self.station_id,
            upstream=self.name,
            reason=reason,
        )
        self._owner.upstream_disconnected(self.name, reason)

    def _connection_gone(self) -> None:
        """No connection to relay to any more: a stall ends with it (the queue stays)."""
        self.protocol = self._writing_to = None
        self._stalled_since = None
        watch, self._write_watch = self._write_watch, None
        if watch is not None:
            watch.stopProducing()

    def stop(self) -> Deferred[None]:
        """Close with 1001 (going away) and stop reconnecting; fires when the connection is gone."""
        self._stopping = True
        self.queue.clear()
        self.resume_reading()
        protocol = self.protocol
        self._connection_gone()
        if protocol is not None:
            closing = protocol.when_closed()
            protocol.sendCloseFrame(GOING_AWAY, b"station disconnected from proxy", False)
            return closing.addCallback(lambda _: self.service.stopService())
        if not self.service.running:
            return succeed(None)
        return self.service.stopService()
