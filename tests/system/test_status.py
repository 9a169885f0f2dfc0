"""Status over HTTP: activity tracking, the station list, the page, the metrics, served on 127.0.0.1."""

from __future__ import annotations

import json
import re
from collections import deque
from types import SimpleNamespace

import treq
from prometheus_client import generate_latest
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.relay.routing_state import routing_for
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.redact import Redactor
from ocppproxy.core.routes import Route
from ocppproxy.notify.alert import Alert
from ocppproxy.notify.names import StationNames
from ocppproxy.relay.snapshot import LinkSnapshot, proxy_snapshot
from ocppproxy.status.activity import StationActivity
from ocppproxy.status.fleet import StationQuery, fleet_listing
from ocppproxy.status.metrics import ProxyCollector, metrics_registry
from ocppproxy.status.service import StatusService
from ocppproxy.status.snapshot import metrics_snapshot
from ocppproxy.wire.backpressure import WriteLimits
from ocppproxy.wire.limits import StationLimits
from ocppproxy.wire.tls_files import TLSFiles, TLSMaterial

T0 = 1_800_000_000.0


def no_notifier(names: StationNames | None = None) -> SimpleNamespace:
    """What the status service reads of the notifier: the station names, and no alert queues."""
    return SimpleNamespace(names=names if names is not None else StationNames({}), queues={})


def frame(text: str):
    return parse_frame(text)


class FakeLink:
    def __init__(self, connected=True, gave_up=False, failed_attempts=0, queued=0, stalled=False) -> None:
        self.connected = connected
        self.stalled = stalled
        self.gave_up = gave_up
        self.failed_attempts = failed_attempts
        self.queue = deque([b"[]"] * queued)


class FakeProtocol:
    peer = "tcp4:127.0.0.1:50000"


LEGACY_ROUTE = Route("primary", ("secondary",))


class FakeSession:
    def __init__(
        self, links, connected_since=T0, subprotocol="ocpp1.6", stalled=False, throttled=False, route=LEGACY_ROUTE
    ) -> None:
        self.links = links
        self.relay = SimpleNamespace(route=route)
        self.stalled = stalled
        self.throttled = throttled
        self.connected_since = connected_since
        self.subprotocol = subprotocol
        self.protocol = FakeProtocol()


class FakeProxy:
    """A ProxyService's config, sessions and counters: its snapshot is taken as the real proxy's is."""

    def __init__(self, sessions) -> None:
        self.config = config_from_mapping({"primary_url": "ws://127.0.0.1:1/", "secondary_url": "ws://127.0.0.1:2/"})
        self.routing = routing_for(self.config)
        self.sessions = sessions
        self.handshakes_refused = 3
        self.write_limits = WriteLimits(Clock())
        self.write_limits.count_stall("secondary")
        self.write_limits.count_stall("secondary")
        self.limits = StationLimits(Clock(), max_handshakes=1, max_handshakes_per_address=1)
        self.accepting = True
        self.ownership = None  # a single instance
        self.tls = TLSFiles(TLSMaterial())

    def snapshot(self, with_stations=True):
        return proxy_snapshot(self, with_stations)


def busy_proxy() -> FakeProxy:
    return FakeProxy(
        {
            "CP_1": FakeSession(
                {"primary": FakeLink(), "secondary": FakeLink(False, failed_attempts=3, queued=2)}, throttled=True
            ),
            "CP_2": FakeSession(
                {"primary": FakeLink(False, gave_up=True), "secondary": FakeLink(stalled=True)}, stalled=True
            ),
            "CP_3": FakeSession({"primary": FakeLink(False)}, connected_since=None),  # still in its handshake
        }
    )


class ActivityTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(T0)
        self.routes = {"CP_1": LEGACY_ROUTE}
        self.activity = StationActivity(self.clock, route_of=self.routes.get)
        self.activity.station_connected("CP_1", "tcp4:127.0.0.1:1")

    def test_status_notification_per_connector(self):
        """The last StatusNotification of each connector is kept, OCPP 1.6 and 2.0.1 alike."""
        self.activity.station_frame(
            "CP_1", frame('[2,"1","StatusNotification",{"connectorId":1,"status":"Charging","errorCode":"NoError"}]')
        )
        self.clock.advance(5)
        self.activity.station_frame(
            "CP_1",
            frame(
                '[2,"2","StatusNotification",{"connectorId":1,"status":"Faulted","errorCode":"GroundFailure",'
                '"timestamp":"2027-01-15T08:00:00Z"}]'
            ),
        )
        self.activity.station_frame(
            "CP_1", frame('[2,"3","StatusNotification",{"evseId":2,"connectorId":1,"connectorStatus":"Occupied"}]')
        )
        record = self.activity.stations["CP_1"]
        self.assertEqual(sorted(record.connectors), ["1", "2/1"])
        faulted = record.connectors["1"]
        self.assertEqual(
            (faulted.status, faulted.error_code, faulted.timestamp),
            ("Faulted", "GroundFailure", "2027-01-15T08:00:00Z"),
        )
        self.assertEqual(record.connectors["2/1"].status, "Occupied")
        self.assertEqual(record.last_message, T0 + 5)

    def test_redact_keys_masked_in_statuses(self):
        """With a key under redact (here errorCode), the status kept for the page says *** for it."""
        activity = StationActivity(self.clock, Redactor(["errorCode"]))
        activity.station_connected("CP_1", "tcp4:127.0.0.1:1")
        activity.station_frame(
            "CP_1", frame('[2,"1","StatusNotification",{"connectorId":1,"status":"Faulted","errorCode":"Secret"}]')
        )
        connector = activity.stations["CP_1"].connectors["1"]
        self.assertEqual((connector.status, connector.error_code), ("Faulted", "***"))

    def test_odd_status_notifications_are_ignored(self):
        """A StatusNotification without a usable status, or whose body is no object, leaves no trace."""
        for body in ("[1]", '{"connectorId":1}', '{"connectorId":1,"status":7}', '{"evseId":1,"connectorStatus":null}'):
            self.activity.station_frame("CP_1", frame(f'[2,"1","StatusNotification",{body}]'))
        self.assertEqual(self.activity.stations["CP_1"].connectors, {})

    def test_frames_of_unknown_stations_are_counted_only(self):
        """A frame from a station the tracker never saw connect is counted, and nothing else is kept."""
        self.activity.station_frame("CP_X", frame('[2,"1","Heartbeat",{}]'))
        self.assertNotIn("CP_X", self.activity.stations)
        self.assertEqual(self.activity.frames, {("from_station", 2, ""): 1})

    def test_primary_answer_latency(self):
        """The time from a station CALL to the primary's answer is observed; the secondary's answer is not."""
        self.activity.station_frame("CP_1", frame('[2,"h1","Heartbeat",{}]'))
        self.clock.advance(0.03)
        self.activity.upstream_frame("CP_1", "secondary", frame('[3,"h1",{}]'))
        self.assertEqual(sum(self.activity.latency.counts), 0)
        self.activity.upstream_frame("CP_1", "primary", frame('[3,"h1",{}]'))
        self.activity.upstream_frame("CP_1", "primary", frame('[3,"h1",{}]'))  # a second answer: not measured
        self.assertEqual(sum(self.activity.latency.counts), 1)
        self.assertAlmostEqual(self.activity.latency.sum, 0.03)
        self.assertEqual(self.activity.latency.counts[3], 1)  # le=0.05

    def test_latency_follows_the_stations_own_primary(self):
        """
        Each station's own primary is timed, whatever its name: csms-b for CP_B, where
        csms-a is a mirror; after a change of route, the new primary.
        """
        self.routes["CP_B"] = Route("csms-b", ("csms-a",))
        self.activity.station_connected("CP_B", "tcp4:127.0.0.1:2")
        self.activity.station_frame("CP_B", frame('[2,"b1","Heartbeat",{}]'))
        self.clock.advance(0.2)
        self.activity.upstream_frame("CP_B", "csms-a", frame('[3,"b1",{}]'))
        self.assertEqual(sum(self.activity.latency.counts), 0)
        self.activity.upstream_frame("CP_B", "csms-b", frame('[3,"b1",{}]'))
        self.assertEqual(sum(self.activity.latency.counts), 1)
        self.assertAlmostEqual(self.activity.latency.sum, 0.2)
        self.routes["CP_B"] = Route("csms-a", ("csms-b",))
        self.activity.station_frame("CP_B", frame('[2,"b2","Heartbeat",{}]'))
        self.activity.upstream_frame("CP_B", "csms-b", frame('[3,"b2",{}]'))
        self.activity.upstream_frame("CP_B", "csms-a", frame('[3,"b2",{}]'))
        self.assertEqual(sum(self.activity.latency.counts), 2)

    def test_counters(self):
        """Frames by direction, type and upstream; dropped frames and connection attempts by upstream."""
        self.activity.station_frame("CP_1", frame('[2,"h1","Heartbeat",{}]'))
        self.activity.upstream_frame("CP_1", "primary", frame('[3,"h1",{}]'))
        self.activity.upstream_frame("CP_1", "primary", frame('[2,"c1","Reset",{}]'))
        self.activity.frame_dropped("CP_1", "secondary")
        self.activity.upstream_connected("CP_1", "primary", "ws://x/")
        self.activity.upstream_attempt_failed("CP_1", "secondary", "ws://y/", "refused")
        self.assertEqual(
            self.activity.frames,
            {("from_station", 2, ""): 1, ("from_upstream", 3, "primary"): 1, ("from_upstream", 2, "primary"): 1},
        )
        self.assertEqual(self.activity.dropped, {("secondary", "mirror"): 1})
        self.assertEqual(
            self.activity.connects, {("primary", "primary", "ok"): 1, ("secondary", "mirror", "failed"): 1}
        )

    def test_counters_name_each_stations_role(self):
        """An upstream primary for one station and mirror for another is counted under each role."""
        self.routes["CP_B"] = Route("secondary", ("primary",))
        self.activity.upstream_connected("CP_1", "primary", "ws://x/")
        self.activity.upstream_connected("CP_B", "primary", "ws://x/")
        self.activity.frame_dropped("CP_B", "primary")
        self.activity.frame_dropped("CP_GONE", "primary")  # no route known: not its primary
        self.assertEqual(self.activity.connects, {("primary", "primary", "ok"): 1, ("primary", "mirror", "ok"): 1})
        self.assertEqual(self.activity.dropped, {("primary", "mirror"): 2})

    def test_forgotten_when_the_last_connection_ends(self):
        """A station replaced by a new connection keeps its record until that one ends too."""
        self.activity.station_connected("CP_1", "tcp4:127.0.0.1:2")
        self.activity.station_disconnected("CP_1", 4000, "replaced")
        self.assertIn("CP_1", self.activity.stations)
        self.activity.station_disconnected("CP_1", 1000, None)
        self.assertEqual(self.activity.stations, {})


