"""
Cluster mode's outbox end to end (issue 25, "Tests and proof"): three instances under
``twistd`` and one redis-server, the `ocpp` library's peers. The mirror is down while a
station runs a whole 1.6 transaction with many MeterValues on one instance; that instance
is killed (``kill -9``); the station stays away; the mirror comes back and gets every
frame, in order, with its own transaction ids, from another instance's drain link, which
is closed afterwards. The backlog follows a station that moves to another instance: its
live frames there queue behind it. A station connecting while another instance drains its
backlog replaces the drain, which closes first.
"""

from __future__ import annotations

import asyncio
import os

from ocpp.v16 import call

from ocppproxy.core.outbox_streams import BACKLOGS_KEY, stream_key

from ..cluster_site import Instance
from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station, poll_until
from ..redisserver import RedisTestMixin, free_port
from .test_outbox_end_to_end import (
    METER_VALUES,
    assert_whole_transaction,
    begin_transaction,
    meter_values,
    outbox_config,
)


def config_text(name: str, redis_url: str, primary_port: int, mirror_port: int, directory: str) -> str:
    """An instance: upstream a the primary, m a mirror through the outbox, cluster mode with a short claim TTL."""
    return (
        'listen: "tcp:port=0:interface=127.0.0.1"\n'
        'status: {listen: "tcp:port=0:interface=127.0.0.1"}\n'
        + outbox_config(primary_port, mirror_port, directory)
        + f'cluster: {{redis_url: "{redis_url}", instance: "{name}", ownership_ttl: 3}}\n'
    )


