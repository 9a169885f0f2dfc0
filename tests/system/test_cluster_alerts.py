"""
The cluster's alerts: two notifiers, each with its own cluster service, sharing one real
redis-server. The policies' timing runs on a Clock; Redis is real. What an operator
checks: one upstream_down per outage for the whole cluster, no alert for a station that
moved between instances, no repeated status alert after a move, and with Redis away each
instance alerting on its own with one warning.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from ocpp.v16 import call
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.cluster.alerts import (
    REPLY_WAIT,
    SEEN_REFRESH,
    ClusterAlerts,
    alert_key,
    burst_key,
    held_key,
    parse_statuses,
    seen_key,
    status_field,
    status_value,
    statuses_key,
)
from ocppproxy.cluster.service import ClusterService
from ocppproxy.config.model import ClusterConfig, NotifyConfig
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.notify.names import StationNames
from ocppproxy.notify.service import NotifierService

from ..unit import test_layers
from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station
from ..redisserver import RedisServer

PRIMARY_URL = "ws://csms.example/ocpp/"
FLAP_WINDOW = 30.0
DOWN_AFTER = 120.0


def status(connector: int, value: str, error: str = "NoError"):
    body = {"connectorId": connector, "errorCode": error, "status": value}
    return parse_frame(json.dumps([2, f"s-{connector}-{value}", "StatusNotification", body]))


class Instance:
    """One instance's alerting: its cluster service (on the real reactor) and its notifier (on the test's Clock)."""

    def __init__(self, test: ProxyTestCase, redis: RedisServer, name: str, clock: Clock, events: tuple) -> None:
        self.alerts: list = []
        self.replaced: list[str] = []
        self.cluster = ClusterService(
            ClusterConfig(redis_url=redis.url, instance=name, ownership_ttl=30), reactor, self._replace
        )
        settings = NotifyConfig(
            events=frozenset(events), flap_window=FLAP_WINDOW, upstream_down_after=DOWN_AFTER, retry_delay=1.0
        )

        def channel(alert):
            self.alerts.append(alert)
            return succeed(None)

        sharing = ClusterAlerts(self.cluster, clock)
        sharing.setServiceParent(self.cluster)
        self.notifier = NotifierService(
            settings, StationNames({}), clock, {"test": channel}, {"primary": PRIMARY_URL}, lambda _: 0, sharing=sharing
        )
        self.cluster.startService()
        self.notifier.startService()
        test.addCleanup(lambda: self.cluster.running and self.cluster.stopService())
        test.addCleanup(self.notifier.stopService)

    def _replace(self, session, instance: str) -> None:
        """The proxy closes the station's connection (4000): the notifier hears it disconnect."""
        self.replaced.append(session.station_id)
        self.notifier.station_disconnected(session.station_id, 4000, f"replaced on {instance}")

    def keys(self) -> list[str]:
        return [alert.key for alert in self.alerts]

    def connect(self, station_id: str) -> None:
        """A station connects here, as the proxy tells it: ownership claimed at the handshake, then the notifier."""
        self.cluster.station_connected(SimpleNamespace(station_id=station_id))
        self.notifier.station_connected(station_id, "tcp4:127.0.0.1:5000")

    def primary_lost(self, station_id: str) -> None:
        self.notifier.upstream_disconnected(station_id, "primary", PRIMARY_URL + station_id, "connection refused")


