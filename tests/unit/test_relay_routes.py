"""
The proxy's use of routes (issue 24), through the real proxy between in-memory stations
and central systems (tests/harness.py): each station's route taken at its handshake,
HTTP 404 for a station on no route, links per upstream with its own URL, credentials and
station id, and a reload's changes reaching connected stations at migration_rate.
"""

from __future__ import annotations

import base64
import json

from twisted.trial.unittest import SynchronousTestCase

from ..harness import PRIMARY_PORT, SECONDARY_PORT, THIRD_PORT, RelayHarness

A = f"ws://127.0.0.1:{PRIMARY_PORT}/ocpp/"
B = f"ws://127.0.0.1:{SECONDARY_PORT}/ocpp/"
C = f"ws://127.0.0.1:{THIRD_PORT}/feed/"
BOOT = '[2,"b-1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
METER = '[2,"m-1","MeterValues",{"connectorId":1,"meterValue":[]}]'
STATUS = '[2,"s-1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]'


def upstreams(**changes):
    """Upstreams a (the harness's primary), b (its secondary) and c (its third), with C{changes} per name."""
    found = {"a": {"url": A}, "b": {"url": B}, "c": {"url": C}}
    for name, settings in changes.items():
        found[name] = {**found.get(name, {}), **settings}
    return found


TWO_ROUTES = [
    {"stations": ["ALF-*", "CP_42"], "primary": "b", "mirrors": ["a"]},
    {"stations": ["CP_*"], "primary": "a", "mirrors": ["c"]},
]


def paths(central) -> list[str]:
    return [connection.request.path for connection in central.connections]


class RoutedStationTests(SynchronousTestCase):
    """A station's frames follow its route."""

    def test_stations_on_two_routes_hear_their_own_primary(self):
        """Each station is answered by its own primary; an upstream off a station's route never hears of it."""
        harness = RelayHarness(self, upstreams=upstreams(), routes=TWO_ROUTES)
        on_b = harness.connect_station("ALF-1")
        on_a = harness.connect_station("CP_7")
        for station in (on_b, on_a):
            station.send(BOOT)
        harness.flush()
        self.assertEqual(on_b.frames(), [[3, "b-1", {"answeredBy": "secondary"}]])
        self.assertEqual(on_a.frames(), [[3, "b-1", {"answeredBy": "primary"}]])
        self.assertEqual(paths(harness.secondary), ["/ocpp/ALF-1"])
        self.assertEqual(paths(harness.primary), ["/ocpp/ALF-1", "/ocpp/CP_7"])
        self.assertEqual(paths(harness.third), ["/feed/CP_7"])

    def test_mirror_receiving_meter_values_only(self):
        """A mirror with receives [MeterValues] gets those and nothing else of the station's."""
        harness = RelayHarness(
            self,
            upstreams=upstreams(c={"receives": ["MeterValues"]}),
            routes=[{"stations": ["*"], "primary": "a", "mirrors": ["c"]}],
        )
        station = harness.connect_station("CP_1")
        for frame in (BOOT, STATUS, METER):
            station.send(frame)
        harness.flush()
        self.assertEqual([frame[2] for frame in harness.third.connection.frames()], ["MeterValues"])
        self.assertEqual(len(harness.primary.connection.frames()), 3)
        self.assertEqual(len(station.frames()), 3)

    def test_station_id_rewritten_but_credentials_name_the_station(self):
        """station_id rewrites the id in the URL; {station_id} in auth.username is the station's own id."""
        harness = RelayHarness(
            self,
            upstreams=upstreams(
                a={"station_id": "FR*ABC*{station_id}", "auth": {"username": "{station_id}", "password": "pw"}}
            ),
            routes=[{"stations": ["*"], "primary": "a"}],
        )
        harness.connect_station("CP_1")
        self.assertEqual(paths(harness.primary), ["/ocpp/FR*ABC*CP_1"])
        expected = "Basic " + base64.b64encode(b"CP_1:pw").decode()
        self.assertEqual(harness.primary.connection.headers()["authorization"], expected)

    def test_station_on_no_route_gets_404(self):
        """A station no route admits is refused with HTTP 404 and one log line per address (throttled)."""
        harness = RelayHarness(self, upstreams=upstreams(), routes=TWO_ROUTES)
        first = harness.connect_station("XY_1")
        second = harness.connect_station("XY_2")
        self.assertEqual((first.refused_status, second.refused_status), (404, 404))
        self.assertEqual(len(harness.logged("no route admits it")), 1)
        self.assertEqual(harness.primary.connections, [])
        harness.advance(61, step=10)
        harness.connect_station("XY_3")
        self.assertEqual(len(harness.logged("no route admits it")), 2)


