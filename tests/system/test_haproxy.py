"""
etc/haproxy.cfg: valid for the real haproxy, and, run with its own directives in front of
two real instances, it sends a station id to the same instance every time.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess

import websockets
from ocpp.v16 import call
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station
from ..redisserver import free_port

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "etc", "haproxy.cfg")


def haproxy_binary() -> str:
    binary = shutil.which("haproxy")
    if binary is None:
        raise SkipTest("haproxy is not installed (Debian: apt-get install haproxy)")
    return binary


def for_test(text: str, listen_port: int, servers: list[tuple[str, int, int]]) -> str:
    """
    The example with what only a real site has replaced: HAProxy listens on 127.0.0.1,
    logs nowhere, has no runtime socket, takes fewer connections (a test's descriptor
    limit), and its servers are C{(name, port, status port)}.
    """
    text = re.sub(r"(?m)^    (log /dev/log|stats socket) .*\n", "", text)
    text = re.sub(r"(?m)^    maxconn \d+$", "    maxconn 1000", text)
    text = re.sub(r"(?m)^    bind :9000$", f"    bind 127.0.0.1:{listen_port}", text)
    text = re.sub(r"(?m)^    server .*\n", "", text)
    lines = "".join(f"    server {name} 127.0.0.1:{port} port {status}\n" for name, port, status in servers)
    return text.rstrip("\n") + "\n" + lines


class ExampleConfigTests(SynchronousTestCase):
    def test_haproxy_accepts_it(self):
        """haproxy -c says the shipped example is valid."""
        checked = subprocess.run(
            [haproxy_binary(), "-c", "-f", EXAMPLE], capture_output=True, text=True, timeout=10, check=False
        )
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)

    def test_hashes_on_the_station_id(self):
        with open(EXAMPLE, encoding="utf-8") as stream:
            text = stream.read()
        for directive in (
            "balance hash path,field(-1,/)",
            "hash-type consistent",
            "timeout tunnel",
            "option forwardfor",
        ):
            self.assertIn(f"    {directive}", text)
        self.assertIn("option httpchk GET /health", text)


class RoutingTests(ProxyTestCase):
    timeout = 30

    async def instance(self, interval: int) -> tuple[int, int, object]:
        """An instance whose primary tags its BootNotification answers with C{interval}: its ports and services."""
        central = CentralSystem(interval)
        central_port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        services = self.start_tree(
            {
                "listen": "tcp:port=0:interface=127.0.0.1",
                "primary_url": f"ws://127.0.0.1:{central_port}/ocpp/",
                "status": {"listen": "tcp:port=0:interface=127.0.0.1"},
            }
        )
        loop = asyncio.get_event_loop()
        port = await Deferred.asFuture(services.getServiceNamed("proxy").listening, loop)
        status = await Deferred.asFuture(services.getServiceNamed("status").listening, loop)
        return port.getHost().port, status.getHost().port, services

    def write_config(self, listen_port: int, servers) -> str:
        path = os.path.abspath(self.mktemp() + ".cfg")
        with open(EXAMPLE, encoding="utf-8") as stream:
            text = for_test(stream.read(), listen_port, servers)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        return path

    async def haproxy(self, servers) -> str:
        """HAProxy in the foreground with the example's directives in front of C{servers}; the ws:// base URL."""
        listen_port = free_port()
        path = self.write_config(listen_port, servers)
        process = await asyncio.create_subprocess_exec(
            haproxy_binary(), "-db", "-f", path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )

        async def stop() -> None:
            process.kill()
            await asyncio.wait_for(process.wait(), WAIT)

        self.addCleanup(lambda: Deferred.fromFuture(asyncio.ensure_future(stop())))
        return f"ws://127.0.0.1:{listen_port}/"

    async def boot_through(self, base: str, station_id: str) -> int:
        """Connect C{station_id} through HAProxy (retrying while it starts), boot, leave; the answer's interval."""
        loop = asyncio.get_event_loop()
        deadline = loop.time() + WAIT
        while True:
            try:
                station, websocket, reader = await connect_station(base, station_id)
                break
            except (OSError, websockets.InvalidHandshake):
                # Not listening yet, or no server up yet (503).
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)
        try:
            answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        finally:
            await websocket.close()
            await asyncio.wait_for(reader, WAIT)
        return answer.interval

    @async_test
    async def test_a_station_id_always_lands_on_the_same_instance(self):
        """Through the example's hashing, each id reaches one instance every time, and both instances get some."""
        a_port, a_status, _ = await self.instance(100)
        b_port, b_status, _ = await self.instance(200)
        base = await self.haproxy([("proxy-a", a_port, a_status), ("proxy-b", b_port, b_status)])
        landed = {}
        for number in range(12):
            station_id = f"CP_{number}"
            landed[station_id] = {await self.boot_through(base, station_id) for _ in range(3)}
        self.assertEqual([ids for ids in landed.values() if len(ids) != 1], [])
        self.assertEqual(set().union(*landed.values()), {100, 200})

    @async_test
    async def test_stations_of_a_stopping_instance_come_back_through_the_other(self):
        """
        An instance shutting down closes its stations (1001); reconnecting through HAProxy,
        they reach the other instance within seconds (redispatch, then the /health check).
        """
        a_port, a_status, a_services = await self.instance(100)
        b_port, b_status, _ = await self.instance(200)
        base = await self.haproxy([("proxy-a", a_port, a_status), ("proxy-b", b_port, b_status)])
        station_id = None
        for number in range(40):
            if await self.boot_through(base, f"CP_{number}") == 100:
                station_id = f"CP_{number}"
                break
        station, websocket, _ = await connect_station(base, station_id)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        stopping = a_services.stopService()
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1001)
        await Deferred.asFuture(stopping, asyncio.get_event_loop())
        loop = asyncio.get_event_loop()
        started = loop.time()
        self.assertEqual(await self.boot_through(base, station_id), 200)
        self.assertLess(loop.time() - started, 5)
