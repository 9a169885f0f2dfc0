"""
The status service: C{/}, C{/stations}, C{/alerts}, C{/metrics} and C{/health} over HTTP with C{twisted.web},
in the daemon's process, on the C{status.listen} endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Protocol

from prometheus_client.twisted import MetricsResource
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.web.resource import NoResource, Resource
from twisted.web.server import NOT_DONE_YET, Site

from .tokens import TokenGate
from ..cluster.fleet import ClusterFleetView
from ..logs import proxy_logger
from ..notify.delivery import DeliveryQueue
from ..notify.names import StationNames
from ..periodic import Periodic
from ..relay.listen import ReportedListener
from ..relay.service_tree import ServiceTree
from .activity import StationActivity
from .alerts import RecentAlerts, alerts_document
from .fleet import QueryError, StationQuery, fleet_listing, parse_query
from .guard import GuardedRoot
from .health import HealthResource
from .metrics import ProxyCollector, metrics_registry
from .page import render_page
from .snapshot import metrics_snapshot, nearest_certificate

CLUSTER_READ_TIMEOUT = 1.0
"""Seconds a page or /stations waits for the cluster's record in Redis before answering with the local view."""
FORGET_EVERY = 60.0
"""Seconds between two sweeps of the stations gone too long (off the requests: reading the page changes nothing)."""

_log = proxy_logger(__name__)


class _StatusSite(Site):
    """A Site that writes no access log line per request (Prometheus scrapes often)."""

    noisy = False

    def log(self, request) -> None:
        pass


def _no_cache(request, content_type: bytes) -> None:
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")


def _json(request, document: dict) -> bytes:
    _no_cache(request, b"application/json")
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def _answer_later(request, document: Deferred[dict], render: Callable[[dict], bytes]) -> int:
    """
    Answer C{request} with C{render(document)} once C{document} fires (NOT_DONE_YET); a
    client gone meanwhile gets nothing, a failure a 500 and one log line.
    """
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def answer(ready: dict) -> None:
        if not gone:
            request.write(render(ready))
            request.finish()

    def failed(failure) -> None:
        _log.failure("status: cannot answer {uri}", failure, uri=request.uri)
        if not gone:
            request.setResponseCode(500)
            _no_cache(request, b"text/plain; charset=utf-8")
            request.write(b"internal error, see the daemon's log\n")
            request.finish()

    document.addCallback(answer).addErrback(failed)
    return NOT_DONE_YET


def _bad_query(request, error: QueryError, as_json: bool) -> bytes:
    """A 400 answer naming the parameter: JSON for /stations, plain text for the page."""
    request.setResponseCode(400)
    if as_json:
        return _json(request, {"error": str(error)})
    _no_cache(request, b"text/plain; charset=utf-8")
    return f"{error}\n".encode()


class StationsResource(Resource):
    """C{/stations}: the fleet as JSON, searched, filtered and paginated by the query parameters."""

    isLeaf = True

    def __init__(self, status: StatusService) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request) -> bytes | int:
        try:
            query = parse_query(request.args)
        except QueryError as error:
            return _bad_query(request, error, as_json=True)
        if self._status.cluster_fleet is None:
            return _json(request, self._status.stations(query))
        return _answer_later(request, self._status.read_stations(query), lambda document: _json(request, document))


class AlertsResource(Resource):
    """C{/alerts}: the last alerts sent and how many went out in the last hour, as JSON."""

    isLeaf = True

    def __init__(self, status: StatusService) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request) -> bytes:
        return _json(request, self._status.alerts_sent())


class StatusRoot(Resource):
    """C{/}: the HTML page; C{/stations}, C{/alerts}, C{/metrics} and C{/health} are its children."""

    def __init__(self, status: StatusService, metrics: Resource) -> None:
        super().__init__()
        self._status = status
        self.putChild(b"stations", StationsResource(status))
        self.putChild(b"alerts", AlertsResource(status))
        self.putChild(b"metrics", metrics)
        self.putChild(b"health", HealthResource(status.proxy))

    def getChild(self, path: bytes, request):
        if path == b"":
            return self
        return NoResource()

    def render_GET(self, request) -> bytes | int:
        try:
            query = parse_query(request.args)
        except QueryError as error:
            return _bad_query(request, error, as_json=False)
        view = StationQuery(query.q, query.state)

        def page(stations: dict) -> bytes:
            _no_cache(request, b"text/html; charset=utf-8")
            return render_page(stations, self._status.alerts_sent(), query.q, query.state)

        if self._status.cluster_fleet is None:
            return page(self._status.stations(view))
        return _answer_later(request, self._status.read_stations(view), page)


class ClusterFleetReader(Protocol):
    """The cluster's fleet record as the page reads it (L{ocppproxy.cluster.fleet.ClusterFleet})."""

    def read(self, timeout: float) -> Deferred[ClusterFleetView]:
        """The cluster's fleet now; fails when Redis is away or slower than C{timeout} seconds."""


class NotifierState(Protocol):
    """What the page shows of the notifier, read at each request (a reload replaces both)."""

    names: StationNames
    queues: Mapping[str, DeliveryQueue]


