"""
What the status endpoint says in cluster mode: /health degraded while Redis is away, the Redis metric,
the fleet of the whole cluster from its record in Redis, and the local view, marked, without it.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from prometheus_client import generate_latest
from twisted.internet import reactor
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from ocppproxy.cluster.fleet import ClusterFleetView, FleetReadError, parse_entry
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.notify.names import StationNames
from ocppproxy.relay.proxy import ProxyService
from ocppproxy.status.activity import StationActivity
from ocppproxy.status.fleet import StationQuery, fleet_listing
from ocppproxy.status.health import HealthResource
from ocppproxy.status.metrics import ProxyCollector, metrics_registry
from ocppproxy.status.service import StatusService
from ocppproxy.status.snapshot import metrics_snapshot

from .test_status import T0, no_notifier
from ..unit.test_status_fleet import Fleet, ids


def proxy(ownership) -> ProxyService:
    """A real proxy service, not started, accepting, with C{ownership} as its cluster hook."""
    service = ProxyService(config_from_mapping({"primary_url": "ws://127.0.0.1:9/ocpp/"}), Clock())
    service.accepting = True
    service.ownership = ownership
    return service


class ClusterHealthTests(SynchronousTestCase):
    def health(self, ownership) -> tuple[int, bytes]:
        request = DummyRequest([b""])
        request.write(HealthResource(proxy(ownership)).render_GET(request))
        return request.responseCode or 200, b"".join(request.written)

    def test_redis_up_is_ok(self):
        self.assertEqual(self.health(SimpleNamespace(redis_up=True)), (200, b"ok\n"))

    def test_redis_away_is_degraded_but_200(self):
        """Relaying goes on without Redis: a load balancer must keep sending stations."""
        self.assertEqual(
            self.health(SimpleNamespace(redis_up=False)),
            (200, b"ok, degraded: Redis unreachable, relaying with local state\n"),
        )

    def test_single_instance_unchanged(self):
        self.assertEqual(self.health(None), (200, b"ok\n"))


class ClusterMetricsTests(SynchronousTestCase):
    def text(self, ownership) -> str:
        activity = StationActivity(Clock())
        snapshot = lambda: metrics_snapshot(proxy(ownership).snapshot(with_stations=False), activity, {})
        return generate_latest(metrics_registry(ProxyCollector(reactor, snapshot))).decode()

    def test_redis_up_by_instance(self):
        """ocppproxy_cluster_redis_up carries the instance name, 1 or 0."""
        up = self.text(SimpleNamespace(instance="proxy-a", redis_up=True))
        self.assertIn('ocppproxy_cluster_redis_up{instance="proxy-a"} 1.0', up)
        down = self.text(SimpleNamespace(instance="proxy-a", redis_up=False))
        self.assertIn('ocppproxy_cluster_redis_up{instance="proxy-a"} 0.0', down)

    def test_no_cluster_metric_on_a_single_instance(self):
        self.assertNotIn("ocppproxy_cluster", self.text(None))


def cluster_fleet(holders=None, **seen: str) -> ClusterFleetView:
    """A view of the cluster's record: C{holders} station -> instance, C{seen} station -> "event time instance"."""
    return ClusterFleetView(dict(holders or {}), {station: parse_entry(entry) for station, entry in seen.items()})


