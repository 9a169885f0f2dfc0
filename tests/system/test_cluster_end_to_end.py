"""
Cluster mode end to end: two real instances (the daemon's whole service tree each) sharing
one real redis-server, the `ocpp` library's charge point and central system on 127.0.0.1.
"""

from __future__ import annotations

import asyncio

import treq
import websockets
from ocpp.v16 import call
from twisted.internet.defer import Deferred

from ocppproxy.cluster.claims import parse_claim, station_key

from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station, poll_until
from ..redisserver import RedisServer


class Instance:
    """One started instance: its service tree, the ws:// base URL stations use, its status URL."""

    def __init__(self, services, base: str, status: str) -> None:
        self.services = services
        self.proxy = services.getServiceNamed("proxy")
        self.base = base
        self.status = status


class ClusterEndToEndTests(ProxyTestCase):
    timeout = 30

    async def asyncSetUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.stop)
        await self.redis.start()
        self.primary = CentralSystem(100)
        port = await self.primary.start()
        self.addCleanup(lambda: asyncio.ensure_future(self.primary.stop()))
        self.primary_url = f"ws://127.0.0.1:{port}/ocpp/"

    async def instance(self, name: str) -> Instance:
        services = self.start_tree(
            {
                "listen": "tcp:port=0:interface=127.0.0.1",
                "primary_url": self.primary_url,
                "reconnect": {"initial_delay": 0.2, "max_delay": 1.0},
                "status": {"listen": "tcp:port=0:interface=127.0.0.1"},
                "cluster": {"redis_url": self.redis.url, "instance": name, "ownership_ttl": 3},
            }
        )
        loop = asyncio.get_event_loop()
        port = await Deferred.asFuture(services.getServiceNamed("proxy").listening, loop)
        status_port = await Deferred.asFuture(services.getServiceNamed("status").listening, loop)
        return Instance(
            services, f"ws://127.0.0.1:{port.getHost().port}/", f"http://127.0.0.1:{status_port.getHost().port}"
        )

    async def station(self, instance: Instance, station_id: str):
        station, websocket, _ = await connect_station(instance.base, station_id)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        return station, websocket

    async def get(self, url: str) -> tuple[int, str]:
        loop = asyncio.get_event_loop()
        response = await Deferred.asFuture(treq.get(url, persistent=False), loop)
        return response.code, (await Deferred.asFuture(response.text(), loop))

    async def claim_of(self, station_id: str):
        value = await self.redis.command("GET", station_key(station_id))
        return parse_claim(station_id, value) if value else None

    async def until_claimed(self, station_id: str, instance: str) -> None:
        await poll_until(
            lambda: self.claim_of(station_id),
            lambda claim: getattr(claim, "instance", None) == instance,
            lambda _: f"{station_id} never claimed by {instance}",
        )

    async def until_health(self, instance: Instance, text: str) -> None:
        await poll_until(
            lambda: self.get(instance.status + "/health"),
            lambda answer: answer == (200, text),
            lambda answer: f"/health still answers {answer}",
            interval=0.05,
        )

    @async_test
    async def test_same_station_on_another_instance_replaces_the_first(self):
        """
        CP_1 on instance A, then on instance B: A closes its connection with 4000 and its
        primary link; the primary sees one live connection, B's; both instances say who they are.
        """
        await self.asyncSetUp()
        a, b = await self.instance("proxy-a"), await self.instance("proxy-b")
        await self.until(lambda: a.services.getServiceNamed("cluster").redis_up, timeout=WAIT)
        await self.until(lambda: b.services.getServiceNamed("cluster").redis_up, timeout=WAIT)
        on_a, websocket_a = await self.station(a, "CP_1")
        await on_a.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await self.until_claimed("CP_1", "proxy-a")
        on_b, websocket_b = await self.station(b, "CP_1")
        await asyncio.wait_for(websocket_a.wait_closed(), WAIT)
        self.assertEqual(websocket_a.close_code, 4000)
        first, second = await self.primary.wait_connections(2)
        await asyncio.wait_for(first.closed.wait(), WAIT)
        answer = await on_b.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        self.assertEqual([c for c in self.primary.connections if not c.closed.is_set()], [second])
        await self.until_claimed("CP_1", "proxy-b")
        self.assertNotIn("CP_1", a.proxy.sessions)
        self.assertEqual(websocket_b.close_code, None)
        _, listing_a = await self.get(a.status + "/stations")
        _, listing_b = await self.get(b.status + "/stations")
        self.assertIn('"instance": "proxy-a"', listing_a)
        self.assertIn('"instance": "proxy-b"', listing_b)
        self.assertIn('"CP_1"', listing_b)
        self.assertTrue(self.logged("station CP_1: new connection on instance proxy-b replaces this one"))

    @async_test
    async def test_redis_killed_relaying_goes_on_and_claims_come_back(self):
        """
        redis-server killed: the station's calls are still answered, /health says degraded
        (200) and the metric is 0; restarted: /health is ok again and every local claim,
        also of a station that connected meanwhile, is back in Redis.
        """
        await self.asyncSetUp()
        a = await self.instance("proxy-a")
        await self.until_health(a, "ok\n")
        station, _ = await self.station(a, "CP_1")
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await self.until_claimed("CP_1", "proxy-a")
        await self.redis.kill()
        await self.until_health(a, "ok, degraded: Redis unreachable, relaying with local state\n")
        self.assertIn('ocppproxy_cluster_redis_up{instance="proxy-a"} 0.0', (await self.get(a.status + "/metrics"))[1])
        answer = await asyncio.wait_for(station.call(call.Heartbeat()), WAIT)
        self.assertTrue(answer.current_time)
        late, _ = await self.station(a, "CP_2")
        await late.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await self.redis.start()
        await self.until_health(a, "ok\n")
        await self.until_claimed("CP_1", "proxy-a")
        await self.until_claimed("CP_2", "proxy-a")
        self.assertIn('ocppproxy_cluster_redis_up{instance="proxy-a"} 1.0', (await self.get(a.status + "/metrics"))[1])
        self.assertEqual(len(self.logged("is unreachable")), 1)
        self.assertEqual(len(self.logged("is reachable again")), 1)

    @async_test
    async def test_frozen_redis_delays_no_frame(self):
        """
        A Redis that answers nothing (SIGSTOP): a station connects and its calls are
        answered as fast as ever, with its claim still waiting for Redis.
        """
        await self.asyncSetUp()
        a = await self.instance("proxy-a")
        await self.until_health(a, "ok\n")
        self.redis.freeze()
        self.addCleanup(self.redis.thaw)
        loop = asyncio.get_event_loop()
        started = loop.time()
        station, _ = await self.station(a, "CP_1")
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        for _ in range(5):
            await station.call(call.Heartbeat())
        self.assertLess(loop.time() - started, 1.0)
        self.assertIn("CP_1", a.proxy.sessions)

    @async_test
    async def test_two_connections_made_while_redis_was_away_converge(self):
        """
        With Redis away, CP_1 connects to A and then to B; once Redis is back, the claims
        written back leave exactly one of the two connections open, and Redis names its instance.
        """
        await self.asyncSetUp()
        a, b = await self.instance("proxy-a"), await self.instance("proxy-b")
        await self.until_health(a, "ok\n")
        await self.until_health(b, "ok\n")
        await self.redis.kill()
        await self.until_health(a, "ok, degraded: Redis unreachable, relaying with local state\n")
        await self.until_health(b, "ok, degraded: Redis unreachable, relaying with local state\n")
        _, websocket_a = await self.station(a, "CP_1")
        _, websocket_b = await self.station(b, "CP_1")
        await self.until(lambda: "CP_1" in a.proxy.sessions and "CP_1" in b.proxy.sessions, timeout=WAIT)
        await self.redis.start()
        closed, _ = await asyncio.wait(
            [asyncio.ensure_future(ws.wait_closed()) for ws in (websocket_a, websocket_b)],
            timeout=WAIT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        self.assertEqual(len(closed), 1)
        survivor = "proxy-b" if websocket_a.close_code == 4000 else "proxy-a"
        self.assertEqual(sorted([websocket_a.close_code, websocket_b.close_code], key=str), [4000, None])
        await self.until_claimed("CP_1", survivor)
        with self.assertRaises(websockets.ConnectionClosed):
            await (websocket_a if survivor == "proxy-b" else websocket_b).send('[2,"x","Heartbeat",{}]')
