"""
The OCPP 1.6 transaction ids for the secondary, shared through a real redis-server: a
transaction started through one instance and stopped through another still reaches the
secondary with the secondary's own id, also when Redis was away while it started.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from ocpp.v16 import call
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from ocppproxy.cluster.service import ClusterService
from ocppproxy.cluster.transactions import parse_pairs, transactions_key
from ocppproxy.config.model import ClusterConfig
from ocppproxy.core.transactions import TransactionStore

from .e2e import ProxyTestCase, async_test
from .peers import WAIT, CentralSystem, connect_station, poll_until, wait_until
from .redisserver import RedisServer

PRIMARY_INTERVAL, SECONDARY_INTERVAL = 100, 200
# The test central systems give transaction id interval + connector id.
PRIMARY_ID, SECONDARY_ID = PRIMARY_INTERVAL + 1, SECONDARY_INTERVAL + 1


def now() -> str:
    return datetime.now(UTC).isoformat()


class SharedTransactionIdsTests(ProxyTestCase):
    timeout = 30

    async def asyncSetUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.stop)
        await self.redis.start()
        self.primary, self.secondary = CentralSystem(PRIMARY_INTERVAL), CentralSystem(SECONDARY_INTERVAL)
        urls = []
        for central in (self.primary, self.secondary):
            port = await central.start()
            self.addCleanup(lambda central=central: asyncio.ensure_future(central.stop()))
            urls.append(f"ws://127.0.0.1:{port}/ocpp/")
        self.primary_url, self.secondary_url = urls

    async def instance(self, name: str):
        """An instance (the whole service tree) in cluster mode: its ws:// base URL and its cluster service."""
        services = self.start_tree(
            {
                "listen": "tcp:port=0:interface=127.0.0.1",
                "primary_url": self.primary_url,
                "secondary_url": self.secondary_url,
                "cluster": {"redis_url": self.redis.url, "instance": name, "ownership_ttl": 3},
            }
        )
        port = await Deferred.asFuture(services.getServiceNamed("proxy").listening, asyncio.get_event_loop())
        return f"ws://127.0.0.1:{port.getHost().port}/", services.getServiceNamed("cluster")

    async def station(self, base: str, station_id: str = "CP_1"):
        station, websocket, _ = await connect_station(base, station_id)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        return station, websocket

    async def stored_pairs(self, station_id: str = "CP_1") -> dict[int, int]:
        flat = await self.redis.command("HGETALL", transactions_key(station_id))
        return parse_pairs(flat.split("\n")) if flat else {}

    async def until_stored(self, pairs: dict[int, int]) -> None:
        await poll_until(
            self.stored_pairs, lambda stored: stored == pairs, lambda stored: f"Redis holds {stored}, not {pairs}"
        )

    async def start_transaction(self, station) -> int:
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        started = await station.call(
            call.StartTransaction(connector_id=1, id_tag="TAG", meter_start=0, timestamp=now())
        )
        return started.transaction_id

    async def stop_transaction_on_the_secondary(self, station, transaction_id: int) -> list:
        """Stop the transaction; the StopTransaction CALL as the secondary received it."""
        await station.call(call.StopTransaction(meter_stop=10, timestamp=now(), transaction_id=transaction_id))
        connection = self.secondary.connections[-1]

        def stop_call():
            return [
                frame for frame in connection.session.received if frame[:1] == [2] and frame[2] == "StopTransaction"
            ]

        return (await wait_until(stop_call, connection.session.changed))[0]

    @async_test
    async def test_started_through_one_instance_stopped_through_another(self):
        """
        CP_1 starts a transaction through A (Redis keeps primary id -> secondary id with
        an expiry of days), moves to B (A closes it with 4000): its StopTransaction reaches
        the secondary with the secondary's id, the primary with its own, and the pair is gone from Redis.
        """
        await self.asyncSetUp()
        a, cluster_a = await self.instance("proxy-a")
        b, cluster_b = await self.instance("proxy-b")
        await self.until(lambda: cluster_a.redis_up and cluster_b.redis_up, timeout=WAIT)
        on_a, websocket_a = await self.station(a)
        self.assertEqual(await self.start_transaction(on_a), PRIMARY_ID)
        await self.until_stored({PRIMARY_ID: SECONDARY_ID})
        ttl = int(await self.redis.command("TTL", transactions_key("CP_1")))
        self.assertGreater(ttl, 6 * 24 * 3600)
        on_b, _ = await self.station(b)
        await asyncio.wait_for(websocket_a.wait_closed(), WAIT)
        self.assertEqual(websocket_a.close_code, 4000)
        stop = await self.stop_transaction_on_the_secondary(on_b, PRIMARY_ID)
        self.assertEqual(stop[3]["transactionId"], SECONDARY_ID)
        primary_stops = [
            frame
            for frame in self.primary.connections[-1].session.received
            if frame[:1] == [2] and frame[2] == "StopTransaction"
        ]
        self.assertEqual([frame[3]["transactionId"] for frame in primary_stops], [PRIMARY_ID])
        await self.until_stored({})

    @async_test
    async def test_started_while_redis_was_away(self):
        """
        Redis down while CP_1 starts its transaction through A: relaying goes on; once
        Redis is back, A writes the pair back, and the transaction stopped through B
        reaches the secondary with the secondary's id.
        """
        await self.asyncSetUp()
        a, cluster_a = await self.instance("proxy-a")
        b, cluster_b = await self.instance("proxy-b")
        await self.until(lambda: cluster_a.redis_up and cluster_b.redis_up, timeout=WAIT)
        await self.redis.kill()
        await self.until(lambda: not cluster_a.redis_up, timeout=WAIT)
        on_a, websocket_a = await self.station(a)
        self.assertEqual(await self.start_transaction(on_a), PRIMARY_ID)
        await self.redis.start()
        await self.until_stored({PRIMARY_ID: SECONDARY_ID})
        self.assertTrue(self.logged("writing back the transaction ids of 1 stations"))
        await self.until(lambda: cluster_b.redis_up, timeout=WAIT)
        on_b, _ = await self.station(b)
        await asyncio.wait_for(websocket_a.wait_closed(), WAIT)
        stop = await self.stop_transaction_on_the_secondary(on_b, PRIMARY_ID)
        self.assertEqual(stop[3]["transactionId"], SECONDARY_ID)

    @async_test
    async def test_a_frame_that_beats_the_read_is_not_held(self):
        """
        Redis frozen (SIGSTOP) when CP_1 reaches B: its StopTransaction is relayed at once,
        to the primary as always and to the secondary with the primary's id (the pairs
        are not there yet), and a warning names it.
        """
        await self.asyncSetUp()
        a, cluster_a = await self.instance("proxy-a")
        b, cluster_b = await self.instance("proxy-b")
        await self.until(lambda: cluster_a.redis_up and cluster_b.redis_up, timeout=WAIT)
        on_a, websocket_a = await self.station(a)
        await self.start_transaction(on_a)
        await self.until_stored({PRIMARY_ID: SECONDARY_ID})
        await websocket_a.close()
        self.redis.freeze()
        self.addCleanup(self.redis.thaw)
        on_b, _ = await self.station(b)
        loop = asyncio.get_event_loop()
        started = loop.time()
        stop = await self.stop_transaction_on_the_secondary(on_b, PRIMARY_ID)
        self.assertLess(loop.time() - started, 1.0)
        self.assertEqual(stop[3]["transactionId"], PRIMARY_ID)
        self.assertTrue(
            self.logged(f"station CP_1: transaction {PRIMARY_ID} reached the secondary before its ids were read")
        )


class TransactionHashTests(ProxyTestCase):
    timeout = 20

    @async_test
    async def test_each_station_keeps_its_newest_pairs(self):
        """70 transactions of one station: Redis keeps the 64 highest primary ids, and a stopped one is gone."""
        redis = RedisServer()
        self.addCleanup(redis.stop)
        await redis.start()
        cluster = ClusterService(ClusterConfig(redis_url=redis.url, instance="proxy-a"), reactor, lambda *_: None)
        cluster.startService()
        self.addCleanup(cluster.stopService)
        store = cluster.share_transactions(TransactionStore())
        await self.until(lambda: cluster.redis_up, timeout=WAIT)
        for primary in range(1, 71):
            store.remember("CP_1", primary, 1000 + primary)
        store.forget("CP_1", 70)
        expected = {primary: 1000 + primary for primary in range(7, 70)}
        await poll_until(
            lambda: redis.command("HGETALL", transactions_key("CP_1")),
            lambda flat: parse_pairs(flat.split("\n")) == expected,
            lambda flat: f"Redis holds {flat!r}",
        )
