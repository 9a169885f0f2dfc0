"""
The routing keys (issue 24): upstreams by name, routes (or routes_file), migration_rate;
the legacy keys defining primary, secondary and the one route *; every mistake a
configuration error naming its key.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ConfigError, RouteEntry, Upstream, UpstreamTLS
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.core.upstream_auth import UpstreamAuth

A = "ws://a.example.com/ocpp/"
B = "ws://b.example.com/ocpp/"
C = "ws://c.example.com/"


def routed(routes=None, **upstreams):
    """A mapping with upstreams a, b, c (or those given) and C{routes} (default: everything to a)."""
    return {
        "upstreams": upstreams or {"a": {"url": A}, "b": {"url": B}, "c": {"url": C}},
        "routes": routes if routes is not None else [{"stations": ["*"], "primary": "a"}],
    }


class UpstreamsTests(SynchronousTestCase):
    """upstreams: names, their settings and defaults."""

    def test_issue_example(self):
        """The issue's example loads: settings per upstream, routes in order, failover a mirror."""
        config = config_from_mapping(
            {
                "upstreams": {
                    "csms-a": {"url": A, "auth": "pass", "calls": "all", "receives": "all", "station_id": "{station_id}"},
                    "csms-b": {"url": B},
                    "analytics": {
                        "url": C,
                        "calls": "none",
                        "receives": ["MeterValues", "StatusNotification", "StartTransaction", "StopTransaction"],
                    },
                },
                "routes": [
                    {"stations": ["ALF-*", "CP_0042"], "primary": "csms-b", "mirrors": ["csms-a", "analytics"],
                     "failover": "csms-a"},
                    {"stations": ["*"], "primary": "csms-a", "mirrors": ["analytics"]},
                ],
            }
        )
        self.assertEqual(list(config.named_upstreams), ["csms-a", "csms-b", "analytics"])
        self.assertEqual(config.named_upstreams["analytics"].calls, frozenset())
        self.assertEqual(config.named_upstreams["csms-b"], Upstream(B))
        self.assertEqual(
            config.route_entries,
            (
                RouteEntry(("ALF-*", "CP_0042"), "csms-b", ("csms-a", "analytics"), "csms-a"),
                RouteEntry(("*",), "csms-a", ("analytics",)),
            ),
        )
        self.assertIsNone(config.primary_url)
        self.assertEqual(config.migration_rate, 50)

    def test_meter_values_alone_is_valid(self):
        """receives: [MeterValues] alone is valid."""
        config = config_from_mapping(routed(a={"url": A, "receives": ["MeterValues"]}))
        self.assertEqual(config.named_upstreams["a"].receives, frozenset({"MeterValues"}))

    def test_station_id_template(self):
        """station_id rewrites the id appended to url; auth's {station_id} stays the station's own (see the proxy)."""
        config = config_from_mapping(routed(a={"url": A, "station_id": "FR*ABC*{station_id}"}))
        self.assertEqual(config.named_upstreams["a"].address_for("CP1"), A + "FR*ABC*CP1")

    def test_credentials(self):
        """auth takes pass, drop or username and password, as upstream_auth."""
        config = config_from_mapping(routed(a={"url": A, "auth": {"username": "{station_id}", "password": "s3cret"}}))
        self.assertEqual(config.named_upstreams["a"].auth, UpstreamAuth("basic", "{station_id}", "s3cret"))

    def test_tls_files(self):
        """tls names files relative to the file's directory, for a wss:// URL."""
        base = os.path.dirname(os.path.abspath(__file__))
        config = config_from_mapping(
            routed(a={"url": "wss://a.example.com/", "tls": {"ca_file": "__init__.py"}}), base
        )
        self.assertEqual(config.named_upstreams["a"].tls, UpstreamTLS(ca_file=os.path.join(base, "__init__.py")))

    def test_migration_rate(self):
        """migration_rate: stations per second, 50 by default."""
        self.assertEqual(config_from_mapping({**routed(), "migration_rate": 5}).migration_rate, 5)


class LegacyKeysTests(SynchronousTestCase):
    """primary_url and its keys define upstreams primary and secondary and the one route *."""

    def test_primary_and_secondary(self):
        config = config_from_mapping(
            {
                "primary_url": A,
                "secondary_url": B,
                "failover": True,
                "upstream_calls": {"secondary": "none"},
                "upstream_auth": {"secondary": "drop"},
            }
        )
        self.assertEqual(config.upstream_urls(), {"primary": A, "secondary": B})
        self.assertEqual(config.named_upstreams["secondary"].calls, frozenset())
        self.assertEqual(config.named_upstreams["secondary"].auth, UpstreamAuth("drop"))
        self.assertEqual(config.route_entries, (RouteEntry(("*",), "primary", ("secondary",), "secondary"),))
        self.assertIsNone(config.upstreams)
        self.assertIsNone(config.routes)

    def test_primary_alone(self):
        config = config_from_mapping({"primary_url": A})
        self.assertEqual(config.route_entries, (RouteEntry(("*",), "primary"),))