class SnapshotTests(SynchronousTestCase):
    def test_station_list(self):
        """Open stations only, by id, with name, link states, failed attempts, queues and connectors."""
        clock = Clock()
        activity = StationActivity(clock)
        activity.station_connected("CP_1", "")
        activity.station_frame(
            "CP_1", frame('[2,"1","StatusNotification",{"connectorId":0,"status":"Available","errorCode":"NoError"}]')
        )
        listing = fleet_listing(
            busy_proxy().snapshot(), activity, StationNames({"CP_1": "Gare, borne 1"}), StationQuery(), T0
        )
        stations = listing["stations"]
        self.assertEqual([station["id"] for station in stations], ["CP_1", "CP_2"])
        first, second = stations
        self.assertEqual(first["name"], "Gare, borne 1")
        self.assertIsNone(second["name"])
        self.assertEqual(first["remote"], "tcp4:127.0.0.1:50000")
        self.assertEqual(first["subprotocol"], "ocpp1.6")
        self.assertEqual(first["connected_since"], "2027-01-15T08:00:00.000Z")
        self.assertEqual(
            first["upstreams"],
            {
                "primary": {"role": "primary", "state": "connected", "failed_attempts": 0, "queued": 0},
                "secondary": {"role": "mirror", "state": "reconnecting", "failed_attempts": 3, "queued": 2},
            },
        )
        self.assertEqual(second["upstreams"]["primary"]["state"], "given_up")
        self.assertEqual(first["connectors"]["0"]["status"], "Available")
        self.assertEqual(first["connectors"]["0"]["errorCode"], "NoError")
        self.assertEqual(second["connectors"], {})

    def test_proxy_snapshot_is_plain_data(self):
        """The proxy's snapshot: connected stations only, their links as states and counts, copies of the counters."""
        proxy = busy_proxy()
        snapshot = proxy.snapshot()
        self.assertEqual(sorted(snapshot.stations), ["CP_1", "CP_2"])  # CP_3 is still in its handshake
        station = snapshot.stations["CP_1"]
        self.assertEqual(
            (station.peer, station.subprotocol, station.connected_since), (FakeProtocol.peer, "ocpp1.6", T0)
        )
        self.assertEqual(station.links["secondary"], LinkSnapshot("reconnecting", 3, 2, False, "mirror"))
        self.assertEqual(snapshot.stations["CP_2"].links["primary"].state, "given_up")
        self.assertEqual(
            (snapshot.upstreams, snapshot.accepting, snapshot.stalls),
            (("primary", "secondary"), True, {"secondary": 2}),
        )
        with self.assertRaises(AttributeError):
            station.peer = "elsewhere"
        snapshot.stalls["secondary"] = 0
        self.assertEqual(proxy.write_limits.stalls["secondary"], 2)

    def test_names_followed_after_a_reload(self):
        """Given the notifier (as tap does), the list shows the names a reload put in place."""
        activity = StationActivity(Clock())
        activity.station_connected("CP_1", "")
        notifier = SimpleNamespace(names=StationNames({"CP_1": "Old name"}), queues={})
        service = StatusService("tcp:port=0", Clock(), busy_proxy(), activity, notifier)
        self.assertEqual(service.stations()["stations"][0]["name"], "Old name")
        notifier.names = StationNames({"CP_1": "New name"})
        self.assertEqual(service.stations()["stations"][0]["name"], "New name")

    def test_metrics_snapshot_counts_link_states(self):
        """Gauges come from the sessions at snapshot time; every state of every upstream is present."""
        counts = busy_proxy().snapshot(with_stations=False)
        self.assertEqual(counts.stations, {})  # /metrics needs only the counts
        snapshot = metrics_snapshot(counts, StationActivity(Clock()), {})
        self.assertEqual(snapshot.stations_connected, 2)
        links = {key: count for key, count in snapshot.links.items() if count}
        self.assertEqual(
            links,
            {
                ("primary", "primary", "connected"): 1,
                ("primary", "primary", "given_up"): 1,
                ("secondary", "mirror", "connected"): 1,
                ("secondary", "mirror", "reconnecting"): 1,
            },
        )
        self.assertEqual(len(snapshot.links), 2 * 2 * 3)  # every upstream, role and state
        # An upstream a reload added is counted (at zero) at once, before any station links to it.
        proxy = busy_proxy()
        proxy.routing = routing_for(
            config_from_mapping(
                {
                    "upstreams": {name: {"url": f"ws://127.0.0.1:{port}/"} for name, port in (("a", 1), ("c", 3))},
                    "routes": [{"stations": ["*"], "primary": "a", "mirrors": ["c"]}],
                }
            )
        )
        added = proxy.snapshot(with_stations=False).links
        self.assertEqual(added[("c", "mirror", "connected")], 0)
        self.assertEqual(
            snapshot.queued,
            {
                ("primary", "primary"): 0,
                ("primary", "mirror"): 0,
                ("secondary", "primary"): 0,
                ("secondary", "mirror"): 2,
            },
        )
        self.assertEqual(snapshot.stalled_links[("secondary", "mirror")], 1)
        self.assertEqual((sum(snapshot.stalled_links.values()), snapshot.stalled_stations), (1, 1))

    def test_roles_are_each_stations(self):
        """
        One upstream primary for one station and mirror for another: its links are counted
        under both roles, and each station's entry names the role it has there.
        """
        proxy = FakeProxy(
            {
                "CP_A": FakeSession({"primary": FakeLink(), "secondary": FakeLink()}),
                "CP_B": FakeSession(
                    {"secondary": FakeLink(), "primary": FakeLink(False)}, route=Route("secondary", ("primary",))
                ),
            }
        )
        snapshot = proxy.snapshot()
        links = {key: count for key, count in snapshot.links.items() if count}
        self.assertEqual(
            links,
            {
                ("primary", "primary", "connected"): 1,
                ("primary", "mirror", "reconnecting"): 1,
                ("secondary", "mirror", "connected"): 1,
                ("secondary", "primary", "connected"): 1,
            },
        )
        listing = fleet_listing(snapshot, StationActivity(Clock()), StationNames({}), StationQuery(), T0)
        roles = {
            entry["id"]: {name: link["role"] for name, link in entry["upstreams"].items()}
            for entry in listing["stations"]
        }
        self.assertEqual(
            roles,
            {
                "CP_A": {"primary": "primary", "secondary": "mirror"},
                "CP_B": {"secondary": "primary", "primary": "mirror"},
            },
        )
        self.assertEqual(
            listing["upstreams"]["primary"],
            {
                "connected": 1,
                "reconnecting": 1,
                "given_up": 0,
                "roles": {
                    "primary": {"connected": 1, "reconnecting": 0, "given_up": 0},
                    "mirror": {"connected": 0, "reconnecting": 1, "given_up": 0},
                },
            },
        )


