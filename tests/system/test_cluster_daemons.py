"""
Three real instances under ``twistd`` in cluster mode, a real redis-server, a real haproxy
with etc/haproxy.cfg's directives in front, the `ocpp` library's stations and central
systems (issue 15, "Tests"): a station id lands on one instance every time; ``kill -9`` of
an instance in the middle of transactions moves its stations to the others, the secondary
still gets its own transaction ids, and the primary never sees two connections of a
station; one id connected directly to two instances keeps only the newer connection;
the rolling upgrade of docs/howto/cluster.rst through HAProxy's runtime API; redis-server
killed and restarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from datetime import UTC, datetime

from ocpp.v16 import call

from ocppproxy.cluster.claims import parse_claim, station_key
from ocppproxy.cluster.transactions import transactions_key

from ..cluster_site import CHECK_FALL, CHECK_INTERVAL, ConnectionCounting, HAProxy, Instance, boot, connect_through
from ..cluster_site import instance_config as config_text
from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, connect_station, poll_until
from ..redisserver import RedisServer, RedisTestMixin, free_port

# How long a test station waits before it tries again, as a real one does after losing its connection.
RETRY_DELAY = 0.5
# What the machine may add on top (three daemons and their peers on two shared cores).
MARGIN = 2.0


def now() -> str:
    return datetime.now(UTC).isoformat()


class ClusterUnderTwistdTests(RedisTestMixin, ProxyTestCase):
    timeout = 45

    async def central(self, interval: int) -> tuple[ConnectionCounting, str]:
        central = ConnectionCounting(interval)
        port = await central.start()
        self.cleanup(central.stop)
        return central, f"ws://127.0.0.1:{port}/ocpp/"

    async def instances(
        self, redis: RedisServer, primary_urls: list[str], secondary_url=None, fixed_ports: bool = False
    ) -> list[Instance]:
        """
        One started instance per primary URL, proxy-a, proxy-b...; started side by side.
        With C{fixed_ports}, each restarts on the ports it had (C{instance.config_path}).
        """
        started = []
        for index, primary_url in enumerate(primary_urls):
            instance = Instance(f"proxy-{'abc'[index]}")
            ports = (free_port(), free_port()) if fixed_ports else (0, 0)
            path = instance.config_path = os.path.abspath(self.mktemp() + ".yaml")
            with open(path, "w", encoding="utf-8") as out:
                out.write(config_text(instance.name, redis.url, primary_url, secondary_url, *ports))
            self.cleanup(instance.stop)
            started.append((instance, path))
        await asyncio.gather(*(instance.start(path) for instance, path in started))
        return [instance for instance, _ in started]

    async def haproxy(self, instances: list[Instance], runtime_api: bool = False) -> HAProxy:
        haproxy = HAProxy()
        self.cleanup(haproxy.stop)
        admin_socket = None
        if runtime_api:
            # A short path: a unix socket's path is limited to 107 bytes.
            directory = tempfile.mkdtemp(prefix="ocppproxy-haproxy-")
            self.addCleanup(shutil.rmtree, directory, True)
            admin_socket = os.path.join(directory, "admin.sock")
        await haproxy.start(os.path.abspath(self.mktemp() + ".cfg"), instances, admin_socket)
        return haproxy

    async def holder(self, redis: RedisServer, station_id: str, not_on: str | None = None) -> str:
        """The instance whose claim on C{station_id} Redis holds (other than C{not_on}), waiting for it (bounded)."""
        value = await poll_until(
            lambda: redis.command("GET", station_key(station_id)),
            lambda value: value and parse_claim(station_id, value).instance != not_on,
            lambda value: f"{station_id} is claimed by {value!r}",
        )
        return parse_claim(station_id, value).instance

    @async_test
    async def test_a_station_id_lands_on_one_instance_every_time(self):
        """Through HAProxy, each of 12 ids reaches the same instance on each of 3 connections, and all 3 get some."""
        redis = await self.start_redis()
        centrals = [await self.central(interval) for interval in (100, 200, 300)]
        instances = await self.instances(redis, [url for _, url in centrals])
        haproxy = await self.haproxy(instances)
        landed = {}
        for number in range(12):
            station_id = f"CP_{number}"
            intervals = set()
            for _ in range(3):
                station, websocket = await connect_through(haproxy.base, station_id, RETRY_DELAY)
                answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
                intervals.add(answer.interval)
                await websocket.close()
            landed[station_id] = intervals
        self.assertEqual({sid: ids for sid, ids in landed.items() if len(ids) != 1}, {})
        self.assertEqual(set().union(*landed.values()), {100, 200, 300})

    @async_test
    async def test_kill_9_of_an_instance_in_the_middle_of_transactions(self):
        """
        Nine stations charging through HAProxy; the instance holding the most is killed
        (SIGKILL): its stations are back through the others within their retry delay plus
        HAProxy's check interval, their StopTransactions reach the secondary with the
        secondary's ids, the primary never had two connections of one station open, and
        the stations of the other instances were not disturbed.
        """
        redis = await self.start_redis()
        primary, primary_url = await self.central(100)
        secondary, secondary_url = await self.central(200)
        instances = await self.instances(redis, [primary_url] * 3, secondary_url)
        haproxy = await self.haproxy(instances)
        stations, where = {}, {}
        for number in range(9):
            station_id, connector = f"CP_{number}", number + 1
            station, websocket = await connect_through(haproxy.base, station_id, RETRY_DELAY)
            self.cleanup(websocket.close)
            await boot(station)
            started = await station.call(
                call.StartTransaction(connector_id=connector, id_tag="TAG", meter_start=0, timestamp=now())
            )
            self.assertEqual(started.transaction_id, 100 + connector)
            stations[station_id] = (station, websocket, connector)
            where[station_id] = await self.holder(redis, station_id)
        for station_id in stations:
            # Stored before the crash: a pair in flight when an instance dies is lost with it.
            await self.until_stored(redis, station_id)
        victim = max(instances, key=lambda instance: list(where.values()).count(instance.name))
        moving = [station_id for station_id in stations if where[station_id] == victim.name]
        staying = [station_id for station_id in stations if station_id not in moving]
        self.assertGreaterEqual(len(moving), 3)

        loop = asyncio.get_event_loop()
        await victim.kill()
        killed_at = loop.time()

        async def come_back(station_id: str):
            _, websocket, connector = stations[station_id]
            await asyncio.wait_for(websocket.wait_closed(), WAIT)
            await asyncio.sleep(RETRY_DELAY)
            station, websocket = await connect_through(haproxy.base, station_id, RETRY_DELAY)
            self.cleanup(websocket.close)
            await boot(station)
            stations[station_id] = (station, websocket, connector)

        await asyncio.gather(*(come_back(station_id) for station_id in moving))
        back_after = loop.time() - killed_at
        bound = RETRY_DELAY + CHECK_INTERVAL * CHECK_FALL + MARGIN
        self.assertLess(back_after, bound, f"{len(moving)} stations back after {back_after:.2f} s")
        for station_id in moving:
            self.assertNotEqual(await self.holder(redis, station_id, not_on=victim.name), victim.name)

        for station_id in moving:
            station, _, connector = stations[station_id]
            await station.call(call.StopTransaction(meter_stop=10, timestamp=now(), transaction_id=100 + connector))
        await self.until(lambda: all(secondary.received(sid, "StopTransaction") for sid in moving), timeout=WAIT)
        for station_id in moving:
            connector = stations[station_id][2]
            self.assertEqual(
                [body["transactionId"] for body in secondary.received(station_id, "StopTransaction")],
                [200 + connector],
            )
            self.assertEqual(
                [body["transactionId"] for body in primary.received(station_id, "StopTransaction")],
                [100 + connector],
            )
        self.assertEqual({sid: primary.most_open[sid] for sid in stations}, dict.fromkeys(stations, 1))
        self.assertEqual({sid: secondary.most_open[sid] for sid in stations}, dict.fromkeys(stations, 1))
        self.assertEqual({sid: stations[sid][1].close_code for sid in staying}, dict.fromkeys(staying))
        self.assertEqual(
            {sid: len([c for c in primary.connections if c.path.endswith("/" + sid)]) for sid in staying},
            dict.fromkeys(staying, 1),
        )

    async def until_stored(self, redis: RedisServer, station_id: str) -> None:
        await poll_until(
            lambda: redis.command("HLEN", transactions_key(station_id)),
            lambda count: count == "1",
            lambda _: f"the transaction ids of {station_id} never reached Redis",
        )

    @async_test
    async def test_one_id_connected_directly_to_two_instances(self):
        """CP_D on proxy-a, then on proxy-b, with no HAProxy between: proxy-a closes its connection with 4000."""
        redis = await self.start_redis()
        primary, primary_url = await self.central(100)
        first, second, _ = await self.instances(redis, [primary_url] * 3)
        station, older, _ = await connect_station(f"ws://127.0.0.1:{first.port}/", "CP_D")
        self.cleanup(older.close)
        await boot(station)
        self.assertEqual(await self.holder(redis, "CP_D"), "proxy-a")
        station, newer, _ = await connect_station(f"ws://127.0.0.1:{second.port}/", "CP_D")
        self.cleanup(newer.close)
        await asyncio.wait_for(older.wait_closed(), WAIT)
        self.assertEqual(older.close_code, 4000)
        await boot(station)
        self.assertEqual(await self.holder(redis, "CP_D", not_on="proxy-a"), "proxy-b")
        await self.until(lambda: primary.open_now["CP_D"] == 1, timeout=WAIT)
        self.assertIsNone(newer.close_code)
        self.assertTrue(first.logged("station CP_D: new connection on instance proxy-b replaces this one"))

    @async_test
    async def test_rolling_upgrade_of_one_instance(self):
        """
        The docs' steps (docs/howto/cluster.rst): proxy-a drained through HAProxy's runtime API, stopped with
        SIGTERM (exit 0, its stations closed with 1001 come back through the others, whose
        own stations see nothing), started again on its ports and set ready: a station id
        of proxy-a's that connects anew lands on proxy-a again.
        """
        redis = await self.start_redis()
        primary, primary_url = await self.central(100)
        instances = await self.instances(redis, [primary_url] * 3, fixed_ports=True)
        haproxy = await self.haproxy(instances, runtime_api=True)
        upgraded = instances[0]
        stations, where = {}, {}
        for number in range(9):
            station_id = f"CP_{number}"
            station, websocket = await connect_through(haproxy.base, station_id, RETRY_DELAY)
            self.cleanup(websocket.close)
            await boot(station)
            stations[station_id] = websocket
            where[station_id] = await self.holder(redis, station_id)
        moving = [station_id for station_id in stations if where[station_id] == upgraded.name]
        staying = [station_id for station_id in stations if station_id not in moving]
        self.assertTrue(moving and staying, where)

        self.assertEqual(await haproxy.runtime(f"set server ocppproxy/{upgraded.name} state drain"), "")
        await upgraded.stop()
        self.assertEqual(upgraded.process.returncode, 0)
        for station_id in moving:
            self.assertEqual(stations[station_id].close_code, 1001)
            station, websocket = await connect_through(haproxy.base, station_id, RETRY_DELAY)
            self.cleanup(websocket.close)
            await boot(station)
            stations[station_id] = websocket
            self.assertNotEqual(await self.holder(redis, station_id, not_on=upgraded.name), upgraded.name)
        self.assertEqual({sid: stations[sid].close_code for sid in staying}, dict.fromkeys(staying))

        await upgraded.start(upgraded.config_path)
        self.assertEqual(await haproxy.runtime(f"set server ocppproxy/{upgraded.name} state ready"), "")
        returning = moving[0]
        await stations[returning].close()
        loop = asyncio.get_event_loop()
        deadline = loop.time() + CHECK_INTERVAL * CHECK_FALL + MARGIN
        while True:
            station, websocket = await connect_through(haproxy.base, returning, RETRY_DELAY)
            await boot(station)
            if await self.holder(redis, returning) == upgraded.name:
                break
            await websocket.close()
            self.assertLess(loop.time(), deadline, f"{returning} does not reach {upgraded.name} again")
            await asyncio.sleep(RETRY_DELAY)
        self.cleanup(websocket.close)
        self.assertEqual({sid: stations[sid].close_code for sid in staying}, dict.fromkeys(staying))

    @async_test
    async def test_redis_killed_mid_run_and_restarted(self):
        """
        redis-server killed under six stations: every instance says degraded (200) and
        relays on, transactions start; restarted: /health is ok again, and Redis has every
        station's claim, naming its instance, and the transaction ids started meanwhile.
        """
        redis = await self.start_redis()
        primary, primary_url = await self.central(100)
        secondary, secondary_url = await self.central(200)
        instances = await self.instances(redis, [primary_url] * 3, secondary_url)
        haproxy = await self.haproxy(instances)
        stations, where = {}, {}
        for number in range(6):
            station_id = f"CP_{number}"
            station, websocket = await connect_through(haproxy.base, station_id, RETRY_DELAY)
            self.cleanup(websocket.close)
            await boot(station)
            stations[station_id] = station
            where[station_id] = await self.holder(redis, station_id)
        await redis.kill()
        for instance in instances:
            await self.until_health(instance, "ok, degraded: Redis unreachable, relaying with local state\n")
        for number, (station_id, station) in enumerate(stations.items()):
            started = await station.call(
                call.StartTransaction(connector_id=number + 1, id_tag="TAG", meter_start=0, timestamp=now())
            )
            self.assertEqual(started.transaction_id, 101 + number)
        await redis.start()
        for instance in instances:
            await self.until_health(instance, "ok\n")
        for number, station_id in enumerate(stations):
            self.assertEqual(await self.holder(redis, station_id), where[station_id])
            await self.until_stored(redis, station_id)
            stored = await redis.command("HGET", transactions_key(station_id), str(101 + number))
            self.assertEqual(json.loads(stored), [{"primary": 101 + number, "secondary": 201 + number}])

    async def until_health(self, instance: Instance, text: str) -> None:
        url = f"http://127.0.0.1:{instance.status_port}/health"
        await poll_until(
            lambda: asyncio.to_thread(http_get, url),
            lambda answer: answer == (200, text),
            lambda answer: f"{instance.name}'s /health answers {answer}",
            interval=0.1,
        )


def http_get(url: str) -> tuple[int, str]:
    """GET C{url} (blocking: run it in a thread); its status and text, also for an error status."""
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
