"""
Cluster mode's outbox end to end (issue 25, "Tests and proof"): three instances under
``twistd`` and one redis-server, the `ocpp` library's peers. The mirror is down while a
station runs a whole 1.6 transaction with many MeterValues on one instance; that instance
is killed (``kill -9``); the station stays away; the mirror comes back and gets every
frame, in order, with its own transaction ids, from another instance's drain link, which
is closed afterwards.
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

METER_VALUES = 200


def config_text(name: str, redis_url: str, primary_port: int, mirror_port: int, directory: str) -> str:
    """An instance: upstream a the primary, m a mirror through the outbox, cluster mode with a short claim TTL."""
    return (
        'listen: "tcp:port=0:interface=127.0.0.1"\n'
        'status: {listen: "tcp:port=0:interface=127.0.0.1"}\n'
        "upstreams:\n"
        f'  a: {{url: "ws://127.0.0.1:{primary_port}/ocpp/"}}\n'
        f'  m: {{url: "ws://127.0.0.1:{mirror_port}/mirror/"}}\n'
        'routes: [{stations: ["*"], primary: a, mirrors: [m]}]\n'
        "reconnect: {initial_delay: 0.2, factor: 2, max_delay: 0.5, max_attempts: 100000}\n"
        f"outbox: {{directory: {directory}}}\n"
        f'cluster: {{redis_url: "{redis_url}", instance: "{name}", ownership_ttl: 3}}\n'
        # The station's MeterValues go as fast as they are answered, over the default 50/s.
        "limits: {max_frames_per_second: 100000, frame_burst: 100000}\n"
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

    @async_test
    async def test_kill_9_of_the_holder_another_instance_drains(self):
        redis = await self.start_redis()
        primary = CentralSystem(100)
        primary_port = await primary.start()
        self.cleanup(primary.stop)
        mirror = CentralSystem(500)  # answers StartTransaction with 501; the primary with 101
        mirror_port = free_port()
        holder, *others = await self.instances(redis, primary_port, mirror_port)
        station, websocket, _ = await connect_station(f"ws://127.0.0.1:{holder.port}/", "CP_C")
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        started = await station.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0,
                                                           timestamp="2026-01-01T00:00:00Z"))
        self.assertEqual(started.transaction_id, 101)
        for index in range(METER_VALUES):
            await station.call(call.MeterValues(connector_id=1, transaction_id=101, meter_value=[
                {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": str(index)}]}]))
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
        frames = connection.session.received
        self.assertEqual(connection.path, "/mirror/CP_C")
        self.assertEqual([frame[2] for frame in frames],
                         ["BootNotification", "StartTransaction"] + ["MeterValues"] * METER_VALUES + ["StopTransaction"])
        self.assertEqual([frame[3]["meterValue"][0]["sampledValue"][0]["value"] for frame in frames[2:-1]],
                         [str(index) for index in range(METER_VALUES)])
        self.assertEqual({frame[3]["transactionId"] for frame in frames[2:]}, {501})
        self.assertEqual(len(mirror.connections), 1)
        drained_by = [instance.name for instance in others if instance.logged("draining it here")]
        self.assertEqual(len(drained_by), 1, drained_by)
        await poll_until(lambda: redis.command("EXISTS", key), lambda found: found == "0",
                         lambda found: "the stream is still in Redis")
        self.assertEqual(await redis.command("ZCARD", BACKLOGS_KEY), "0")
        drainer = next(instance for instance in others if instance.name == drained_by[0])
        await poll_until(lambda: asyncio.sleep(0, drainer.logged("backlog drained; its claim released")),
                         lambda lines: lines, lambda lines: "the drain's claim is not released")
