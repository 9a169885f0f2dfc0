"""
The proxy service: listens for stations, keeps the registry of station sessions, and
wires each station to its upstream links through the pure routing rules.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from autobahn.websocket.types import ConnectionDeny
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList

from ..config.model import Config
from ..core.observer import NullObserver, ProxyObserver
from ..core.redact import Redactor
from ..core.transactions import TransactionStore
from ..logs import proxy_logger
from ..wire.backpressure import WriteLimits
from ..wire.limits import StationLimits
from ..wire.station import StationFactory, StationProtocol
from ..wire.station_tls import wrap_station_factory
from ..wire.tls_files import TLSFiles, read_tls_files
from ..wire.upstream import GOING_AWAY, UpstreamLink
from .connection_options import StationHeaders, websocket_options
from .listen import ListenEndpoint
from .migration import RouteMigration
from .registry import Ownership, StationSessions, close_replaced
from .service_tree import ServiceTree, first_failure, stop_children
from .session import REPLACED, StationSession
from .routing_state import Routing, routing_for
from .snapshot import ProxySnapshot, proxy_snapshot
from .outbox_drain import Drains
from .statefile import StateFile, read_state

if TYPE_CHECKING:
    from ..fastpath import FastPath
    from .outbox import Outbox


NO_ROUTE_LOG_INTERVAL = 60.0
"""Seconds between two log lines about stations on no route from one address."""
NO_ROUTE_ADDRESSES = 10000
"""Addresses remembered for that (beyond, forgotten all at once)."""


class ProxyService(ServiceTree):
    """
    The daemon's core: accepts stations on the C{listen} endpoint (its child service
    C{listener}, a L{StreamServerEndpointService}) and keeps one L{StationSession} per
    station id. C{listening} fires with the port once listening (or fails); C{accepting}
    is True from then until shutdown begins. L{stopService} stops accepting, closes
    every station with 1001 and fires when every station and upstream connection is closed.
    C{fast_path} (decided by the daemon at start-up) goes to every factory, TLS layer and
    write-buffer watch it builds; None: the stock Autobahn and Twisted paths.
    """

    _log = proxy_logger()

    def __init__(
        self,
        config: Config,
        reactor,
        tls: TLSFiles | None = None,
        observer: ProxyObserver | None = None,
        redactor: Redactor | None = None,
        *,
        sessions: StationSessions | None = None,
        ownership: Ownership | None = None,
        share_transactions: Callable[[TransactionStore], TransactionStore] | None = None,
        fast_path: FastPath | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        super().__init__()
        # The durable outbox of the mirrors (None: memory queues only, as without an outbox section).
        self.outbox: Outbox | None = None
        self.drains: Drains | None = None
        self._fast_path = fast_path
        # What log lines may quote of a frame: the secrets masked (see ocppproxy.core.redact).
        self.redactor = redactor or Redactor(config.redact)
        # The notifier, the status page's activity, the traffic log (see Observers): each
        # isolated from the others, so that a failing observer costs no relayed frame.
        self.observer: ProxyObserver = observer or NullObserver()
        self.state_file: StateFile | None = None
        self.transactions = TransactionStore()
        if config.state_file:
            # The transaction ids the secondary knows survive a restart.
            self.state_file = StateFile(config.state_file, lambda: self.transactions.dump(), reactor)
            self.transactions = TransactionStore(self.state_file.changed)
            skipped = self.transactions.load(read_state(config.state_file))
            if skipped:
                # JSON, but not what the proxy writes (edited by hand, another program's file).
                self._log.warn(
                    "state file {path}: {skipped} entries not in the expected shape were skipped"
                    " ({{station id: [[station's transaction id, {{upstream: its own id, ...}}], ...]}})",
                    path=config.state_file,
                    skipped=skipped,
                )
        if share_transactions is not None:
            # Cluster mode with a secondary: the ids are the cluster's, shared through Redis.
            self.transactions = share_transactions(self.transactions)
        self._websocket_options = websocket_options(config)
        # Which upstreams each station talks to; a reload swaps it (see reroute).
        self.routing = routing_for(config)
        self._outbox_use = _OutboxUse(self.routing)
        self._unrouted: dict[str, float] = {}
        self.config = config
        self._reactor = reactor
        self.write_limits = WriteLimits(reactor, config.max_write_buffer, config.stall_timeout, fast_path)
        # The TLS files in force (station context, client TLS per wss:// upstream), asked
        # at each new connection: a reload swaps them (see TLSFiles). Read by the command
        # line already (see tap.Options); read here for other callers.
        self.tls = tls if tls is not None else TLSFiles(read_tls_files(config, reactor.seconds()))
        # Shared with whoever counts the open links (the notifier: see StationSessions).
        self.registry = sessions if sessions is not None else StationSessions()
        self.sessions: dict[str, StationSession] = self.registry.current
        self._all_sessions: set[StationSession] = self.registry.every
        self.migration = RouteMigration(reactor, self.sessions, self.routing)
        self.limits = StationLimits(
            reactor,
            config.max_stations,
            config.max_handshakes,
            config.max_handshakes_per_address,
            config.trusted_proxies,
            max_frames_per_second=config.max_frames_per_second,
            frame_burst=config.frame_burst,
            max_connects_per_minute=config.max_connects_per_minute,
        )
        self.factory = StationFactory(
            self, reactor, self._websocket_options, self.limits, self.tls.check_client_id, fast_path
        )
        # Whether stations are accepted: from listening until shutdown begins (/health).
        self.accepting = False
        self._listen_error: str | None = None
        self.listening: Deferred = Deferred()
        # Cluster mode's hook (ocppproxy.cluster.ClusterService): told when a station
        # connects and when a session ends; None on a single instance.
        self.ownership = ownership
        factory = self.factory
        if config.station_tls is not None:
            factory = wrap_station_factory(self.factory, self.tls.station_context, fast_path)
        endpoint = ListenEndpoint(reactor, config.listen, self._listening, self._listen_failed)
        listener = StreamServerEndpointService(endpoint, factory)
        listener.setName("listener")
        listener.setServiceParent(self)
        if outbox is not None:
            self.use_outbox(outbox)

    def use_outbox(self, outbox: Outbox) -> None:
        """Send to the mirrors through C{outbox}, and drain the backlogs of stations that are away."""
        self.outbox = outbox
        self.drains = Drains(
            outbox, self.config, self._reactor, self.sessions.__contains__, lambda: self.routing.upstreams,
            self._drain_link,
        )
        if self.running:
            self.drains.start()

    def _drain_link(self, station_id, name, upstream, subprotocol, headers, owner, policy) -> UpstreamLink:
        """A link of a drain (L{ocppproxy.relay.outbox_drain}) for a station that is away."""
        return UpstreamLink(
            name,
            upstream.address_for(station_id),
            station_id,
            owner,
            self._reactor,
            policy,
            self.config.buffer_max_messages,
            [subprotocol],
            headers,
            None,
            tls=partial(self.tls.upstream, name),
            websocket_options=self._websocket_options,
            write_limits=self.write_limits,
            fast_path=self._fast_path,
        )

    def privilegedStartService(self) -> None:
        """
        Nothing yet: the listener binds in L{startService}, as the proxy always did, once the
        services started before it (notifier, status page) run.
        """
        Service.privilegedStartService(self)

    def startService(self) -> None:
        """Start the listener; a listen address that cannot be used stops start-up (exit status 1)."""
        super().startService()
        if self._listen_error is not None:
            # Most endpoints listen synchronously: stop start-up with that one line.
            raise SystemExit(1)
        if self.drains is not None:
            self.drains.start()

    def _listening(self, port) -> None:
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
        primary link. Raises L{ConnectionDeny}: 503 when C{limits.max_stations} are
        connected and this is not one of them reconnecting, 404 when no route admits it.
        """
        if station_id not in self.sessions and not self.limits.admit_station(station_id, len(self.sessions)):
            raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, "too many stations connected")
        route = self.routing.route(station_id)
        if route is None:
            raise self._no_route(station_id, getattr(protocol.transport.getPeer(), "host", "unknown"))
        offers = offers or [self.config.default_subprotocol]
        previous = self.sessions.get(station_id)
        drain_gone = self.drains.stop_for(station_id) if self.drains is not None else None
        session = StationSession(
            station_id,
            protocol,
            self._reactor,
            self._session_ended,
            self.observer,
            self.write_limits,
            self.redactor,
            limits=self.limits,
        )
        # The central systems never see two connections of one station: the other links
        # start once the drain's are gone (not the primary's, which the station's handshake
        # waits for: a drain to an upstream that became the primary since may overlap it).
        session.after_drain = drain_gone
        self.sessions[station_id] = session
        self._all_sessions.add(session)
        if self.ownership is not None:
            self.ownership.station_connected(session)
        if previous is not None:
            self._log.info("station {station}: new connection replaces the previous one", station=station_id)
            previous.close(REPLACED, "replaced by a new connection of the same station")
        peer_host = getattr(protocol.transport.getPeer(), "host", "unknown")
        headers = StationHeaders(request, peer_host, station_id, self.config.trusted_proxies)
        useragent = request.headers.get("user-agent")

        def make_link(name: str, owner=None) -> UpstreamLink:
            # The upstream's settings in force now: a reload may have changed them.
            upstream = self.routing.upstreams[name]
            link = UpstreamLink(
                name,
                upstream.address_for(station_id),
                station_id,
                owner if owner is not None else session,
                self._reactor,
                self.config.reconnect,
                self.config.buffer_max_messages,
                list(offers),
                headers.for_upstream(name, upstream.auth),
                useragent,
                tls=partial(self.tls.upstream, name),
                websocket_options=self._websocket_options,
                recorder=session.recorder,
                write_limits=self.write_limits,
                fast_path=self._fast_path,
            )
            session.link_settings[name] = upstream.connection
            return link

        routing = self.routing
        session.routing = routing
        links = {name: make_link(name) for name in route.upstreams}
        session.attach(
            links, offers, self.config, self.transactions, make_link, route=route, upstreams=routing.rules
        )
        if self.outbox is not None:
            session.use_outbox(self.outbox, self._outbox_use.__getitem__, bool(request.headers.get("authorization")))
        return session

    def _no_route(self, station_id: str, peer_host: str) -> ConnectionDeny:
        """A station no route admits: HTTP 404, and one log line per address and minute at most."""
        now = self._reactor.seconds()
        last = self._unrouted.get(peer_host)
        if last is None or now - last >= NO_ROUTE_LOG_INTERVAL:
            if len(self._unrouted) >= NO_ROUTE_ADDRESSES:
                self._unrouted.clear()
            self._unrouted[peer_host] = now
            self._log.warn(
                "station {station} ({peer}) refused with HTTP 404: no route admits it (routes)",
                station=station_id,
                peer=peer_host,
            )
        return ConnectionDeny(ConnectionDeny.NOT_FOUND, "no route for this station")

    def reroute(self, routing: Routing) -> None:
        """
        A reload's routing: new stations take it at once; connected ones are moved to their
        new route (or re-linked to a changed upstream) at C{migration_rate} per second.
        """
        self.routing = routing
        self._outbox_use.follow(routing)
        self.migration.start(routing)

    @property
    def handshakes_refused(self) -> int:
        """How many station handshakes were answered with an HTTP error since start-up."""
        return self.factory.handshakes_refused

    def snapshot(self, with_stations: bool = True) -> ProxySnapshot:
        """
        The connected stations, their links and the proxy's counters now, as read-only plain
        data (for /, /stations); without C{with_stations}, only the counts (for /metrics).
        """
        return proxy_snapshot(self, with_stations)

    def connected_links(self, upstream: str) -> int:
        """How many stations have an open link to C{upstream} right now."""
        return self.registry.connected_links(upstream)

    def _session_ended(self, session: StationSession) -> None:
        self._all_sessions.discard(session)
        if self.sessions.get(session.station_id) is session:
            del self.sessions[session.station_id]
        if self.ownership is not None:
            self.ownership.station_ended(session)

    close_replaced = staticmethod(close_replaced)

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting, close every station with 1001; fires when all connections are
        closed, failing with the listener's failure to stop if it had one. May be called
        again (the service tree stops a proxy that already stopped on its own).
        """
        self.accepting = False
        self.migration.stop()
        Service.stopService(self)
        listener_stopped = stop_children(self)
        closes = [session.close(GOING_AWAY, "proxy shutting down") for session in list(self._all_sessions)]
        if self.drains is not None:
            closes.append(self.drains.stop())
        self._log.info("shutting down: closing {count} stations", count=len(closes))
        drained = DeferredList(closes)
        if self.state_file is not None:
            drained.addCallback(lambda _: self.state_file.flush())
        return DeferredList([listener_stopped, drained], consumeErrors=True).addCallback(first_failure)


class _OutboxUse(dict):
    """
    Upstream name -> whether it goes through the outbox as a mirror (its C{outbox} key, as
    the routing has it; a name the routing does not know: yes). A dict, so that a session
    asks it without a Python call on every frame; L{follow} updates it in place on a reload.
    """

    def __init__(self, routing: Routing) -> None:
        super().__init__()
        self.follow(routing)

    def follow(self, routing: Routing) -> None:
        """The routing of a reload: each upstream's C{outbox} key."""
        self.clear()
        self.update((name, upstream.outbox) for name, upstream in routing.upstreams.items())

    def __missing__(self, name: str) -> bool:
        return True