class ClusterFleetListingTests(SynchronousTestCase):
    """The fleet of instance proxy-a, which holds CP_HERE, saw CP_MOVED (now on proxy-b) and CP_GONE leave."""

    def setUp(self):
        fleet = self.fleet = Fleet()
        fleet.proxy.ownership = SimpleNamespace(instance="proxy-a", redis_up=True)
        fleet.connect("CP_HERE", "Faulted")
        fleet.connect("CP_MOVED")
        fleet.connect("CP_GONE", "Charging")
        fleet.clock.advance(10)
        fleet.leave("CP_MOVED")
        fleet.leave("CP_GONE")

    def listing(self, view: ClusterFleetView | None, **query) -> dict:
        fleet = self.fleet
        names = StationNames({"CP_NAMED": "Dépôt"})
        return fleet_listing(
            fleet.proxy.snapshot(), fleet.activity, names, StationQuery(**query), fleet.clock.seconds(), view
        )

    def test_station_moved_to_another_instance_is_connected_elsewhere(self):
        """CP_MOVED left here and is held by proxy-b: connected there, since it connected there, not offline."""
        view = cluster_fleet({"CP_HERE": "proxy-a", "CP_MOVED": "proxy-b"}, CP_MOVED=f"connected {T0 + 9} proxy-b")
        listing = self.listing(view)
        moved = next(station for station in listing["stations"] if station["id"] == "CP_MOVED")
        self.assertEqual((moved["state"], moved["instance"]), ("connected", "proxy-b"))
        self.assertEqual((moved["connected_since"], moved["left"]), ("2027-01-15T08:00:09.000Z", None))
        self.assertEqual(ids(self.listing(view, state="offline")), ["CP_GONE", "CP_NAMED"])
        self.assertEqual(listing["counts"], {"connected": 2, "offline": 2, "faulted": 1, "charging": 0})
        self.assertEqual(listing["cluster"], {"view": "cluster", "connected": {"proxy-a": 1, "proxy-b": 1}})
        self.assertEqual(ids(self.listing(view, state="connected")), ["CP_HERE", "CP_MOVED"])

    def test_station_that_left_another_instance_is_offline_with_its_time(self):
        """CP_B left proxy-b and nobody holds it: offline, with the time it left proxy-b, first as the last to go."""
        view = cluster_fleet({"CP_HERE": "proxy-a"}, CP_B=f"left {T0 + 5} proxy-b")
        self.fleet.clock.advance(60)
        offline = self.listing(view, state="offline")["stations"]
        self.assertEqual([station["id"] for station in offline], ["CP_GONE", "CP_MOVED", "CP_B", "CP_NAMED"])
        b = offline[2]
        self.assertEqual((b["state"], b["left"], b["instance"]), ("offline", "2027-01-15T08:00:05.000Z", "proxy-b"))
        self.assertEqual(offline[0]["instance"], "proxy-a")
        self.assertEqual(offline[3]["instance"], None)

    def test_a_later_departure_elsewhere_wins_over_the_local_memory(self):
        """CP_GONE left here at T0+10, then connected to and left proxy-b at T0+50: offline since T0+50, from proxy-b."""
        view = cluster_fleet({}, CP_GONE=f"left {T0 + 50} proxy-b", CP_MOVED=f"left {T0 + 10} proxy-a")
        gone, moved = self.listing(view, state="offline")["stations"][:2]
        self.assertEqual(
            (gone["id"], gone["left"], gone["instance"]), ("CP_GONE", "2027-01-15T08:00:50.000Z", "proxy-b")
        )
        self.assertEqual(gone["connectors"], {})  # what proxy-a remembers is older than proxy-b's connection
        self.assertEqual((moved["id"], moved["instance"]), ("CP_MOVED", "proxy-a"))

    def test_instance_gone_without_a_word(self):
        """The record says connected on proxy-c, but nobody holds CP_C: offline, when it left unknown."""
        station = self.listing(cluster_fleet({}, CP_C=f"connected {T0} proxy-c"), q="CP_C")["stations"][0]
        self.assertEqual((station["state"], station["left"], station["instance"]), ("offline", None, "proxy-c"))

    def test_a_station_connected_here_is_here_whatever_the_record_says(self):
        """A claim of proxy-b not yet seen here (the race of a move) never lists CP_HERE twice."""
        listing = self.listing(cluster_fleet({"CP_HERE": "proxy-b"}, CP_HERE=f"left {T0 + 99} proxy-b"))
        self.assertEqual(ids(listing).count("CP_HERE"), 1)
        self.assertEqual(listing["counts"]["connected"], 1)

    def test_without_the_record_the_listing_is_as_on_a_single_instance(self):
        """The local view: no instance per station, CP_MOVED offline as this instance saw it."""
        listing = self.listing(None)
        self.assertNotIn("cluster", listing)
        self.assertNotIn("instance", listing["stations"][0])
        self.assertEqual(ids(self.listing(None, state="offline")), ["CP_GONE", "CP_MOVED", "CP_NAMED"])


