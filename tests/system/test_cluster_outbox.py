"""
The cluster outbox's Redis Streams store against a real redis-server: entries survive the
instance that wrote them (a new instance loads them), delivered entries leave Redis, the
bounds drop and report, the stations with a backlog and no claim are found, entries go to
the local file while Redis is away and move to Redis, in order, when it returns.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from types import SimpleNamespace

from twisted.internet import reactor

from ocppproxy.cluster.claims import station_key
from ocppproxy.cluster.outbox_follow import ClusterOutboxService
from ocppproxy.cluster.service import ClusterService
from ocppproxy.config.model import ClusterConfig, OutboxConfig
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.outbox_streams import BACKLOGS_KEY, stream_key

from ..e2e import ProxyTestCase, async_test
from ..redisserver import RedisTestMixin


def call(message_id: str, action: str, body: dict) -> bytes:
    return json.dumps([2, message_id, action, body]).encode()


class ClusterOutboxStoreTests(RedisTestMixin, ProxyTestCase):
    timeout = 30

    def instance(
        self, redis, name: str, directory: str | None = None, reply_timeout: float = 5.0, **outbox
    ) -> ClusterOutboxService:
        """A started cluster service named C{name} with its outbox service (stopped at cleanup)."""
        cluster = ClusterService(ClusterConfig(redis_url=redis.url, instance=name, ownership_ttl=3), reactor,
                                 lambda session, by: None, reply_timeout)
        config = OutboxConfig(directory=directory or tempfile.mkdtemp(prefix="ocppproxy-outbox-"), **outbox)
        service = ClusterOutboxService(config, reactor, cluster, {}, lambda: None, 1.0, 3.0)
        service.setServiceParent(cluster)
        cluster.startService()
        self.addCleanup(lambda: cluster.stopService() if cluster.running else None)
        return service

    async def up(self, service: ClusterOutboxService) -> None:
        await self.until(lambda: service.store.state == "up")

    def owe(self, service: ClusterOutboxService, station: str, upstream: str, count: int, start: int = 0) -> list:
        entries = []
        for number in range(start, start + count):
            payload = call(f"m{number}", "MeterValues", {"connectorId": 1, "transactionId": 7, "n": number})
            entries.append(service.outbox.owed(station, upstream, parse_frame(payload), payload))
        return entries

    async def committed(self, service: ClusterOutboxService) -> None:
        store = service.store
        await self.until(lambda: not store._pending and not store._in_flight)

    async def load(self, service: ClusterOutboxService, station: str):
        result = []
        service.store.load(station).addCallback(result.append)
        await self.until(lambda: result)
        return result[0]

    @async_test
    async def test_entries_survive_the_instance(self):
        """Entries written by one instance (then gone) are loaded by another, in order, with the drain facts."""
        redis = await self.start_redis()
        first = self.instance(redis, "proxy-a")
        await self.up(first)
        first.outbox.station_connected("CP_1", "ocpp1.6", False)
        written = self.owe(first, "CP_1", "mirror", 50)
        await self.committed(first)
        await first.parent.stopService().asFuture(asyncio.get_event_loop())
        self.assertEqual(await redis.command("XLEN", stream_key("CP_1", "mirror")), "50")

        second = self.instance(redis, "proxy-b")
        await self.up(second)
        entries, own_ids, facts = await self.load(second, "CP_1")
        self.assertEqual([(e.seq, e.message_id, e.payload) for e in entries["mirror"]],
                         [(e.seq, e.message_id, e.payload) for e in written])
        self.assertEqual(facts, ("ocpp1.6", None, False))
        second.outbox.begin_load("CP_1")
        later = self.owe(second, "CP_1", "mirror", 1, start=50)[0]
        second.outbox.load_station("CP_1", entries, own_ids, facts)
        queue = second.outbox.queue("CP_1", "mirror")
        self.assertEqual([e.message_id for e in queue.entries()], [f"m{n}" for n in range(51)])
        self.assertGreater(later.seq, written[-1].seq)
        boot = call("b1", "BootNotification", {"chargePointModel": "M", "chargePointVendor": "V"})
        second.outbox.owed("CP_1", "mirror", parse_frame(boot), boot)
        await self.committed(second)
        third = self.instance(redis, "proxy-c")
        await self.up(third)
        third.outbox.station_connected("CP_1", "ocpp1.6", False)  # no BootNotification seen there
        _, _, facts = await self.load(third, "CP_1")
        self.assertEqual(facts, ("ocpp1.6", boot, False))

    @async_test
    async def test_delivered_entries_leave_redis(self):
        """Answered entries are removed from the stream; an emptied station leaves the backlog set and the bytes."""
        redis = await self.start_redis()
        service = self.instance(redis, "proxy-a")
        await self.up(service)
        written = self.owe(service, "CP_2", "mirror", 5)
        await self.committed(service)
        self.assertEqual(await redis.command("ZCARD", BACKLOGS_KEY), "1")
        queue = service.outbox.queue("CP_2", "mirror")
        for entry in queue.ready():
            service.outbox.sent("CP_2", "mirror", entry, backlog=True)
        for entry in written:
            service.outbox.answered("CP_2", "mirror", parse_frame(json.dumps([3, entry.message_id, {}]).encode()))
        await self.committed(service)
        self.assertEqual(await redis.command("EXISTS", stream_key("CP_2", "mirror")), "0")
        self.assertEqual(await redis.command("ZCARD", BACKLOGS_KEY), "0")
        self.assertEqual(await redis.command("GET", "ocppproxy:outbox-bytes"), "0")

    @async_test
    async def test_max_bytes_drops_the_oldest_and_reports(self):
        """Beyond max_bytes the oldest entries are dropped in Redis, and counted as drops of their upstream."""
        redis = await self.start_redis()
        service = self.instance(redis, "proxy-a", max_bytes=65536)
        await self.up(service)
        alerts = []
        service.outbox.on_alert = lambda upstream, count: alerts.append(upstream)
        self.owe(service, "CP_3", "mirror", 1000)
        await self.committed(service)
        left = int(await redis.command("XLEN", stream_key("CP_3", "mirror")))
        self.assertLess(left, 1000)
        self.assertLessEqual(int(await redis.command("GET", "ocppproxy:outbox-bytes")), 65536)
        self.assertEqual(len(service.outbox.queue("CP_3", "mirror")), left)
        self.assertEqual(service.outbox.episodes.counts["mirror"], 1000 - left)
        self.assertEqual(alerts, ["mirror"])
        first = (await redis.command("XRANGE", stream_key("CP_3", "mirror"), "-", "+", "COUNT", "1")).split("\n")
        self.assertIn(f"m{1000 - left}", first)

    @async_test
    async def test_absent_stations_are_found(self):
        """Stations with a backlog and no claim are found; a claimed one is not."""
        redis = await self.start_redis()
        service = self.instance(redis, "proxy-a")
        await self.up(service)
        self.owe(service, "CP_4", "mirror", 2)
        self.owe(service, "CP_5", "mirror", 2)
        await self.committed(service)
        await redis.command("SET", "ocppproxy:station:CP_5", "1 proxy-b 1")
        found = []
        service.store.absent(10).addCallback(found.append)
        await self.until(lambda: found)
        self.assertEqual(found[0], (["CP_4"], 0))
        self.owe(service, "CP_6", "mirror", 1)
        await self.committed(service)
        for start in (0, 2):  # a window of two backlogs at a time: CP_4 and CP_5, then CP_6
            service.store.absent(10, start, 2).addCallback(found.append)
        await self.until(lambda: len(found) == 3)
        self.assertEqual(found[1:], [(["CP_4"], 2), (["CP_6"], 0)])

    @async_test
    async def test_redis_away_then_back_moves_the_local_file(self):
        """While Redis is away entries go to the local file; when it returns they move to Redis, in order."""
        redis = await self.start_redis()
        directory = tempfile.mkdtemp(prefix="ocppproxy-outbox-")
        service = self.instance(redis, "proxy-a", directory)
        await self.up(service)
        self.owe(service, "CP_6", "mirror", 3)
        await self.committed(service)
        await redis.kill()
        await self.until(lambda: not service.parent.redis_up)
        self.owe(service, "CP_6", "mirror", 4, start=3)
        await self.until(lambda: service.store.state == "away" and service.store.local.commits > 0)
        self.assertEqual(len(self.logged("outbox: Redis does not take entries")), 1)
        await redis.start()  # empty: no persistence in tests; what this instance held must come back
        await self.up(service)
        self.assertEqual(len(self.logged("Redis takes entries again; 4 moved")), 1)
        entries, _, _ = await self.load(service, "CP_6")
        self.assertEqual([e.message_id for e in entries["mirror"]], ["m3", "m4", "m5", "m6"])
        self.assertEqual(service.store.local.db.load().entries, {})

    @async_test
    async def test_a_frozen_redis_counts_as_away(self):
        """Groups unanswered (Redis frozen): the entries go to the local file; thawed, they move to Redis."""
        redis = await self.start_redis()
        service = self.instance(redis, "proxy-a", reply_timeout=1.0)
        await self.up(service)
        redis.freeze()
        self.addCleanup(lambda: redis.thaw() if redis.process and redis.process.returncode is None else None)
        self.owe(service, "CP_7", "mirror", 5)
        await self.until(lambda: service.store.state == "away" and service.store.local.commits > 0)
        redis.thaw()
        await self.up(service)
        entries, _, _ = await self.load(service, "CP_7")
        self.assertEqual([e.message_id for e in entries["mirror"]], [f"m{n}" for n in range(5)])

    @async_test
    async def test_the_local_file_of_a_previous_run_moves_to_redis(self):
        """An instance that ended while Redis was away: started again, its file's entries go to Redis."""
        redis = await self.start_redis()
        directory = tempfile.mkdtemp(prefix="ocppproxy-outbox-")
        first = self.instance(redis, "proxy-a", directory)
        await self.up(first)
        await redis.kill()
        await self.until(lambda: not first.parent.redis_up)
        first.outbox.station_connected("CP_8", "ocpp2.0.1", True)
        self.owe(first, "CP_8", "mirror", 4)
        await first.parent.stopService().asFuture(asyncio.get_event_loop())
        await redis.start()
        second = self.instance(redis, "proxy-a", directory)
        await self.up(second)
        entries, _, facts = await self.load(second, "CP_8")
        self.assertEqual([e.message_id for e in entries["mirror"]], [f"m{n}" for n in range(4)])
        self.assertEqual(facts, ("ocpp2.0.1", None, True))
        self.assertEqual(len(self.logged("Redis takes entries again; 4 moved")), 1)

    @async_test
    async def test_a_drain_claims_only_a_free_station_and_says_nothing(self):
        """A drain claims a station only if nobody does, and announces nothing (the station did not move there)."""
        redis = await self.start_redis()
        first, second = self.instance(redis, "proxy-a"), self.instance(redis, "proxy-b")
        await self.up(first)
        await self.up(second)
        heard = []
        second.parent.listen_to_claims(heard.append)
        claimed = []
        hold = SimpleNamespace(station_id="CP_9", close=lambda code, reason: None)
        first.parent.claim_absent(hold).addCallback(claimed.append)
        await self.until(lambda: claimed)
        self.assertEqual(claimed, [True])
        self.assertIn(" proxy-a ", await redis.command("GET", station_key("CP_9")))
        second.parent.claim_absent(SimpleNamespace(station_id="CP_9")).addCallback(claimed.append)
        await self.until(lambda: len(claimed) == 2)
        self.assertEqual(claimed[1], False)
        # A connection's claim is announced: heard after anything announced before it.
        first.parent.station_connected(SimpleNamespace(station_id="CP_10"))
        await self.until(lambda: heard)
        self.assertEqual([claim.station for claim in heard], ["CP_10"])

    @async_test
    async def test_max_age_trims_by_minid_and_reports(self):
        """Entries older than max_age are trimmed from their stream, the byte count follows, the drops are reported."""
        redis = await self.start_redis()
        service = self.instance(redis, "proxy-a", max_age=1.0)
        await self.up(service)
        self.owe(service, "CP_11", "mirror", 3)
        await self.committed(service)
        self.assertEqual(await redis.command("XLEN", stream_key("CP_11", "mirror")), "3")

        def trimmed() -> bool:
            service.store.write(("trim",))  # the bounds apply with every group, as the idle trim's does
            return service.outbox.episodes.counts.get("mirror") == 3

        await self.until(trimmed, timeout=10)
        await self.committed(service)
        self.assertEqual(await redis.command("EXISTS", stream_key("CP_11", "mirror")), "0")
        self.assertEqual(await redis.command("GET", "ocppproxy:outbox-bytes"), "0")
        self.assertEqual(await redis.command("ZCARD", BACKLOGS_KEY), "0")
        self.assertEqual(len(service.outbox.queue("CP_11", "mirror")), 0)