class ClusterOutboxDaemonTests(RedisTestMixin, ProxyTestCase):
    timeout = 120

    async def instances(self, redis, primary_port: int, mirror_port: int) -> list[Instance]:
        started = []
        for name in ("proxy-a", "proxy-b", "proxy-c"):
            instance = Instance(name)
            directory = os.path.abspath(self.mktemp())
            os.makedirs(directory)
            path = os.path.abspath(self.mktemp() + ".yaml")
            with open(path, "w", encoding="utf-8") as out:
                out.write(config_text(name, redis.url, primary_port, mirror_port, directory))
            self.cleanup(instance.stop)
            started.append((instance, path))
        await asyncio.gather(*(instance.start(path) for instance, path in started))
        return [instance for instance, _ in started]

    async def peers(self) -> tuple:
        """Redis, the primary (answers StartTransaction with 101), the mirror (501, not started) and its port."""
        redis = await self.start_redis()
        primary = CentralSystem(100)
        primary_port = await primary.start()
        self.cleanup(primary.stop)
        mirror = CentralSystem(500)
        return redis, primary_port, mirror, free_port()

    async def begin(self, port: int, station_id: str):
        """A station on the instance at C{port}: BootNotification and StartTransaction; returns (station, websocket)."""
        return await begin_transaction(self, f"ws://127.0.0.1:{port}/", station_id)

    @async_test
    async def test_kill_9_of_the_holder_another_instance_drains(self):
        """The holder killed, the station away: one other instance drains its backlog, closes the link, releases it."""
        redis, primary_port, mirror, mirror_port = await self.peers()
        holder, *others = await self.instances(redis, primary_port, mirror_port)
        station, websocket = await self.begin(holder.port, "CP_C")
        await meter_values(station, range(METER_VALUES))
        await station.call(call.StopTransaction(meter_stop=9, timestamp="2026-01-01T01:00:00Z", transaction_id=101))
        total = METER_VALUES + 3
        key = stream_key("CP_C", "m")
        await poll_until(lambda: redis.command("XLEN", key), lambda count: count == str(total),
                         lambda count: f"{count} of {total} entries in Redis")
        await holder.kill()
        await websocket.close()
        # The station stays away; the mirror comes back.
        await mirror.start(mirror_port)
        self.cleanup(mirror.stop)
        (connection,) = await mirror.wait_connections(1)
        await poll_until(lambda: asyncio.sleep(0, len(connection.session.received)), lambda count: count >= total,
                         lambda count: f"the mirror got {count} of {total} frames", timeout=60)
        await asyncio.wait_for(connection.closed.wait(), WAIT)
        self.assertEqual(connection.path, "/mirror/CP_C")
        assert_whole_transaction(self, connection.session.received)
        self.assertEqual(len(mirror.connections), 1)
        drained_by = [instance.name for instance in others if instance.logged("draining it here")]
        self.assertEqual(len(drained_by), 1, drained_by)
        await poll_until(lambda: redis.command("EXISTS", key), lambda found: found == "0",
                         lambda found: "the stream is still in Redis")
        self.assertEqual(await redis.command("ZCARD", BACKLOGS_KEY), "0")
        drainer = next(instance for instance in others if instance.name == drained_by[0])
        await poll_until(lambda: asyncio.sleep(0, drainer.logged("backlog drained; its claim released")),
                         lambda lines: lines, lambda lines: "the drain's claim is not released")

    @async_test
    async def test_the_backlog_follows_the_station_to_another_instance(self):
        """
        A station that moves to another instance while the mirror is down: that instance
        loads its backlog, its live frames queue behind it; the mirror, back, gets the whole
        transaction in order on that instance's link (the station's), and nothing is drained.
        """
        redis, primary_port, mirror, mirror_port = await self.peers()
        first, second, _ = await self.instances(redis, primary_port, mirror_port)
        station, websocket = await self.begin(first.port, "CP_F")
        half = METER_VALUES // 2
        await meter_values(station, range(half))
        key = stream_key("CP_F", "m")
        await poll_until(lambda: redis.command("XLEN", key), lambda count: count == str(half + 2),
                         lambda count: f"{count} of {half + 2} entries in Redis")
        moved, moved_websocket, _ = await connect_station(f"ws://127.0.0.1:{second.port}/", "CP_F")
        self.cleanup(moved_websocket.close)
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        await meter_values(moved, range(half, METER_VALUES))
        await moved.call(call.StopTransaction(meter_stop=9, timestamp="2026-01-01T01:00:00Z", transaction_id=101))
        total = METER_VALUES + 3
        await poll_until(lambda: redis.command("XLEN", key), lambda count: count == str(total),
                         lambda count: f"{count} of {total} entries in Redis")
        await mirror.start(mirror_port)
        self.cleanup(mirror.stop)
        (connection,) = await mirror.wait_connections(1)
        await poll_until(lambda: asyncio.sleep(0, len(connection.session.received)), lambda count: count >= total,
                         lambda count: f"the mirror got {count} of {total} frames", timeout=60)
        assert_whole_transaction(self, connection.session.received[:total])
        self.assertTrue(second.logged("CP_F's backlog loaded from Redis"))
        await poll_until(lambda: redis.command("EXISTS", key), lambda found: found == "0",
                         lambda found: "the stream is still in Redis")
        self.assertFalse(any(instance.logged("draining it here") for instance in (first, second)))
        self.assertEqual(len(mirror.connections), 1)

    @async_test
    async def test_a_station_connecting_elsewhere_replaces_the_drain(self):
        """
        A station that left is drained by some instance (the mirror still down); it connects
        to another instance: the drain closes first, and the mirror, back, gets one
        connection only, the station's, with the whole transaction in order.
        """
        redis, primary_port, mirror, mirror_port = await self.peers()
        instances = await self.instances(redis, primary_port, mirror_port)
        station, websocket = await self.begin(instances[0].port, "CP_D")
        await meter_values(station, range(METER_VALUES))
        await station.call(call.StopTransaction(meter_stop=9, timestamp="2026-01-01T01:00:00Z", transaction_id=101))
        total = METER_VALUES + 3
        key = stream_key("CP_D", "m")
        await poll_until(lambda: redis.command("XLEN", key), lambda count: count == str(total),
                         lambda count: f"{count} of {total} entries in Redis")
        await websocket.close()
        drainer = await poll_until(
            lambda: asyncio.sleep(0, [i for i in instances if i.logged("station CP_D is away: draining its backlog to m")]),
            lambda found: found, lambda found: "no instance drains CP_D", timeout=20,
        )
        (drainer,) = drainer
        elsewhere = next(instance for instance in instances if instance is not drainer)
        _, back_websocket, _ = await connect_station(f"ws://127.0.0.1:{elsewhere.port}/", "CP_D")
        self.cleanup(back_websocket.close)
        await poll_until(lambda: asyncio.sleep(0, drainer.logged("CP_D connected: its drain links close")),
                         lambda lines: lines, lambda lines: "the drain did not close: " + "".join(drainer.lines[-30:]))
        await mirror.start(mirror_port)
        self.cleanup(mirror.stop)
        (connection,) = await mirror.wait_connections(1)
        await poll_until(lambda: asyncio.sleep(0, len(connection.session.received)), lambda count: count >= total,
                         lambda count: f"the mirror got {count} of {total} frames", timeout=60)
        assert_whole_transaction(self, connection.session.received[:total])
        self.assertEqual(len(mirror.connections), 1)
        self.assertTrue(elsewhere.logged("CP_D's backlog loaded from Redis"))

    @async_test
    async def test_redis_frozen_meanwhile_then_the_holder_killed(self):
        """
        Redis stops answering while the station runs its transaction: relaying goes on, the
        entries go to the instance's file; Redis back, they move to it, in order; the
        holder killed, another instance drains the whole transaction to the mirror.
        """
        redis, primary_port, mirror, mirror_port = await self.peers()
        holder, *others = await self.instances(redis, primary_port, mirror_port)
        station, websocket = await self.begin(holder.port, "CP_R")
        redis.freeze()
        self.addCleanup(lambda: redis.thaw() if redis.process and redis.process.returncode is None else None)
        await meter_values(station, range(METER_VALUES))
        await station.call(call.StopTransaction(meter_stop=9, timestamp="2026-01-01T01:00:00Z", transaction_id=101))
        await poll_until(lambda: asyncio.sleep(0, holder.logged("outbox: Redis does not take entries")),
                         lambda lines: lines, lambda lines: "no outage seen", timeout=20)
        redis.thaw()
        await poll_until(lambda: asyncio.sleep(0, holder.logged("outbox: Redis takes entries again")),
                         lambda lines: lines, lambda lines: "the file was not moved to Redis", timeout=20)
        total = METER_VALUES + 3
        key = stream_key("CP_R", "m")
        await poll_until(lambda: redis.command("XLEN", key), lambda count: count == str(total),
                         lambda count: f"{count} of {total} entries in Redis")
        await holder.kill()
        await websocket.close()
        await mirror.start(mirror_port)
        self.cleanup(mirror.stop)
        (connection,) = await mirror.wait_connections(1)
        await poll_until(lambda: asyncio.sleep(0, len(connection.session.received)), lambda count: count >= total,
                         lambda count: f"the mirror got {count} of {total} frames", timeout=60)
        assert_whole_transaction(self, connection.session.received)
        self.assertEqual(len([i for i in others if i.logged("CP_R is away with a backlog")]), 1)