class StatusService(ServiceTree):
    """
    Serves the status on C{listen} (a Twisted server endpoint string) while running: its
    child C{listener} is a L{StreamServerEndpointService}, as the proxy's is.

    C{listening} fires with the port once listening. A port that cannot be bound is
    logged as an error (so is an endpoint string that does not parse) and the daemon
    relays on without a status page. L{stopService} closes the port; it fires when it is
    closed. C{notifier} gives the station names and the alert queues; C{alerts} is what
    the notifier reports its alerts to (see L{RecentAlerts}); without it the page lists
    none. Reading the page changes nothing: the stations gone too long are forgotten
    every L{FORGET_EVERY} seconds by the child C{forget}.

    With C{token_gate} (C{status.require_token}), all but C{/health} need a read token
    (see L{ocppproxy.status.guard}).

    In cluster mode, C{cluster_fleet} is the cluster's fleet record
    (L{ocppproxy.cluster.fleet.ClusterFleet}): C{/} and C{/stations} then read it (at
    most L{CLUSTER_READ_TIMEOUT} seconds) and show the whole cluster's fleet, or this
    instance's, marked as the local view, when Redis does not answer.
    """

    _log = proxy_logger()

    def __init__(
        self,
        listen: str,
        reactor,
        proxy,
        activity: StationActivity,
        notifier: NotifierState,
        traffic_log=None,
        alerts: RecentAlerts | None = None,
        cluster_fleet: ClusterFleetReader | None = None,
        token_gate: TokenGate | None = None,
    ) -> None:
        super().__init__()
        self.listen = listen
        self.clock = reactor
        self.proxy = proxy
        self.activity = activity
        self._notifier = notifier
        self._traffic_log = traffic_log
        self.alert_log = alerts if alerts is not None else RecentAlerts(reactor)
        self.registry = metrics_registry(ProxyCollector(reactor, self.metrics_snapshot))
        root: Resource = StatusRoot(self, MetricsResource(self.registry))
        if token_gate is not None:
            # status.require_token: a read token (or the login form's cookie) for all but /health.
            root = GuardedRoot(root, token_gate, reactor)
        self.site = _StatusSite(root)
        self.cluster_fleet = cluster_fleet
        listener = ReportedListener(reactor, listen, self.site, "status page", "status", "a status page")
        listener.setName("listener")
        listener.setServiceParent(self)
        self.listening: Deferred = listener.listening
        forget = Periodic(FORGET_EVERY, self.forget_departed, reactor)
        forget.setName("forget")
        forget.setServiceParent(self)

    @property
    def names(self) -> StationNames:
        """The station names in force (the notifier's: a reload may replace them)."""
        return self._notifier.names

    def forget_departed(self) -> None:
        """Forget the stations gone too long, except those named (see L{StationActivity.forget_departed})."""
        self.activity.forget_departed(self.names.station_ids().__contains__)

    def stations(
        self,
        query: StationQuery | None = None,
        cluster: ClusterFleetView | None = None,
        local_because: str = "the cluster's record was not read",
    ) -> dict:
        """
        The /stations document for C{query} (default: the first page of all); changes
        nothing. In cluster mode it names this instance, and is the
        cluster's view with C{cluster} (the record read from Redis); without it, the local
        view, C{cluster.reason} saying why (C{local_because}).
        """
        names = self.names
        snapshot = self.proxy.snapshot()
        if snapshot.instance is None:
            cluster = None
        document = fleet_listing(snapshot, self.activity, names, query or StationQuery(), self.clock.seconds(), cluster)
        certificate = nearest_certificate(snapshot.certificates, self.clock.seconds())
        if certificate is not None:
            document["certificate"] = certificate
        if snapshot.instance is not None:
            document["instance"] = snapshot.instance
            if cluster is None:
                connected = {snapshot.instance: snapshot.stations_connected}
                document["cluster"] = {"view": "local", "reason": local_because, "connected": connected}
        return document

    def read_stations(self, query: StationQuery | None = None) -> Deferred[dict]:
        """
        The /stations document as L{stations}, after reading the cluster's record when there
        is one (a failure to read it gives the local view, saying why); never fails for Redis.
        """
        if self.cluster_fleet is None:
            return succeed(self.stations(query))
        reading = self.cluster_fleet.read(CLUSTER_READ_TIMEOUT)
        return reading.addCallbacks(
            lambda view: self.stations(query, view),
            lambda failure: self.stations(query, local_because=failure.getErrorMessage()),
        )

    def alerts_sent(self) -> dict:
        """The /alerts document."""
        return alerts_document(self.alert_log, self.names, self.clock.seconds())

    def metrics_snapshot(self):
        """The numbers /metrics shows, read now (on the reactor thread)."""
        return metrics_snapshot(
            self.proxy.snapshot(with_stations=False), self.activity, self._notifier.queues, self._traffic_log
        )

    def privilegedStartService(self) -> None:
        """Nothing yet: the page listens in L{startService}, as the proxy does."""
        Service.privilegedStartService(self)