class MetricsTests(SynchronousTestCase):
    def test_prometheus_text(self):
        """The private registry gives the Prometheus text of every family, with the frame type by name."""
        activity = StationActivity(Clock(), route_of={"CP_1": LEGACY_ROUTE}.get)
        activity.station_connected("CP_1", "")
        activity.station_frame("CP_1", frame('[2,"h1","Heartbeat",{}]'))
        activity.upstream_frame("CP_1", "primary", frame('[3,"h1",{}]'))
        activity.frame_dropped("CP_1", "secondary")
        proxy = busy_proxy()
        proxy.limits.begin_handshake("first", "tcp4:192.0.2.1:1", "192.0.2.1")
        proxy.limits.begin_handshake("again", "tcp4:192.0.2.1:2", "192.0.2.1")
        proxy.limits.begin_handshake("other", "tcp4:192.0.2.2:1", "192.0.2.2")
        registry = metrics_registry(ProxyCollector(reactor, lambda: metrics_snapshot(proxy.snapshot(), activity, {})))
        text = generate_latest(registry).decode()
        self.assertIn("ocppproxy_stations_connected 2.0", text)
        self.assertIn("ocppproxy_station_handshakes_refused_total 3.0", text)
        self.assertIn('ocppproxy_upstream_links{role="primary",state="given_up",upstream="primary"} 1.0', text)
        self.assertIn('ocppproxy_upstream_links{role="mirror",state="given_up",upstream="primary"} 0.0', text)
        self.assertIn('ocppproxy_frames_total{direction="from_station",type="CALL",upstream=""} 1.0', text)
        self.assertIn(
            'ocppproxy_frames_total{direction="from_upstream",type="CALLRESULT",upstream="primary"} 1.0', text
        )
        self.assertIn('ocppproxy_frames_dropped_total{role="mirror",upstream="secondary"} 1.0', text)
        self.assertIn('ocppproxy_upstream_stalled_links{role="mirror",upstream="secondary"} 1.0', text)
        self.assertIn('ocppproxy_upstream_queued_frames{role="mirror",upstream="secondary"} 2.0', text)
        self.assertIn("ocppproxy_stations_stalled 1.0", text)
        self.assertIn("ocppproxy_stations_throttled 1.0", text)
        self.assertIn('ocppproxy_write_stalls_total{connection="secondary"} 2.0', text)
        self.assertIn('ocppproxy_write_stalls_total{connection="station"} 0.0', text)
        self.assertIn(
            'ocppproxy_upstream_connect_attempts_total{outcome="failed",role="primary",upstream="primary"} 0.0', text
        )
        self.assertIn('ocppproxy_primary_answer_seconds_bucket{le="+Inf"} 1.0', text)
        self.assertIn("ocppproxy_primary_answer_seconds_count 1.0", text)
        self.assertIn('ocppproxy_connections_refused_total{limit="max_handshakes_per_address"} 1.0', text)
        self.assertIn('ocppproxy_connections_refused_total{limit="max_stations"} 0.0', text)
        self.assertIn('ocppproxy_connections_refused_total{limit="max_connects_per_minute"} 0.0', text)
        self.assertIn("ocppproxy_handshakes_shed_total 1.0", text)
        self.assertNotIn("python_gc", text)  # not the global registry