class ErrorTests(SynchronousTestCase):
    """Each mistake is one line naming the key."""

    def error(self, raw) -> str:
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping(raw)
        return str(caught.exception)

    def test_mixing_legacy_keys_refused(self):
        message = self.error({**routed(), "primary_url": A, "failover": True})
        self.assertTrue(message.startswith("upstreams: cannot be combined with primary_url, failover"), message)
        self.assertNotIn("\n", message)

    def test_unknown_upstream(self):
        message = self.error(routed([{"stations": ["*"], "primary": "z"}]))
        self.assertTrue(message.startswith("routes[0].primary: names no upstream: 'z'"), message)
        message = self.error(routed([{"stations": ["x"], "primary": "a"}, {"stations": ["*"], "primary": "a", "mirrors": ["b", "y"]}]))
        self.assertTrue(message.startswith("routes[1].mirrors[1]: names no upstream: 'y'"), message)

    def test_mirror_that_is_the_primary(self):
        message = self.error(routed([{"stations": ["*"], "primary": "a", "mirrors": ["b", "a"]}]))
        self.assertEqual(message, "routes[0].mirrors: holds a, the route's primary")

    def test_failover_not_a_mirror(self):
        message = self.error(routed([{"stations": ["*"], "primary": "a", "mirrors": ["b"], "failover": "c"}]))
        self.assertEqual(message, "routes[0].failover: must be one of the route's mirrors, got 'c'")

    def test_stop_without_start(self):
        message = self.error(routed(a={"url": A, "receives": ["MeterValues", "StopTransaction"]}))
        self.assertTrue(message.startswith("upstreams.a.receives: holds StopTransaction without StartTransaction"))

    def test_routes_without_upstreams(self):
        self.assertTrue(self.error({"primary_url": A, "routes": []}).startswith("routes: needs upstreams"))

    def test_upstreams_without_routes(self):
        self.assertTrue(self.error({"upstreams": {"a": {"url": A}}}).startswith("routes: is mandatory with upstreams"))

    def test_nothing_configured(self):
        self.assertTrue(self.error({}).startswith("primary_url: is mandatory"))

    def test_bad_names_and_keys(self):
        self.assertTrue(self.error(routed(**{"a b": {"url": A}})).startswith("upstreams.a b: must be a name"))
        self.assertTrue(self.error(routed(station={"url": A})).startswith("upstreams.station: 'station' is reserved"))
        self.assertTrue(self.error(routed(a={"url": A, "urls": A})).startswith("upstreams.a.urls: unknown key"))
        self.assertEqual(self.error(routed(a={"auth": "pass"})), "upstreams.a.url: is mandatory")
        self.assertTrue(self.error(routed(a={"url": "http://x/"})).startswith("upstreams.a.url: must be a ws://"))
        message = self.error(routed([{"stations": ["*"], "primary": "a", "mirror": ["b"]}]))
        self.assertTrue(message.startswith("routes[0].mirror: unknown key"), message)

    def test_bad_stations(self):
        self.assertTrue(self.error(routed([{"stations": [], "primary": "a"}])).startswith("routes[0].stations: must be"))
        message = self.error(routed([{"stations": [42], "primary": "a"}]))
        self.assertTrue(message.startswith("routes[0].stations[0]: must be a station id or pattern (quote"), message)

    def test_station_id_template_needs_the_id(self):
        message = self.error(routed(a={"url": A, "station_id": "FR*ABC"}))
        self.assertTrue(message.startswith("upstreams.a.station_id: must hold {station_id}"), message)

    def test_tls_needs_wss(self):
        message = self.error(routed(a={"url": A, "tls": {}}))
        self.assertEqual(message, "upstreams.a.tls: is set, but upstreams.a.url is not a wss:// URL")

    def test_credentials_not_quoted(self):
        message = self.error(routed(a={"url": A, "auth": {"username": "u:x", "password": "hunter2"}}))
        self.assertNotIn("hunter2", message)
        self.assertTrue(message.startswith("upstreams.a.auth.username"))

    def test_routes_and_routes_file(self):
        message = self.error({**routed(), "routes_file": "r.yaml"})
        self.assertEqual(message, "routes_file: cannot be combined with routes: give the list in one place")


class RoutesFileTests(SynchronousTestCase):
    """routes_file: the same list, in a YAML file of its own, relative to the configuration's directory."""

    def write(self, text: str) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "routes.yaml"), "w", encoding="utf-8") as stream:
            stream.write(text)
        return directory

    def test_read(self):
        directory = self.write('- stations: ["CP_1"]\n  primary: b\n- stations: ["*"]\n  primary: a\n  mirrors: [c]\n')
        raw = routed()
        del raw["routes"]
        config = config_from_mapping({**raw, "routes_file": "routes.yaml"}, directory)
        self.assertEqual(config.routes, (RouteEntry(("CP_1",), "b"), RouteEntry(("*",), "a", ("c",))))
        self.assertEqual(config.routes_file, os.path.join(os.path.abspath(directory), "routes.yaml"))

    def test_errors_name_the_file_key(self):
        directory = self.write('- stations: ["*"]\n  primary: z\n')
        raw = routed()
        del raw["routes"]
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping({**raw, "routes_file": "routes.yaml"}, directory)
        self.assertTrue(str(caught.exception).startswith("routes_file[0].primary: names no upstream"))

    def test_missing_file(self):
        raw = routed()
        del raw["routes"]
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping({**raw, "routes_file": "nope.yaml"}, self.mktemp())
        self.assertTrue(str(caught.exception).startswith("routes_file: cannot read"))
