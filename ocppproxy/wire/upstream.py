"""
One station's link to one central system: its WebSocket connection
(L{ocppproxy.wire.upstream_protocol}) kept connected by a L{ClientService}, with a
bounded queue for frames sent while it is away. What the link decides (attempts, giving up, the queue, stalls) is the pure
L{ocppproxy.core.upstream_link.UpstreamLinkState}; L{UpstreamLink} carries it out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import LogLevel

from ..config.model import ReconnectPolicy
from ..core.effects import Log
from ..core.frame_queue import FrameQueue
from ..core.observer import TO_UPSTREAM, FrameRecorder
from ..core.upstream_link import (
    CountStall,
    DropConnection,
    Flush,
    GiveUp,
    LinkEffect,
    StopReconnecting,
    Tell,
    Told,
    UpstreamLinkState,
    backoff_exponent,
    jittered,
)
from ..logs import proxy_logger
from .backpressure import WriteBufferWatch, WriteLimits
from .closing import OPEN
from .tls import ClientTLS
from .upstream_protocol import FailureReportingEndpoint, UpstreamFactory, UpstreamProtocol, upstream_endpoint

if TYPE_CHECKING:
    from ..fastpath import FastPath

GOING_AWAY = 1001
_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}


def backoff_delay(policy: ReconnectPolicy, retry: int, jitter: float) -> float:
    """
    How long to wait before the C{retry}-th retry (1-based): C{initial_delay * factor **
    (retry - 1)}, capped at C{max_delay}, less up to 20% jitter (C{jitter} in [0, 1)) so
    that stations dropped together do not all come back together.
    """
    capped = _capped_backoff(policy.initial_delay, policy.max_delay, policy.factor)
    return jittered(capped(backoff_exponent(retry)), jitter)


@lru_cache(maxsize=16)
def _capped_backoff(initial_delay: float, max_delay: float, factor: float) -> Callable[[int], float]:
    """
    Twisted's backoffPolicy without its jitter: C{initial_delay * factor ** n}, capped at
    C{max_delay}. Its jitter is added (C{+ jitter()} seconds), ours takes up to a fifth
    off: it is applied after (L{jittered}).
    """
    return backoffPolicy(initialDelay=initial_delay, maxDelay=max_delay, factor=factor, jitter=lambda: 0.0)


@dataclass(frozen=True, slots=True)
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


class UpstreamLink:
    """
    Keeps one station connected to one central system: the Twisted edge of an
    L{UpstreamLinkState}, which decides (attempt counting, giving up, the queue and its
    flush, the stall state); this does what it decides.

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
        self._state = UpstreamLinkState(name, url, station_id, policy.max_attempts, queue_limit)
        self._write_limits = write_limits or WriteLimits(reactor)
        self._write_watch: WriteBufferWatch | None = None
        # The open protocol while frames go straight out; None while away, stalled or flushing.
        self._writing_to: UpstreamProtocol | None = None
        self._reading_paused = False
        self._recorder = recorder
        self.url = url
        self.station_id = station_id
        self._owner = owner
        self._clock: IReactorTime = reactor
        self._policy = policy
        self._jitter = jitter
        self.protocol: UpstreamProtocol | None = None
        self.first_outcome: Deferred[HandshakeOutcome] = Deferred()
        self.last_refused_status: int | None = None
        """The HTTP status that refused the last failed attempt (None: it failed before, or short of, an answer)."""
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
            FailureReportingEndpoint(endpoint or upstream_endpoint(reactor, url, tls, fast_path), self._attempt_failed),
            factory,
            retryPolicy=self._retry_delay,
            clock=reactor,
        )

    @property
    def connected(self) -> bool:
        """Whether frames sent now go straight out."""
        return self.protocol is not None

    @property
    def queue(self) -> FrameQueue[bytes]:
        """The frames waiting for the connection (bounded, the oldest dropped first)."""
        return self._state.queue

    @property
    def failed_attempts(self) -> int:
        """Failed connection attempts since the link was last connected."""
        return self._state.failed_attempts

    @property
    def gave_up(self) -> bool:
        """Whether the link stopped reconnecting for this station session (C{max_attempts} failed in a row)."""
        return self._state.gave_up

    @property
    def ever_connected(self) -> bool:
        """Whether a connection of this link ever opened."""
        return self._state.ever_connected

    @property
    def stalled(self) -> bool:
        """Whether the central system is not taking frames fast enough: they wait in the queue."""
        return self._state.stalled

    def start(self) -> None:
        """Start connecting."""
        if not self.service.running and not self._state.stopping:
            self.service.startService()

    def set_subprotocols(self, subprotocols: list[str]) -> None:
        """The subprotocols offered from the next connection attempt on."""
        self._factory.protocols = list(subprotocols)

    def _first(self, outcome: HandshakeOutcome) -> None:
        if not self.first_outcome.called:
            self.first_outcome.callback(outcome)

    def _retry_delay(self, _attempt: int) -> float:
        """
        ClientService's retryPolicy, called once per failed attempt or lost connection,
        after the link heard of it: the wait before the state's retry. (ClientService's
        own count starts again whenever TCP connects, so a refused WebSocket handshake
        would always wait the first delay: it is not used.)
        """
        return backoff_delay(self._policy, self._state.retries, self._jitter())

    def _carry_out(self, effects: list[LinkEffect]) -> None:
        """Do what the state decided, in order."""
        for effect in effects:
            kind = effect.__class__
            if kind is Log:
                self._log.emit(_LEVELS[effect.level], effect.text, **effect.fields)
            elif kind is Tell:
                self._tell(effect)
            elif kind is Flush:
                self._flush()
            elif kind is GiveUp:
                self._clock.callLater(0, self._give_up)
            elif kind is StopReconnecting:
                self.service.stopService()
            elif kind is CountStall:
                self._write_limits.count_stall(self.name)
            elif kind is DropConnection:
                self.protocol.dropConnection(abort=True)
            else:
                raise TypeError(f"unknown effect {effect!r}")

    def _tell(self, effect: Tell) -> None:
        owner, name, what = self._owner, self.name, effect.what
        if what is Told.ATTEMPT_FAILED:
            owner.upstream_attempt_failed(name, effect.reason)
        elif what is Told.FRAME_DROPPED:
            owner.upstream_frame_dropped(name)
        elif what is Told.CONNECTED:
            owner.upstream_connected(name)
        elif what is Told.DISCONNECTED:
            owner.upstream_disconnected(name, effect.reason)
        elif what is Told.GAVE_UP:
            owner.upstream_gave_up(name)
        else:
            raise TypeError(f"unknown owner event {what!r}")

    def _give_up(self) -> None:
        self._carry_out(self._state.give_up())

    def send(self, payload: bytes) -> None:
        """Send a text frame now, or queue it until the link is connected."""
        protocol = self._writing_to
        if protocol is not None and protocol.state == OPEN:
            protocol.sendMessage(payload, False)
            recorder = self._recorder
            if recorder is not None:
                recorder(self.station_id, TO_UPSTREAM, self.name, payload)
            return
        # Away, stalled or closing: the frame waits in the queue.
        effects = self._state.frame_while_away(payload)
        if effects:
            self._carry_out(effects)

    def opened(self, protocol: UpstreamProtocol) -> None:
        """The handshake succeeded: flush the queue in order, then relay directly."""
        if self._state.stopping:
            protocol.sendCloseFrame(GOING_AWAY, b"station disconnected from proxy", False)
            return
        self._first(HandshakeOutcome(subprotocol=protocol.websocket_protocol_in_use))
        self.protocol = protocol
        self._write_watch = WriteBufferWatch(protocol.transport, self._write_limits, self)
        if self._reading_paused:
            protocol.transport.pauseProducing()
        self._carry_out(self._state.opened())

    def _flush(self) -> None:
        """
        Send the queued frames in order while the connection's buffer has room; once
        all are sent, relay directly again. Called when the connection opens and each
        time its buffer has drained.
        """
        protocol, watch, queue, recorder = self.protocol, self._write_watch, self._state.queue, self._recorder
        while len(queue) and not watch.full and protocol.state == protocol.STATE_OPEN:
            payload = queue.popleft()
            protocol.sendMessage(payload, False)
            if recorder is not None:
                recorder(self.station_id, TO_UPSTREAM, self.name, payload)
        if watch.full or protocol.state != protocol.STATE_OPEN:
            return  # the rest waits for the next drain, or the next connection
        self._carry_out(self._state.flushed(self._clock.seconds()))
        self._writing_to = protocol

    def write_buffer_full(self) -> None:
        """Over C{max_write_buffer} unsent: queue from now on, until the buffer drains."""
        self._writing_to = None
        self._carry_out(self._state.buffer_full(self._clock.seconds(), self._write_limits.max_write_buffer))

    def write_buffer_drained(self) -> None:
        """The buffer has drained: send what waited."""
        self._carry_out(self._state.buffer_drained())

    def write_buffer_stalled(self) -> None:
        """The buffer has not drained within C{stall_timeout}: drop the connection; ClientService reconnects."""
        self._carry_out(self._state.buffer_stalled(self._write_limits.stall_timeout))

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
        self.last_refused_status = refused_status
        self._first(HandshakeOutcome(refused_status=refused_status, reason=reason))
        self._carry_out(self._state.attempt_failed(reason))

    def closed(self, protocol: UpstreamProtocol, reason: str) -> None:
        """A connection ended, open or not."""
        if not protocol.was_open:
            self._attempt_failed(reason, protocol.refused_status)
            return
        if protocol is not self.protocol:
            return
        self._connection_gone()
        self._carry_out(self._state.disconnected(reason))

    def _connection_gone(self) -> None:
        """No connection to relay to any more."""
        self.protocol = self._writing_to = None
        watch, self._write_watch = self._write_watch, None
        if watch is not None:
            watch.stopProducing()

    def stop(self) -> Deferred[None]:
        """Close with 1001 (going away) and stop reconnecting; fires when the connection is gone."""
        self._state.stop()
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