class StatusServiceTests(TestCase):
    """The real service on 127.0.0.1, read with treq."""

    timeout = 15

    async def start(self, proxy) -> str:
        activity = StationActivity(reactor)
        activity.station_connected("CP_1", "")
        activity.station_frame(
            "CP_1", frame('[2,"1","StatusNotification",{"connectorId":1,"status":"Charging","errorCode":"NoError"}]')
        )
        self.service = StatusService("tcp:port=0:interface=127.0.0.1", reactor, proxy, activity, no_notifier())
        self.service.startService()
        self.addCleanup(self.service.stopService)
        port = await self.service.listening
        return f"http://127.0.0.1:{port.getHost().port}"

    async def get(self, url: str):
        response = await treq.get(url, persistent=False)
        return response, await response.content()

    async def test_stations_json(self):
        base = await self.start(busy_proxy())
        response, body = await self.get(base + "/stations")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
        document = json.loads(body)
        self.assertEqual([station["id"] for station in document["stations"]], ["CP_1", "CP_2"])
        self.assertEqual(document["stations"][0]["connectors"]["1"]["status"], "Charging")

    async def test_metrics_from_the_thread_pool(self):
        """MetricsResource scrapes in a pool thread; the snapshot is still taken on the reactor thread."""
        base = await self.start(busy_proxy())
        response, body = await self.get(base + "/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        self.assertRegex(body.decode(), re.compile(r"^ocppproxy_stations_connected 2\.0$", re.MULTILINE))

    async def test_page_and_not_found(self):
        base = await self.start(busy_proxy())
        response, body = await self.get(base + "/")
        self.assertEqual(response.code, 200)
        self.assertIn(b"<title>ocppproxy: 2 connected, 0 offline</title>", body)
        response, _ = await self.get(base + "/nothing")
        self.assertEqual(response.code, 404)

    async def test_stations_query(self):
        """/stations answers a search, a filter and a page; a bad parameter is a 400 naming it."""
        base = await self.start(busy_proxy())
        response, body = await self.get(base + "/stations?q=cp_2&state=connected&limit=1")
        document = json.loads(body)
        self.assertEqual([station["id"] for station in document["stations"]], ["CP_2"])
        self.assertEqual((document["total"], document["counts"]["connected"]), (1, 2))
        response, body = await self.get(base + "/stations?state=gone")
        self.assertEqual(response.code, 400)
        self.assertIn("state: one of all,", json.loads(body)["error"])
        response, body = await self.get(base + "/?limit=x")
        self.assertEqual((response.code, body), (400, b"limit: a whole number from 1 to 1000, not 'x'\n"))

    async def test_alerts_json(self):
        """/alerts lists what the notifier reported, with the hour's count."""
        base = await self.start(busy_proxy())
        alert = Alert("con_status_faulted", "CP_1", "Faulted", "")
        self.service.alert_log.alert_sent(alert, ["email"])
        self.service.alert_log.alert_outcome(alert, "email", "sent")
        _, body = await self.get(base + "/alerts")
        document = json.loads(body)
        self.assertEqual(document["last_hour"], 1)
        self.assertEqual(document["alerts"][0]["channels"], {"email": "sent"})

    async def test_stop_closes_the_port(self):
        base = await self.start(FakeProxy({}))
        await self.service.stopService()
        from twisted.internet.error import ConnectionRefusedError

        with self.assertRaises(ConnectionRefusedError):
            await treq.get(base + "/stations", persistent=False)


class ListenProblemTests(TestCase):
    def test_bad_endpoint_is_logged_not_raised(self):
        """An endpoint string that does not parse costs the status page, not the daemon."""
        from twisted.logger import formatEvent, globalLogPublisher

        lines = []
        globalLogPublisher.addObserver(lines.append)
        self.addCleanup(globalLogPublisher.removeObserver, lines.append)
        service = StatusService("nonsense:port=1", reactor, FakeProxy({}), StationActivity(reactor), no_notifier())
        service.startService()
        self.assertTrue(service.listening.called)
        self.assertIsNone(self.successResultOf(service.stopService()))
        (line,) = [formatEvent(event) for event in lines if "status: cannot listen" in formatEvent(event)]
        self.assertIn("nonsense:port=1", line)
        self.assertIn("running without a status page", line)
