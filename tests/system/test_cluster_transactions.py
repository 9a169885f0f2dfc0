"""
The OCPP 1.6 transaction ids of every upstream, shared through a real redis-server: a
transaction started through one instance and stopped through another still reaches the
secondary with the secondary's own id, also when Redis was away while it started; each
upstream's ids are kept by name, and the hashes of the release before named upstreams
are read and converted.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from ocpp.v16 import call
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from ocppproxy.cluster.service import ClusterService
from ocppproxy.cluster.transactions import legacy_transactions_key, parse_records, records_value, transactions_key
from ocppproxy.config.model import ClusterConfig
from ocppproxy.core.transactions import TransactionStore

from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station, poll_until, wait_until
from ..redisserver import RedisServer

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
        """The secondary's id for each id the station uses, as Redis holds them."""
        return {tx: records[-1]["secondary"] for tx, records in (await stored(self.redis, station_id)).items()}

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
            self.logged(f"station CP_1: transaction {PRIMARY_ID} reached its upstreams before their ids were read")
        )

    @async_test
    async def test_the_hash_of_the_release_before_is_converted(self):
        """
        Redis holds the hash today's release wrote (primary id -> secondary id): CP_1,
        reaching an instance, stops that transaction with the secondary's own id, and the
        old hash is gone.
        """
        await self.asyncSetUp()
        await self.redis.command("HSET", legacy_transactions_key("CP_1"), str(PRIMARY_ID), str(SECONDARY_ID))
        b, cluster_b = await self.instance("proxy-b")
        await self.until(lambda: cluster_b.redis_up, timeout=WAIT)
        on_b, _ = await self.station(b)
        await on_b.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        stop = await self.stop_transaction_on_the_secondary(on_b, PRIMARY_ID)
        self.assertEqual(stop[3]["transactionId"], SECONDARY_ID)
        self.assertEqual(await self.redis.command("EXISTS", legacy_transactions_key("CP_1")), "0")
        await self.until_stored({})


async def stored(redis: RedisServer, station_id: str = "CP_1") -> dict[int, list[dict[str, int]]]:
    """The records Redis holds for C{station_id}, by the id the station uses."""
    flat = await redis.command("HGETALL", transactions_key(station_id))
    return parse_records(flat.split("\n")) if flat else {}


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
        expected = {primary: [{"primary": primary, "secondary": 1000 + primary}] for primary in range(7, 70)}
        await poll_until(lambda: stored(redis), lambda found: found == expected, lambda found: f"Redis holds {found}")

    async def two_instances(self):
        """A redis-server and the transaction stores of two instances on it, once both reach it."""
        redis = RedisServer()
        self.addCleanup(redis.stop)
        await redis.start()
        stores = []
        for name in ("proxy-a", "proxy-b"):
            cluster = ClusterService(ClusterConfig(redis_url=redis.url, instance=name), reactor, lambda *_: None)
            cluster.startService()
            self.addCleanup(cluster.stopService)
            stores.append(cluster.share_transactions(TransactionStore()))
            await self.until(lambda cluster=cluster: cluster.redis_up, timeout=WAIT)
        return redis, stores

    @async_test
    async def test_every_upstream_is_kept_by_name(self):
        """
        A transaction with three upstreams' ids, one of them added later: Redis keeps each
        by name under the station's id; another instance reads them all; once stopped,
        the field is gone.
        """
        redis, (here, there) = await self.two_instances()
        here.started("CP_1", 17, {"csms-a": 17, "analytics": 4})
        here.add_id("CP_1", 17, "csms-b", 903)
        records = [{"analytics": 4, "csms-a": 17, "csms-b": 903}]
        await poll_until(lambda: stored(redis), lambda found: found == {17: records}, lambda f: f"Redis holds {f}")
        self.assertEqual(await redis.command("HGET", transactions_key("CP_1"), "17"), records_value(records))
        there.read("CP_1")
        await self.until(lambda: there.ids("CP_1", 17) == records[0], timeout=WAIT)
        self.assertEqual(there.station_tx("CP_1", "csms-b", 903), 17)
        there.finished("CP_1", 17)
        await poll_until(lambda: stored(redis), lambda found: found == {}, lambda f: f"Redis holds {f}")

    @async_test
    async def test_an_id_open_twice_keeps_both_records(self):
        """After a change of primary one id may be open twice: Redis keeps both, and stopping one leaves the other."""
        redis, (here, there) = await self.two_instances()
        here.started("CP_1", 5, {"csms-a": 5, "csms-b": 71})
        here.started("CP_1", 5, {"csms-b": 5, "csms-a": 88})
        both = [{"csms-a": 5, "csms-b": 71}, {"csms-a": 88, "csms-b": 5}]
        await poll_until(lambda: stored(redis), lambda found: found == {5: both}, lambda f: f"Redis holds {f}")
        there.read("CP_1")
        await self.until(lambda: there.records("CP_1", 5) == both, timeout=WAIT)
        there.finished("CP_1", 5)
        await poll_until(lambda: stored(redis), lambda found: found == {5: both[:1]}, lambda f: f"Redis holds {f}")

    @async_test
    async def test_the_older_hash_is_converted_on_first_read(self):
        """
        The hash of the release before named upstreams (primary id -> secondary id) is read
        as upstreams primary and secondary, written in the new shape and deleted; an id
        the new hash already holds keeps its newer records; a malformed pair is dropped.
        """
        redis, (here, there) = await self.two_instances()
        here.started("CP_1", 102, {"primary": 102, "secondary": 999})
        await poll_until(lambda: stored(redis), lambda found: 102 in found, lambda f: f"Redis holds {f}")
        legacy = legacy_transactions_key("CP_1")
        await redis.command("HSET", legacy, "101", "201", "102", "202", "x", "3")
        there.read("CP_1")
        await self.until(lambda: there.ids("CP_1", 101) is not None, timeout=WAIT)
        self.assertEqual(there.ids("CP_1", 101), {"primary": 101, "secondary": 201})
        self.assertEqual(there.primary_id("CP_1", 201), 101)
        self.assertEqual(there.ids("CP_1", 102), {"primary": 102, "secondary": 999})
        self.assertEqual(await redis.command("EXISTS", legacy), "0")
        self.assertEqual(
            await stored(redis),
            {101: [{"primary": 101, "secondary": 201}], 102: [{"primary": 102, "secondary": 999}]},
        )
        self.assertGreater(int(await redis.command("TTL", transactions_key("CP_1"))), 6 * 24 * 3600)

    def test_malformed_fields_are_skipped(self):
        """parse_records keeps only integer ids whose value is a list of name -> integer mappings."""
        flat = ["1", '[{"a":1}]', "x", '[{"a":1}]', "2", "[]", "3", '[{"a":"1"}]', "4", "nonsense", "5", '[{"a":5}]']
        self.assertEqual(parse_records(flat), {1: [{"a": 1}], 5: [{"a": 5}]})