class MigrationTests(SynchronousTestCase):
    """A reload's new routes reach connected stations at migration_rate, without closing them."""

    def connected(self, harness, count: int):
        stations = [harness.connect_station(f"CP_{number}") for number in range(count)]
        for station in stations:
            station.send(BOOT)
        harness.flush()
        return stations

    def test_paced_at_migration_rate(self):
        """With migration_rate 2, two stations a second get their new primary's link; none is closed."""
        harness = RelayHarness(
            self, upstreams=upstreams(), routes=[{"stations": ["*"], "primary": "a"}], migration_rate=2
        )
        stations = self.connected(harness, 5)
        harness.reroute(routes=[{"stations": ["*"], "primary": "b", "mirrors": ["a"]}])
        self.assertEqual(len(harness.secondary.connections), 1)
        harness.advance(0.5, step=0.5)
        self.assertEqual(len(harness.secondary.connections), 2)
        harness.advance(1.0, step=0.5)
        self.assertEqual(len(harness.secondary.connections), 4)
        harness.advance(1.0, step=0.5)
        self.assertEqual(len(harness.secondary.connections), 5)
        self.assertEqual(len(harness.proxy.migration), 0)
        # Each new primary first got the station's BootNotification, replayed.
        self.assertEqual([connection.frames()[0][2] for connection in harness.secondary.connections], ["BootNotification"] * 5)
        self.assertFalse(any(station.closed for station in stations))
        for station in stations:
            station.send(STATUS)
        harness.flush()
        self.assertEqual([station.frames()[-1][2] for station in stations], [{"answeredBy": "secondary"}] * 5)

    def test_unchanged_route_costs_nothing(self):
        """A reload that changes nothing of a station's route or links touches none of its links."""
        harness = RelayHarness(self, upstreams=upstreams(), routes=TWO_ROUTES, migration_rate=1)
        self.connected(harness, 3)
        harness.reroute(upstreams=upstreams(b={"url": B + "v2/"}))
        self.assertEqual(len(harness.proxy.migration), 0)
        self.assertEqual(harness.proxy.migration.changed, 0)
        self.assertEqual(len(harness.primary.connections), 3)

    def test_changed_url_relinks_its_stations(self):
        """A changed url re-links the stations using that upstream: the new link opens before the old one closes."""
        harness = RelayHarness(self, upstreams=upstreams(), routes=[{"stations": ["*"], "primary": "a", "mirrors": ["c"]}])
        station = self.connected(harness, 1)[0]
        harness.reroute(upstreams=upstreams(a={"url": A + "v2/"}))
        self.assertEqual(paths(harness.primary), ["/ocpp/CP_0", "/ocpp/v2/CP_0"])
        self.assertTrue(harness.primary.connections[0].closed)
        self.assertEqual(len(harness.third.connections), 1)
        station.send(STATUS)
        harness.flush()
        self.assertEqual(station.frames()[-1], [3, "s-1", {"answeredBy": "primary"}])
        self.assertEqual(json.loads(harness.primary.connections[1].received[-1])[2], "StatusNotification")
        self.assertFalse(station.closed)

    def test_station_on_no_route_any_more_is_closed(self):
        """A connected station no route admits after the reload is closed with 1012 (it reconnects to a 404)."""
        harness = RelayHarness(self, upstreams=upstreams(), routes=TWO_ROUTES)
        station = self.connected(harness, 1)[0]
        harness.reroute(routes=[{"stations": ["ALF-*"], "primary": "a"}])
        harness.flush()
        self.assertEqual(station.close_code, 1012)
