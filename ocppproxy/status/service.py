"""
The status service: C{/}, C{/stations}, C{/alerts}, C{/metrics} and C{/health} over HTTP with C{twisted.web},
in the daemon's process, on the C{status.listen} endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from prometheus_client.twisted import MetricsResource
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.python.failure import Failure
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Site

from ..logs import proxy_logger
from ..notify.delivery import DeliveryQueue
from ..notify.names import StationNames
from .activity import StationActivity
from .alerts import RecentAlerts, alerts_document
from .fleet import QueryError, StationQuery, fleet_listing, parse_query
from .health import HealthResource
from .metrics import ProxyCollector, metrics_registry
from .page import render_page
from .snapshot import metrics_snapshot


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

    def render_GET(self, request) -> bytes:
        try:
            query = parse_query(request.args)
        except QueryError as error:
            return _bad_query(request, error, as_json=True)
        return _json(request, self._status.stations(query))


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

    def render_GET(self, request) -> bytes:
        try:
            query = parse_query(request.args)
        except QueryError as error:
            return _bad_query(request, error, as_json=False)
        _no_cache(request, b"text/html; charset=utf-8")
        view = StationQuery(query.q, query.state)
        return render_page(self._status.stations(view), self._status.alerts_sent(), query.q, query.state)


def _current(value):
    """C{value}, or what it returns if it is a function: a reload may replace the notifier's names and queues."""
    return value() if callable(value) else value


class StatusService(Service):
    """
    Serves the status on C{listen} (a Twisted server endpoint string) while running.

    C{listening} fires with the port once listening. A port that cannot be bound is
    logged as an error (so is an endpoint string that does not parse) and the daemon
    relays on without a status page. L{stopService}
    closes the port; it fires when it is closed. C{alerts} is what the notifier reports
    its alerts to (see L{RecentAlerts}); without it the page lists none.
    """

    _log = proxy_logger()

    def __init__(
        self,
        listen: str,
        reactor,
        proxy,
        activity: StationActivity,
        names: StationNames | Callable[[], StationNames],
        alert_queues: Mapping[str, DeliveryQueue] | Callable[[], Mapping[str, DeliveryQueue]] | None = None,
        traffic_log=None,
        alerts: RecentAlerts | None = None,
    ) -> None:
        self.listen = listen
        self.clock = self._reactor = reactor
        self.proxy = proxy
        self.activity = activity
        self.names = names
        self._alert_queues = alert_queues or {}
        self._traffic_log = traffic_log
        self.alert_log = alerts if alerts is not None else RecentAlerts(reactor)
        self.registry = metrics_registry(ProxyCollector(reactor, self.metrics_snapshot))
        self.site = _StatusSite(StatusRoot(self, MetricsResource(self.registry)))
        self._port = None
        self.listening: Deferred = Deferred()

    def stations(self, query: StationQuery | None = None) -> dict:
        """
        The /stations document for C{query} (default: the first page of all), with this
        instance's name in cluster mode; forgets stations gone too long first.
        """
        names = _current(self.names)
        self.activity.forget_departed(names.station_ids().__contains__)
        snapshot = self.proxy.snapshot()
        document = fleet_listing(snapshot, self.activity, names, query or StationQuery(), self.clock.seconds())
        if snapshot.instance is not None:
            document["instance"] = snapshot.instance
        return document

    def alerts_sent(self) -> dict:
        """The /alerts document."""
        return alerts_document(self.alert_log, _current(self.names), self.clock.seconds())

    def metrics_snapshot(self):
        """The numbers /metrics shows, read now (on the reactor thread)."""
        return metrics_snapshot(
            self.proxy.snapshot(with_stations=False), self.activity, _current(self._alert_queues), self._traffic_log
        )

    def startService(self) -> None:
        super().startService()
        try:
            endpoint = serverFromString(self._reactor, self.listen)
        except (ValueError, KeyError, TypeError) as error:
            self._listen_failed(Failure(error))
            return
        endpoint.listen(self.site).addCallbacks(self._listening, self._listen_failed)

    def _listening(self, port) -> None:
        self._port = port
        self._log.info("status page on {address}", address=port.getHost())
        self.listening.callback(port)

    def _listen_failed(self, failure) -> None:
        self._log.error(
            "status: cannot listen on {listen}: {reason}; running without a status page",
            listen=self.listen,
            reason=failure.getErrorMessage(),
        )
        self.listening.errback(failure)
        self.listening.addErrback(lambda _: None)

    def stopService(self) -> Deferred[None]:
        """Stop listening; fires when the port is closed."""
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        return maybeDeferred(port.stopListening).addCallback(lambda _: None)
