"""
Cluster mode's API (issue 26): two instances under ``twistd`` sharing a real redis-server;
a CALL sent to the instance that does not hold the station is passed through Redis to
the one that does, and its answer comes back; with Redis away, 503.
"""

from __future__ import annotations

import asyncio
import json
import os

from ocpp.v16 import call

from ..cluster_site import Instance
from ..cluster_site import instance_config as config_text
from ..e2e import ProxyTestCase, async_test
from ..peers import CentralSystem, poll_until
from ..redisserver import RedisServer, RedisTestMixin, free_port
from .test_api_end_to_end import OPERATE, SlowStation, http, sha
from ocppproxy.cluster.claims import parse_claim, station_key


class ApiClusterTests(RedisTestMixin, ProxyTestCase):
    timeout = 60

    async def holder(self, redis: RedisServer, station_id: str) -> str:
        value = await poll_until(
            lambda: redis.command("GET", station_key(station_id)),
            lambda value: bool(value),
            lambda value: f"{station_id} is claimed by {value!r}",
        )
        return parse_claim(station_id, value).instance

    @async_test
    async def test_call_through_the_instance_that_does_not_hold_the_station(self):
        """B's API passes the CALL to A, which holds the station; the answer comes back; Redis away: 503."""
        import websockets

        redis = await self.start_redis()
        central = CentralSystem(100)
        central_port = await central.start()
        self.cleanup(central.stop)
        primary_url = f"ws://127.0.0.1:{central_port}/ocpp/"
        instances, api_ports = [], []
        for name in ("proxy-a", "proxy-b"):
            instance = Instance(name)
            api_port = free_port()
            path = os.path.abspath(self.mktemp() + ".yaml")
            with open(path, "w", encoding="utf-8") as out:
                out.write(config_text(name, redis.url, primary_url, None))
                out.write(
                    f'api: {{listen: "tcp:port={api_port}:interface=127.0.0.1", '
                    f"tokens: [{{name: ops, sha256: {sha(OPERATE)}, scope: operate}}]}}\n"
                )
            self.cleanup(instance.stop)
            await instance.start(path)
            instances.append(instance)
            api_ports.append(api_port)
        a, b = instances
        websocket = await websockets.connect(f"ws://127.0.0.1:{a.port}/CP_X", subprotocols=["ocpp1.6"])
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        station = SlowStation("CP_X", websocket, response_timeout=10)
        reader = asyncio.ensure_future(station.start())
        self.addCleanup(reader.cancel)
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(await self.holder(redis, "CP_X"), "proxy-a")
        body = json.dumps({"action": "TriggerMessage", "payload": {"requestedMessage": "Heartbeat"}}).encode()

        async def through_b():
            return await http(api_ports[1], "POST", "/api/stations/CP_X/call", OPERATE, body)

        status, document = await poll_until(through_b, lambda answer: answer[0] != 503, lambda answer: str(answer))
        self.assertEqual(status, 200, document)
        self.assertEqual(document["result"][2], {"status": "Accepted"})
        (connection,) = await central.wait_connections(1)
        self.assertFalse([frame for frame in connection.session.received if "api-" in json.dumps(frame)])
        status, _ = await http(api_ports[1], "POST", "/api/stations/CP_NOWHERE/call", OPERATE, body)
        self.assertEqual(status, 404)
        # Its details and its history, from the instance that holds it.
        status, document = await http(api_ports[1], "GET", "/api/stations/CP_X", OPERATE)
        self.assertEqual((status, document.get("id"), document.get("calls_waiting")), (200, "CP_X", 0), document)
        status, document = await http(api_ports[1], "GET", "/api/stations/CP_X/frames", OPERATE)
        self.assertEqual(status, 200, document)
        self.assertIn("BootNotification", json.dumps(document))
        # Followed through B: a frame passing at A reaches B's stream, within a second.
        reader_b, writer_b = await asyncio.open_connection("127.0.0.1", api_ports[1])
        self.addCleanup(writer_b.close)
        writer_b.write(
            f"GET /api/stations/CP_X/frames?follow=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATE}\r\n"
            "Last-Event-ID: 0\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader_b.readuntil(b"\r\n\r\n"), 10)
        self.assertIn(b" 200 ", head)
        seen = b""

        async def until(text: bytes):
            nonlocal seen
            while text not in seen:
                seen += await reader_b.read(4096)

        await asyncio.wait_for(until(b"BootNotification"), 10)
        loop = asyncio.get_event_loop()
        sent = loop.time()
        await station.call(call.Heartbeat())
        await asyncio.wait_for(until(b"Heartbeat"), 1.0)
        self.assertLess(loop.time() - sent, 1.0)
        writer_b.close()
        # Disconnected through B: A closes it.
        status, document = await http(api_ports[1], "POST", "/api/stations/CP_X/disconnect", OPERATE, b'{"code": 1012}')
        self.assertEqual(status, 200, document)
        await asyncio.wait_for(websocket.wait_closed(), 10)
        self.assertEqual(websocket.close_code, 1012)
        await redis.kill()

        async def redis_away():
            return await http(api_ports[1], "POST", "/api/stations/CP_X/call", OPERATE, body)

        status, _ = await poll_until(redis_away, lambda answer: answer[0] == 503, lambda answer: str(answer))