class FleetRecordHookTests(SynchronousTestCase):
    def test_the_record_hears_first_arrivals_and_last_departures(self):
        """
        The activity tells the cluster's record when a station is first connected here and
        when its last connection here ends: a second connection of it (replacing the first)
        is no departure.
        """
        told: list[tuple[str, str]] = []
        activity = StationActivity(Clock())
        activity.fleet_record = SimpleNamespace(
            station_connected=lambda station: told.append(("connected", station)),
            station_left=lambda station: told.append(("left", station)),
        )
        activity.station_connected("CP_1", "peer")
        activity.station_connected("CP_1", "peer")
        activity.station_disconnected("CP_1", 4000, "replaced")
        self.assertEqual(told, [("connected", "CP_1")])
        activity.station_disconnected("CP_1", 1000, None)
        self.assertEqual(told, [("connected", "CP_1"), ("left", "CP_1")])


class FakeClusterFleet:
    """The record's read: answers with C{view}, or fails with C{reason}."""

    def __init__(self, view: ClusterFleetView | None = None, reason: str = "Redis unreachable") -> None:
        self.view, self.reason = view, reason

    def read(self, timeout: float):
        return succeed(self.view) if self.view is not None else fail(FleetReadError(self.reason))


class ClusterStatusServiceTests(SynchronousTestCase):
    def service(self, record) -> StatusService:
        fleet = Fleet()
        fleet.proxy.ownership = SimpleNamespace(instance="proxy-a", redis_up=record is not None)
        fleet.connect("CP_HERE")
        status = StatusService(
            "tcp:0", fleet.clock, fleet.proxy, fleet.activity, no_notifier(), cluster_fleet=record
        )
        return status

    def get(self, status: StatusService, path: bytes) -> tuple[int, bytes]:
        request = DummyRequest([path])
        resource = status.site.resource.getChildWithDefault(path, request) if path else status.site.resource
        answer = resource.render(request)
        self.assertEqual(answer, NOT_DONE_YET)
        self.assertEqual(request.finished, 1)
        return request.responseCode or 200, b"".join(request.written)

    def test_stations_is_the_cluster_view(self):
        """/stations read the record: stations of every instance, each with its instance, counted by instance."""
        status = self.service(FakeClusterFleet(cluster_fleet({"CP_B": "proxy-b"})))
        code, body = self.get(status, b"stations")
        document = json.loads(body)
        self.assertEqual(code, 200)
        self.assertEqual(document["cluster"], {"view": "cluster", "connected": {"proxy-a": 1, "proxy-b": 1}})
        self.assertEqual(
            [(s["id"], s["instance"]) for s in document["stations"]], [("CP_B", "proxy-b"), ("CP_HERE", "proxy-a")]
        )

    def test_redis_unreachable_is_the_local_view_and_says_so(self):
        """/stations and the page answer with this instance's fleet, marked local, with the reason."""
        status = self.service(FakeClusterFleet(reason="Redis unreachable"))
        _, body = self.get(status, b"stations")
        self.assertEqual(
            json.loads(body)["cluster"], {"view": "local", "reason": "Redis unreachable", "connected": {"proxy-a": 1}}
        )
        code, page = self.get(status, b"")
        self.assertEqual(code, 200)
        self.assertIn(b'"view":"local","reason":"Redis unreachable"', page)
        self.assertIn(b'id="scope"', page)

    def test_a_single_instance_page_has_no_cluster_line(self):
        """Without a cluster the page and /stations are as they always were: answered at once, no cluster line."""
        fleet = Fleet()
        status = StatusService("tcp:0", fleet.clock, fleet.proxy, fleet.activity, no_notifier())
        request = DummyRequest([b""])
        page = status.site.resource.render(request)
        self.assertIn(b'id="meta"', page)
        self.assertNotIn(b'id="scope"', page)
        self.assertNotIn("cluster", status.stations())

    def test_a_failing_listing_is_a_500(self):
        """Whatever goes wrong after the read, the request is answered (500) and the error logged."""
        status = self.service(FakeClusterFleet(cluster_fleet()))
        status.proxy.snapshot = lambda with_stations=True: 1 / 0
        code, body = self.get(status, b"stations")
        self.assertEqual((code, body), (500, b"internal error, see the daemon's log\n"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