class ClusterAlertsTests(ProxyTestCase):
    timeout = 20

    async def start(self, *events: str, redis_running: bool = True) -> tuple[Instance, Instance]:
        self.redis = RedisServer()
        self.addCleanup(self.redis.stop)
        if redis_running:
            await self.redis.start()
        self.clock = Clock()
        a = Instance(self, self.redis, "proxy-a", self.clock, events)
        b = Instance(self, self.redis, "proxy-b", self.clock, events)
        if redis_running:
            await self.until(lambda: a.cluster.redis_up and b.cluster.redis_up, timeout=5)
        return a, b

    async def primary_down_everywhere(self, a: Instance, b: Instance) -> None:
        """The primary goes down with CP_A on A and CP_B on B, for longer than upstream_down_after."""
        a.primary_lost("CP_A")
        b.primary_lost("CP_B")
        self.clock.advance(DOWN_AFTER)

    @async_test
    async def test_primary_down_is_one_alert_for_the_cluster(self):
        """
        The primary down with stations on both instances: exactly one upstream_down, sent
        by whichever claimed it in Redis; the other says so.
        """
        a, b = await self.start("upstream_down")
        a.connect("CP_A")
        b.connect("CP_B")
        await self.primary_down_everywhere(a, b)
        await self.until(lambda: len(a.alerts + b.alerts) == 1 and self.logged("is sent by another instance"))
        (alert,) = a.alerts + b.alerts
        self.assertEqual(alert.key, "upstream_down")
        self.assertEqual(alert.details["url"], PRIMARY_URL)
        winner = await self.redis.command("GET", alert_key("upstream_down", PRIMARY_URL))
        self.assertEqual(winner, "proxy-a" if a.alerts else "proxy-b")
        self.assertEqual(len(self.logged("upstream_down of primary is sent by another instance")), 1)

    @async_test
    async def test_next_outage_is_alerted_again_once(self):
        """Back up on both instances, then down again for upstream_down_after: one more alert, not two."""
        a, b = await self.start("upstream_down")
        await self.primary_down_everywhere(a, b)
        await self.until(lambda: len(a.alerts + b.alerts) == 1 and self.logged("is sent by another instance"))
        a.notifier.upstream_connected("CP_A", "primary", PRIMARY_URL + "CP_A")
        b.notifier.upstream_connected("CP_B", "primary", PRIMARY_URL + "CP_B")
        # The claim lives upstream_down_after seconds of Redis's time, which the Clock does not move:
        # expire it by hand, as the next outage can only be told that long after the first.
        self.assertEqual(await self.redis.command("DEL", alert_key("upstream_down", PRIMARY_URL)), "1")
        await self.primary_down_everywhere(a, b)
        await self.until(lambda: len(a.alerts + b.alerts) == 2 and len(self.logged("is sent by another")) == 2)
        self.assertEqual([alert.key for alert in a.alerts + b.alerts], ["upstream_down"] * 2)

    @async_test
    async def test_station_moved_within_flap_window_raises_no_connection_alert(self):
        """
        CP_1 on A, then on B (A closes its connection, replaced): after the flap window
        neither A's disconnected nor B's connected alert went out; A's connected did.
        """
        a, b = await self.start("connected_to_proxy", "disconnected_from_proxy")
        a.connect("CP_1")
        await self.until(lambda: a.keys() == ["connected_to_proxy"])
        b.connect("CP_1")
        await self.until(lambda: self.logged("came from another instance") and a.replaced == ["CP_1"])
        self.clock.advance(FLAP_WINDOW)
        await self.settled(a, b)
        self.assertEqual(b.alerts, [])
        self.assertEqual(a.keys(), ["connected_to_proxy"])
        self.assertTrue(self.logged("disconnected_from_proxy of station CP_1 not sent: it went to another instance"))

    @async_test
    async def test_station_that_came_from_elsewhere_and_leaves_for_good_is_alerted(self):
        """
        CP_1 on B, then on A (B's connection replaced), then gone from A: after the flap
        window A alerts its disconnection (B's older claim does not count), B does not.
        """
        a, b = await self.start("connected_to_proxy", "disconnected_from_proxy")
        b.connect("CP_1")
        await self.until(lambda: b.keys() == ["connected_to_proxy"] and a.notifier.sharing.moved_since("CP_1", 0))
        a.connect("CP_1")
        await self.until(lambda: self.logged("came from another instance") and b.replaced == ["CP_1"])
        a.notifier.station_disconnected("CP_1", 1006, "connection lost")
        self.clock.advance(FLAP_WINDOW)
        await self.settled(a, b)
        self.assertEqual(a.keys(), ["disconnected_from_proxy"])
        self.assertEqual(b.keys(), ["connected_to_proxy"])

    @async_test
    async def test_station_of_a_killed_instance_reconnecting_elsewhere_is_no_new_station(self):
        """A stops answering for good (its services gone, nothing said to Redis): CP_1 on B raises no connected alert."""
        a, b = await self.start("connected_to_proxy")
        a.connect("CP_1")
        await self.until(lambda: a.keys() == ["connected_to_proxy"])
        await Deferred.asFuture(a.cluster.stopService(), asyncio.get_event_loop())
        b.connect("CP_1")
        await self.until(lambda: self.logged("came from another instance"))
        self.assertEqual(b.alerts, [])

    @async_test
    async def test_last_seen_is_kept_while_the_station_stays(self):
        """
        CP_1 connected to A for longer than a flap window: A keeps its last-seen key alive
        (so it still tells B where CP_1 was if A dies); once CP_1 left, the key expires a flap window later.
        """
        a, _ = await self.start("connected_to_proxy")
        a.connect("CP_1")
        await self.until(lambda: a.alerts)
        key = seen_key("CP_1")
        self.assertEqual(await self.redis.command("GET", key), "proxy-a")
        self.assertLessEqual(int(await self.redis.command("TTL", key)), FLAP_WINDOW + SEEN_REFRESH)
        self.clock.advance(SEEN_REFRESH)
        await self.settled(a)
        self.assertGreater(int(await self.redis.command("TTL", key)), FLAP_WINDOW + SEEN_REFRESH)
        a.notifier.station_disconnected("CP_1", 1000, "bye")
        await self.settled(a)
        self.assertLessEqual(int(await self.redis.command("TTL", key)), FLAP_WINDOW)

    @async_test
    async def test_moved_station_repeating_faulted_raises_no_second_alert(self):
        """
        Connector 1 of CP_1 Faulted on A (one alert); CP_1 moves to B and repeats Faulted:
        no alert on B; its next change (Available) is alerted by B.
        """
        a, b = await self.start("con_status_faulted", "con_status_available")
        a.connect("CP_1")
        a.notifier.station_frame("CP_1", status(1, "Faulted", "GroundFailure"))
        # Judged once A has read what the cluster knew of CP_1 (nothing).
        await self.until(lambda: a.alerts)
        self.assertEqual(a.keys(), ["con_status_faulted"])
        field = status_field((None, 1))
        await self.until_redis(("HGET", statuses_key("CP_1"), field), status_value(("Faulted", "GroundFailure", None)))
        b.connect("CP_1")
        b.notifier.station_frame("CP_1", status(1, "Faulted", "GroundFailure"))
        b.notifier.station_frame("CP_1", status(1, "Available"))
        await self.until(lambda: b.alerts)
        self.assertEqual(b.keys(), ["con_status_available"])
        await self.until_redis(("HGET", statuses_key("CP_1"), field), status_value(("Available", "NoError", None)))
        self.assertTrue(0 < int(await self.redis.command("TTL", statuses_key("CP_1"))) <= 7 * 86400)

    @async_test
    async def test_burst_limit_and_summary_are_the_clusters(self):
        """
        Four stations Faulted on A, four on B, then two more on A, within the summary
        window: five alerts go out one by one in the whole cluster (burst_limit 5), and one
        summary names the five held back on both instances.
        """
        a, b = await self.start("con_status_faulted")
        batches = (
            (a, ("CP_1", "CP_2", "CP_3", "CP_4"), 4),
            (b, ("CP_5", "CP_6", "CP_7", "CP_8"), 1),
            (a, ("CP_9", "CP_10"), 4),
        )
        for instance, names, sent in batches:
            for station_id in names:
                instance.connect(station_id)
                instance.notifier.station_frame(station_id, status(1, "Faulted"))
            await self.settled(instance)
            self.assertEqual(len(instance.alerts), sent)
        self.assertEqual(await self.redis.command("GET", burst_key("con_status_faulted", "")), "10")
        self.clock.advance(10)
        await self.until(lambda: any(not alert.station_id for alert in a.alerts + b.alerts))
        await self.settled(a, b)
        self.assertEqual([alert.station_id for alert in a.alerts if alert.station_id], ["CP_1", "CP_2", "CP_3", "CP_4"])
        self.assertEqual([alert.station_id for alert in b.alerts if alert.station_id], ["CP_5"])
        (summary,) = [alert for alert in a.alerts + b.alerts if not alert.station_id]
        self.assertEqual(summary.details["station_ids"].split(", "), ["CP_10", "CP_6", "CP_7", "CP_8", "CP_9"])
        self.assertEqual(await self.redis.command("EXISTS", held_key("con_status_faulted", "")), "0")

    @async_test
    async def test_redis_down_each_instance_alerts_alone_then_converges(self):
        """
        Redis unreachable from the start: each instance sends its own upstream_down and
        logs one warning; Redis started: the next outage is one alert for the cluster.
        """
        a, b = await self.start("upstream_down", "connected_to_proxy", redis_running=False)
        await self.until(lambda: len(self.logged("is unreachable")) == 2, timeout=5)
        a.connect("CP_A")
        b.connect("CP_A")
        await self.primary_down_everywhere(a, b)
        self.assertEqual(a.keys(), ["connected_to_proxy", "upstream_down"])
        self.assertEqual(b.keys(), ["connected_to_proxy", "upstream_down"])
        self.assertEqual(len(self.logged("is unreachable")), 2)
        self.assertEqual(self.logged("alerts: Redis"), [])
        await self.redis.start()
        await self.until(lambda: a.cluster.redis_up and b.cluster.redis_up, timeout=10)
        a.notifier.upstream_connected("CP_A", "primary", PRIMARY_URL + "CP_A")
        b.notifier.upstream_connected("CP_A", "primary", PRIMARY_URL + "CP_A")
        await self.primary_down_everywhere(a, b)
        await self.until(lambda: len(a.alerts + b.alerts) == 5 and self.logged("is sent by another instance"))
        self.assertEqual(len(self.logged("is unreachable")), 2)

    @async_test
    async def test_redis_that_does_not_answer_costs_an_alert_half_a_second_not_the_alert(self):
        """A frozen Redis: upstream_down goes out REPLY_WAIT seconds after the check, from each instance."""
        a, b = await self.start("upstream_down")
        self.redis.freeze()
        self.addCleanup(self.redis.thaw)
        await self.primary_down_everywhere(a, b)
        self.assertEqual(a.alerts + b.alerts, [])
        self.clock.advance(REPLY_WAIT)
        self.assertEqual([alert.key for alert in a.alerts + b.alerts], ["upstream_down"] * 2)
        self.assertEqual(len(self.logged("did not answer the claim of upstream_down")), 2)

    async def settled(self, *instances: Instance) -> None:
        """
        A later command on each instance's Redis connection answered, twice: every answer
        asked for before it has been acted on, and so has the answer that asked (a new
        station's frames wait for its statuses, and then an alert for its burst count).
        """
        for _ in range(2):
            for instance in instances:
                await Deferred.asFuture(instance.notifier.sharing.load_statuses("-"), asyncio.get_event_loop())

    async def until_redis(self, command: tuple, expected: str) -> None:
        loop = asyncio.get_event_loop()
        deadline = loop.time() + 5
        while (answer := await self.redis.command(*command)) != expected:
            if loop.time() > deadline:
                raise AssertionError(f"{command} answers {answer!r}, not {expected!r}")
            await asyncio.sleep(0.02)


