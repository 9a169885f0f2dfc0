"""
The cluster's fleet record against a real redis-server: what an instance writes when
stations connect and leave (and, kept, when Redis returns), what a read returns with the
claims, the pruning after a day, and reads that fail fast (Redis away) or in bounded time
(Redis frozen); and the answers it parses.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.cluster.claims import station_key
from ocppproxy.cluster.fleet import (
    FLEET_KEY,
    FORGET_AFTER,
    ClusterFleet,
    ClusterFleetView,
    FleetEntry,
    FleetReadError,
    parse_fleet,
)
from ocppproxy.cluster.service import ClusterService
from ocppproxy.config.model import ClusterConfig

from ..e2e import ProxyTestCase, async_test
from ..redisserver import RedisServer


class FleetRecordTests(ProxyTestCase):
    timeout = 20

    async def asyncSetUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.stop)
        await self.redis.start()

    async def instance(self, name: str, reply_timeout: float = 5.0) -> ClusterService:
        """A started cluster service (claims, and its C{fleet} record) once it reaches Redis."""
        service = ClusterService(
            ClusterConfig(redis_url=self.redis.url, instance=name, ownership_ttl=30),
            reactor,
            lambda session, by: None,
            reply_timeout,
        )
        service.startService()
        self.addCleanup(service.stopService)
        await self.until(lambda: service.redis_up)
        return service

    async def read(self, service: ClusterService, timeout: float = 2.0) -> ClusterFleetView:
        return await Deferred.asFuture(service.fleet.read(timeout), asyncio.get_event_loop())

    async def entry(self, station: str) -> str:
        return await self.redis.command("HGET", FLEET_KEY, station)

    async def until_entry(self, station: str, prefix: str, instance: str) -> None:
        loop = asyncio.get_event_loop()
        deadline = loop.time() + 5
        while not ((entry := await self.entry(station)).startswith(prefix) and entry.endswith(" " + instance)):
            if loop.time() > deadline:
                raise AssertionError(f"{station}: still {entry!r}, not {prefix!r}... {instance}")
            await asyncio.sleep(0.02)

    @async_test
    async def test_connected_then_left_with_time_and_instance(self):
        """A connection is recorded as connected, its end as left, each with the instance and its time."""
        await self.asyncSetUp()
        a = await self.instance("proxy-a")
        session = SimpleNamespace(station_id="CP 1")
        before = time.time()
        a.station_connected(session)  # the proxy claims it...
        a.fleet.station_connected("CP 1")  # ... and the status page's activity records it once it is open
        await self.until_entry("CP 1", "connected ", "proxy-a")
        view = await self.read(a)
        self.assertEqual(view.holders, {"CP 1": "proxy-a"})
        self.assertEqual(view.seen["CP 1"].instance, "proxy-a")
        a.station_ended(session)
        a.fleet.station_left("CP 1")
        await self.until_entry("CP 1", "left ", "proxy-a")
        view = await self.read(a)
        self.assertEqual(view.holders, {})
        left = view.seen["CP 1"]
        self.assertEqual((left.event, left.instance), ("left", "proxy-a"))
        self.assertTrue(before <= left.time <= time.time())

    @async_test
    async def test_a_late_departure_leaves_the_new_instance_alone(self):
        """CP_1 connected on B before A's departure reaches Redis: the record says connected on B."""
        await self.asyncSetUp()
        a, b = await self.instance("proxy-a"), await self.instance("proxy-b")
        on_a, on_b = SimpleNamespace(station_id="CP_1"), SimpleNamespace(station_id="CP_1")
        a.station_connected(on_a)
        a.fleet.station_connected("CP_1")
        await self.until_entry("CP_1", "connected ", "proxy-a")
        b.station_connected(on_b)
        b.fleet.station_connected("CP_1")
        await self.until(lambda: not a._sessions, timeout=5)  # B's claim replaced A's connection
        await self.until_entry("CP_1", "connected ", "proxy-b")
        a.fleet.station_left("CP_1")  # A's connection closed
        view = await self.read(a)  # after A's departure: one connection answers in order
        self.assertEqual(view.seen["CP_1"].event, "connected")
        self.assertEqual(view.seen["CP_1"].instance, "proxy-b")
        self.assertEqual(view.holders["CP_1"], "proxy-b")

    @async_test
    async def test_entries_older_than_a_day_are_pruned_unless_held(self):
        """
        A read leaves out the stations that left more than a day ago, except one that an instance
        holds, and deletes nothing (reading the status page changes nothing); the prune deletes them.
        """
        await self.asyncSetUp()
        a = await self.instance("proxy-a")
        old = f"{time.time() - FORGET_AFTER - 60:.3f}"
        recent = f"{time.time() - 60:.3f}"
        await self.redis.command("HSET", FLEET_KEY, "OLD", f"left {old} proxy-b")
        await self.redis.command("HSET", FLEET_KEY, "RECENT", f"left {recent} proxy-b")
        await self.redis.command("HSET", FLEET_KEY, "HELD", f"connected {old} proxy-b")
        await self.redis.command("SET", station_key("HELD"), "17 proxy-b 1")
        view = await self.read(a)
        self.assertEqual(sorted(view.seen), ["HELD", "RECENT"])
        self.assertEqual(view.holders, {"HELD": "proxy-b"})
        self.assertEqual(await self.redis.command("HEXISTS", FLEET_KEY, "OLD"), "1")
        a.fleet._prune()  # what the fleet's periodic child calls every PRUNE_EVERY seconds
        await self.until_gone("OLD")
        self.assertEqual(await self.redis.command("HEXISTS", FLEET_KEY, "HELD"), "1")

    async def until_gone(self, station_id: str) -> None:
        """Wait (bounded) until the fleet record has no entry for C{station_id}."""
        for _ in range(100):
            if await self.redis.command("HEXISTS", FLEET_KEY, station_id) == "0":
                return
            await asyncio.sleep(0.02)
        self.fail(f"{station_id} still in the fleet record")

    @async_test
    async def test_redis_away_fails_at_once(self):
        """With Redis killed the read fails at once, saying so; nothing is written meanwhile."""
        await self.asyncSetUp()
        a = await self.instance("proxy-a")
        await self.redis.kill()
        await self.until(lambda: not a.redis_up, timeout=5)
        started = asyncio.get_event_loop().time()
        with self.assertRaises(FleetReadError) as raised:
            await self.read(a, timeout=5)
        self.assertEqual(str(raised.exception), "Redis unreachable")
        self.assertLess(asyncio.get_event_loop().time() - started, 0.5)
        a.fleet.station_connected("CP_1")  # not sent, not raised

    @async_test
    async def test_what_happened_while_redis_was_away_is_written_when_it_returns(self):
        """CP_1 connected and left A, CP_2 connected, with Redis away: written when Redis is back, with their times."""
        await self.asyncSetUp()
        a = await self.instance("proxy-a")
        await self.redis.kill()
        await self.until(lambda: not a.redis_up, timeout=5)
        a.fleet.station_connected("CP_1")
        a.fleet.station_connected("CP_2")
        before = time.time()
        a.fleet.station_left("CP_1")
        after = time.time()
        await self.redis.start()
        await self.until_entry("CP_1", "left ", "proxy-a")
        await self.until_entry("CP_2", "connected ", "proxy-a")
        when = float((await self.entry("CP_1")).split(" ")[1])
        self.assertTrue(before - 0.001 <= when <= after + 0.001, (before, when, after))  # not when Redis returned

    @async_test
    async def test_a_late_write_leaves_a_newer_entry_alone(self):
        """
        CP_1 connected to A while Redis hung; meanwhile the record says it left B later: A's
        write, kept until Redis answers again, changes nothing. (A live write would.)
        """
        await self.asyncSetUp()
        a = await self.instance("proxy-a", reply_timeout=0.5)
        await self.redis.command("HSET", FLEET_KEY, "CP_1", f"left {time.time() + 60:.3f} proxy-b")
        self.redis.freeze()
        self.addCleanup(self.redis.thaw)
        with self.assertRaises(FleetReadError):
            await self.read(a, timeout=0.1)  # a command for the reply timeout to notice the hang
        await self.until(lambda: not a.redis_up, timeout=5)
        a.fleet.station_connected("CP_1")
        a.fleet.station_connected("CP_2")
        self.redis.thaw()
        await self.until_entry("CP_2", "connected ", "proxy-a")
        await self.read(a)  # after A's writes: one connection answers in order
        self.assertTrue((await self.entry("CP_1")).startswith("left "))
        a.fleet.station_connected("CP_1")
        await self.until_entry("CP_1", "connected ", "proxy-a")

    @async_test
    async def test_frozen_redis_fails_within_the_timeout(self):
        """A Redis that answers nothing: the read fails after its timeout, not Redis's reply timeout."""
        await self.asyncSetUp()
        a = await self.instance("proxy-a")
        self.redis.freeze()
        self.addCleanup(self.redis.thaw)
        started = asyncio.get_event_loop().time()
        with self.assertRaises(FleetReadError) as raised:
            await self.read(a, timeout=0.3)
        self.assertEqual(str(raised.exception), "Redis did not answer within 0.3 s")
        self.assertLess(asyncio.get_event_loop().time() - started, 2.0)
        self.assertEqual(len(self.logged("cannot read the fleet record")), 1)


