"""
The proxy service: listens for stations, keeps the registry of station sessions, and
wires each station to its upstream links through the pure routing rules.
"""

from __future__ import annotations

from collections.abc import Mapping

from autobahn.websocket.types import ConnectionDeny
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions
from twisted.python.failure import Failure

from ..config.model import Config
from ..core.observer import FrameRecorder, NullObserver, ProxyObserver
from ..core.transactions import TransactionStore
from ..logs import proxy_logger
from ..wire.backpressure import WriteLimits
from ..wire.limits import StationLimits
from ..wire.station import StationFactory, StationProtocol
from ..wire.station_tls import station_tls_options, wrap_station_factory
from ..wire.upstream import GOING_AWAY, UpstreamLink
from .connection_options import upstream_headers, websocket_options
from .session import REPLACED, StationSession
from .statefile import StateFile, read_state


class ProxyService(MultiService):
    """
    The daemon's core: accepts stations on the C{listen} endpoint and keeps one
    L{StationSession} per station id. L{stopService} closes every station with 1001 and
    fires when every station and upstream connection is closed.
    """

    _log = proxy_logger()

    def __init__(
        self,
        config: Config,
        reactor,
        upstream_tls: Mapping[str, IOpenSSLClientConnectionCreator] | None = None,
        observer: ProxyObserver | None = None,
        recorder: FrameRecorder | None = None,
        station_tls: CertificateOptions | None = None,
    ) -> None:
        super().__init__()
        self.observer: ProxyObserver = observer or NullObserver()
        self.recorder = recorder
        self.state_file: StateFile | None = None
        self.transactions = TransactionStore()
        if config.state_file:
            # The transaction ids the secondary knows survive a restart.
            self.state_file = StateFile(config.state_file, lambda: self.transactions.dump(), reactor)
            self.transactions = TransactionStore(self.state_file.changed)
            self.transactions.load(read_state(config.state_file))
        self._websocket_options = websocket_options(config)
        self.config = config
        self._reactor = reactor
        self.write_limits = WriteLimits(reactor, config.max_write_buffer, config.stall_timeout)
        # TLS options per wss:// upstream name (see upstream_tls.client_tls_factory); without
        # them a wss:// upstream is verified against the system trust store.
        self._upstream_tls = upstream_tls or {}
        self.sessions: dict[str, StationSession] = {}
        self._all_sessions: set[StationSession] = set()
        self.limits = StationLimits(
            reactor,
            config.max_stations,
            config.max_handshakes,
            config.max_handshakes_per_address,
            config.trusted_proxies,
        )
        self.factory = StationFactory(self, reactor, self._websocket_options, self.limits)
        # Read by the command line already (see tap.Options); read here for other callers.
        if station_tls is None and config.station_tls:
            station_tls = station_tls_options(config.station_tls)
        self._station_tls = station_tls
        self._port = None
        # Whether stations are accepted: from listening until shutdown begins (/health).
        self.accepting = False
        self._listen_error: str | None = None
        self.listening: Deferred = Deferred()
        # Cluster mode's hook (ocppproxy.cluster.ClusterService): told when a station
        # connects and when a session ends; None on a single instance.
        self.ownership = None

    def startService(self) -> None:
        super().startService()
        try:
            endpoint = serverFromString(self._reactor, self.config.listen)
        except (IndexError, KeyError):
            if not self.config.listen.startswith("systemd:"):
                raise
            # Twisted's systemd: parser looks the inherited socket up in a list or by name.
            self._listen_failed(Failure(ValueError("systemd passed no such socket (is the socket unit active?)")))
            raise SystemExit(1) from None
        factory = self.factory
        if self._station_tls is not None:
            factory = wrap_station_factory(factory, self._station_tls)
        listening = endpoint.listen(factory)
        listening.addCallbacks(self._listening, self._listen_failed)
        if self._listen_error is not None:
            # Most endpoints listen synchronously: stop start-up with that one line.
            raise SystemExit(1)

    def _listening(self, port) -> None:
        self._port = port
        self.accepting = True
        self._log.info("ocppproxy listening on {address}", address=port.getHost())
        self.listening.callback(port)

    def _listen_failed(self, failure) -> None:
        self._listen_error = failure.getErrorMessage()
        self._log.critical("cannot listen on {listen}: {reason}", listen=self.config.listen, reason=self._listen_error)
        self.listening.errback(failure)
        self.listening.addErrback(lambda _: None)
        if self._reactor.running:
            self._reactor.stop()

    def station_connecting(
        self, protocol: StationProtocol, station_id: str, request, offers: list[str]
    ) -> StationSession:
        """
        A station's handshake is acceptable: replace any older session and open its
        primary link. Raises L{ConnectionDeny} (503) when C{limits.max_stations} are
        connected and this is not one of them reconnecting.
        """
        if station_id not in self.sessions and not self.limits.admit_station(station_id, len(self.sessions)):
            raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, "too many stations connected")
        offers = offers or [self.config.default_subprotocol]
        previous = self.sessions.get(station_id)
        session = StationSession(
            station_id, protocol, self._reactor, self._session_ended, self.observer, self.recorder, self.write_limits
        )
        self.sessions[station_id] = session
        self._all_sessions.add(session)
        if self.ownership is not None:
            self.ownership.station_connected(session)
        if previous is not None:
            self._log.info("station {station}: new connection replaces the previous one", station=station_id)
            previous.close(REPLACED, "replaced by a new connection of the same station")
        peer_host = getattr(protocol.transport.getPeer(), "host", "unknown")
        headers = upstream_headers(request, peer_host, station_id, self.config)
        useragent = request.headers.get("user-agent")
        links = {
            name: UpstreamLink(
                name,
                url + station_id,
                station_id,
                session,
                self._reactor,
                self.config.reconnect,
                self.config.buffer_max_messages,
                list(offers),
                headers[name],
                useragent,
                tls=self._upstream_tls.get(name),
                websocket_options=self._websocket_options,
                recorder=self.recorder,
                write_limits=self.write_limits,
            )
            for name, url in self.config.upstream_urls().items()
        }
        session.attach(links, offers, self.config, self.transactions)
        return session

    @property
    def handshakes_refused(self) -> int:
        """How many station handshakes were answered with an HTTP error since start-up."""
        return self.factory.handshakes_refused

    def connected_links(self, upstream: str) -> int:
        """How many stations have an open link to C{upstream} right now."""
        count = 0
        for session in self.sessions.values():
            link = session.links.get(upstream)
            if link is not None and link.connected:
                count += 1
        return count

    def _session_ended(self, session: StationSession) -> None:
        self._all_sessions.discard(session)
        if self.sessions.get(session.station_id) is session:
            del self.sessions[session.station_id]
        if self.ownership is not None:
            self.ownership.station_ended(session)

    def close_replaced(self, session: StationSession, instance: str) -> None:
        """
        Cluster mode: a newer connection of this station is on C{instance}; close this one
        with 4000 and its upstream links, as a local replacement does.
        """
        self._log.info(
            "station {station}: new connection on instance {instance} replaces this one",
            station=session.station_id,
            instance=instance,
        )
        session.close(REPLACED, f"replaced by a new connection of the same station on {instance}")

    def stopService(self) -> Deferred[None]:
        """Stop accepting, close every station with 1001; fires when all connections are closed."""
        self.accepting = False
        # Stopped once, even when the service tree stops a proxy already stopped on its own.
        port, self._port = self._port, None
        stopping = succeed(None) if port is None else maybeDeferred(port.stopListening)
        closes = [session.close(GOING_AWAY, "proxy shutting down") for session in list(self._all_sessions)]
        self._log.info("shutting down: closing {count} stations", count=len(closes))
        done = DeferredList([stopping, *closes])
        if self.state_file is not None:
            done.addCallback(lambda _: self.state_file.flush())
        done.addCallback(lambda _: MultiService.stopService(self))
        return done