class StatusCodecTests(SynchronousTestCase):
    def test_round_trip(self):
        """Places and statuses written to the hash read back as they were, 1.6 and 2.0.1 alike."""
        statuses = {(None, 1): ("Faulted", "GroundFailure", "E12"), (2, 1): ("Occupied", None, None)}
        flat = []
        for place, value in statuses.items():
            flat += [status_field(place), status_value(value)]
        self.assertEqual(parse_statuses(flat), statuses)

    def test_unreadable_entries_are_left_out(self):
        """A field or value that is not ours is skipped, the rest kept."""
        flat = ["x/1", status_value(("Available", None, None)), "/1", "not json", "/2", "[1, 2, 3]"]
        flat += ["/3", status_value(("Available", None, None))]
        self.assertEqual(parse_statuses(flat), {(None, 3): ("Available", None, None)})


class ClusterAlertsEndToEndTests(ProxyTestCase):
    """The daemon's whole service tree twice, alerts in the log: what an operator sees when a station moves."""

    timeout = 30

    async def instance(self, redis: RedisServer, primary_url: str, name: str):
        """
        A started instance alerting in its log on connections and upstream_down (flap
        window 1 s, upstream down after 1 s); returns its ws:// base URL.
        """
        services = self.start_tree(
            {
                "listen": "tcp:port=0:interface=127.0.0.1",
                "primary_url": primary_url,
                "reconnect": {"initial_delay": 0.2, "max_delay": 0.5},
                "cluster": {"redis_url": redis.url, "instance": name},
                "notify": {
                    "log": True,
                    "flap_window": 1,
                    "upstream_down_after": 1,
                    "events": {"connected_to_proxy": True, "disconnected_from_proxy": True, "upstream_down": True},
                },
            }
        )
        port = await Deferred.asFuture(services.getServiceNamed("proxy").listening, asyncio.get_event_loop())
        await self.until(lambda: services.getServiceNamed("cluster").redis_up, timeout=WAIT)
        return f"ws://127.0.0.1:{port.getHost().port}/"

    def down_alerts(self) -> list[str]:
        return [line for line in self.logged("ALERT") if "unreachable" in line]

    async def station(self, base: str, station_id: str):
        station, websocket, _ = await connect_station(base, station_id)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        return station, websocket

    async def redis_and_primary(self, primary_running: bool = True) -> tuple[RedisServer, str]:
        redis = RedisServer()
        self.addCleanup(redis.stop)
        await redis.start()
        primary = CentralSystem(100)
        primary_url = f"ws://127.0.0.1:{await primary.start()}/ocpp/"
        if primary_running:
            self.addCleanup(lambda: asyncio.ensure_future(primary.stop()))
        else:
            await primary.stop()  # its port now refuses connections
        return redis, primary_url

    @async_test
    async def test_primary_down_with_stations_on_three_instances_is_one_alert(self):
        """The primary refuses every connection, a station on each of three instances: one upstream_down."""
        redis, primary_url = await self.redis_and_primary(primary_running=False)
        for number, name in enumerate(("proxy-a", "proxy-b", "proxy-c"), 1):
            await self.station(await self.instance(redis, primary_url, name), f"CP_{number}")
        # Each instance decides once: the winner alerts, the two others say they do not.
        await self.until(
            lambda: len(self.logged("upstream_down of primary is sent by another instance")) == 2
            and self.down_alerts(),
            timeout=WAIT,
        )
        (alert,) = self.down_alerts()
        self.assertIn("127.0.0.1", alert)

    @async_test
    async def test_station_moved_to_another_instance_raises_no_connection_alert(self):
        """
        CP_1 boots on A (one connected alert), then connects to B, which replaces A's
        connection: a flap window later, no disconnected alert from A, no connected one from B.
        """
        redis, primary_url = await self.redis_and_primary()
        a = await self.instance(redis, primary_url, "proxy-a")
        b = await self.instance(redis, primary_url, "proxy-b")
        on_a, websocket_a = await self.station(a, "CP_1")
        await on_a.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await self.until(lambda: self.logged("ALERT"), timeout=WAIT)
        await self.station(b, "CP_1")
        await asyncio.wait_for(websocket_a.wait_closed(), WAIT)
        self.assertEqual(websocket_a.close_code, 4000)
        await self.until(lambda: self.logged("it went to another instance within the flap window"), timeout=WAIT)
        self.assertTrue(self.logged("station CP_1 came from another instance within the flap window"))
        (alert,) = self.logged("ALERT")
        self.assertIn("connected", alert)
        self.assertNotIn("disconnected", alert)


class NotifierLayerTests(SynchronousTestCase):
    def test_notify_knows_nothing_of_redis(self):
        """ocppproxy/notify imports neither txredisapi nor ocppproxy.cluster: the cluster reaches it through sharing.py."""

        def allowed(module: str) -> bool:
            return module.split(".")[0] != "txredisapi" and not module.startswith("ocppproxy.cluster")

        self.assertEqual(test_layers.violations("notify", allowed), [])
        # The rule sees such imports where they are.
        self.assertNotEqual(test_layers.violations("cluster", allowed), [])