class ReadTimeoutTests(SynchronousTestCase):
    """L{ClusterFleet.read} on a Clock, over a stand-in for the Redis link that answers when told."""

    def setUp(self):
        self.clock = Clock()
        self.pending: list[Deferred] = []

        def execute(script, keys, args):
            self.pending.append(Deferred())
            return self.pending[-1]

        self.fleet = ClusterFleet(SimpleNamespace(up=True, execute=execute), self.clock, "proxy-a")

    def test_an_answer_in_time(self):
        """The answer within the timeout is the view; no timer is left behind."""
        reading = self.fleet.read(1.0)
        self.pending[0].callback('[["CP_1","5 proxy-b 2"],[]]')
        self.assertEqual(self.successResultOf(reading).holders, {"CP_1": "proxy-b"})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_answer_in_time_leaves_the_command_alone(self):
        """
        No answer within the timeout: the read fails then, saying so; the command is not
        cancelled (its own reply timeout must still notice a hung Redis), its late answer is dropped.
        """
        reading = self.fleet.read(1.0)
        self.clock.advance(0.99)
        self.assertNoResult(reading)
        self.clock.advance(0.01)
        self.assertEqual(str(self.failureResultOf(reading, FleetReadError).value), "Redis did not answer within 1 s")
        self.assertFalse(self.pending[0].called)
        self.pending[0].callback("[[],[]]")
        self.assertIsNone(self.successResultOf(self.pending[0]))  # consumed, no error


class ParseFleetTests(SynchronousTestCase):
    def test_claims_and_entries(self):
        view, problems = parse_fleet('[["CP_1","5 proxy-b 2"],["CP_1","connected 10.5 proxy-b","CP_2","left 9 a"]]')
        self.assertEqual(view.holders, {"CP_1": "proxy-b"})
        self.assertEqual(view.seen["CP_2"], FleetEntry("left", 9.0, "a"))
        self.assertEqual(problems, [])

    def test_entries_out_of_shape_are_named_and_left_out(self):
        view, problems = parse_fleet('[["CP_1","nonsense"],["CP_2","gone 1 a","CP_3","left x a"]]')
        self.assertEqual((view.holders, view.seen), ({}, {}))
        self.assertEqual(len(problems), 3)
        self.assertIn("station CP_2", problems[1])

    def test_an_answer_out_of_shape_is_a_read_error(self):
        for reply in ('["CP_1"]', "[[1, 2], []]", '[["CP_1"], []]', "{", b"\xff"):
            with self.assertRaises(FleetReadError, msg=reply):
                parse_fleet(reply)
