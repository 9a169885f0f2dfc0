"""
The durable outbox end to end, through twistd with the `ocpp` library's peers: a mirror
down while a station runs a whole 1.6 transaction with many MeterValues; kill -9; a
restart; the station stays away; the mirror comes back and gets every frame, in order,
with its own transaction ids, on a drain link the proxy closes afterwards. Stations away
while their mirror cannot be reached: one drain link tries it, not one per station, and
every backlog is delivered once it is back.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3

from ocpp.v16 import call

from ..peers import WAIT, CentralSystem, connect_station, poll_until
from ..redisserver import free_port
from .test_daemon import DaemonTestCase, async_test

METER_VALUES = 2000


def stored(path: str) -> int:
    """Entries in the outbox file now (read as any SQLite reader would, beside the daemon)."""
    if not os.path.exists(path):
        return 0
    with sqlite3.connect(path, timeout=5) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def outbox_config(primary_port: int, mirror_port: int, directory: str) -> str:
    """Upstream a the primary, m a mirror through the outbox in C{directory}, quick reconnects, no frame limit."""
    return (
        "upstreams:\n"
        f'  a: {{url: "ws://127.0.0.1:{primary_port}/ocpp/"}}\n'
        f'  m: {{url: "ws://127.0.0.1:{mirror_port}/mirror/"}}\n'
        'routes: [{stations: ["*"], primary: a, mirrors: [m]}]\n'
        "reconnect: {initial_delay: 0.2, factor: 2, max_delay: 0.5, max_attempts: 100000}\n"
        f"outbox: {{directory: {directory}}}\n"
        # The station's 2,000 MeterValues go as fast as they are answered, over the default 50/s.
        "limits: {max_frames_per_second: 100000, frame_burst: 100000}\n"
    )


async def begin_transaction(testcase, url: str, station_id: str):
    """A station at C{url}: BootNotification and StartTransaction (the primary's id 101); returns (station, websocket)."""
    station, websocket, _ = await connect_station(url, station_id)
    await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
    started = await station.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0,
                                                       timestamp="2026-01-01T00:00:00Z"))
    testcase.assertEqual(started.transaction_id, 101)
    return station, websocket


async def meter_values(station, numbers) -> None:
    """The station's MeterValues of transaction 101, one per number, each value the number."""
    for index in numbers:
        await station.call(call.MeterValues(connector_id=1, transaction_id=101, meter_value=[
            {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": str(index)}]}]))


def assert_whole_transaction(testcase, frames: list) -> None:
    """The whole transaction, in order, with the mirror's own transaction id (501)."""
    testcase.assertEqual([frame[2] for frame in frames],
                         ["BootNotification", "StartTransaction"] + ["MeterValues"] * METER_VALUES + ["StopTransaction"])
    testcase.assertEqual([frame[3]["meterValue"][0]["sampledValue"][0]["value"] for frame in frames[2:-1]],
                         [str(index) for index in range(METER_VALUES)])
    testcase.assertEqual({frame[3]["transactionId"] for frame in frames[2:]}, {501})


class OutboxDaemonTests(DaemonTestCase):
    timeout = 180

    @async_test
    async def test_kill_9_restart_station_away_mirror_gets_everything(self):
        primary = CentralSystem(100)
        primary_port = await primary.start()
        self.addCleanup(lambda: asyncio.ensure_future(primary.stop()))
        mirror = CentralSystem(500)  # answers StartTransaction with 501; the primary with 101
        mirror_port = free_port()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = 'listen: "tcp:port=0:interface=127.0.0.1"\n' + outbox_config(primary_port, mirror_port, directory)
        process = await self.run_daemon(config)
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        station, websocket = await begin_transaction(self, f"ws://127.0.0.1:{found.group(1)}/", "CP_O")
        await meter_values(station, range(METER_VALUES))
        await station.call(call.StopTransaction(meter_stop=9, timestamp="2026-01-01T01:00:00Z", transaction_id=101))
        total = METER_VALUES + 3
        path = os.path.join(directory, "outbox.sqlite3")
        await poll_until(lambda: asyncio.sleep(0, stored(path)), lambda count: count == total,
                         lambda count: f"{count} of {total} entries committed")
        process.kill()
        await asyncio.wait_for(process.wait(), WAIT)
        await websocket.close()
        # Restarted; the station stays away; the mirror comes back.
        process = await self.run_daemon(config)
        await self.read_until(process.stdout, r"listening on")
        await mirror.start(mirror_port)
        self.addCleanup(lambda: asyncio.ensure_future(mirror.stop()))
        (connection,) = await mirror.wait_connections(1)
        await poll_until(lambda: asyncio.sleep(0, len(connection.session.received)), lambda count: count >= total,
                         lambda count: f"the mirror got {count} of {total} frames", timeout=60)
        await asyncio.wait_for(connection.closed.wait(), WAIT)
        self.assertEqual(connection.path, "/mirror/CP_O")
        assert_whole_transaction(self, connection.session.received)
        self.assertEqual(len(mirror.connections), 1)
        await poll_until(lambda: asyncio.sleep(0, stored(path)), lambda count: count == 0,
                         lambda count: f"{count} entries left")


class UnreachableMirrorDaemonTests(DaemonTestCase):
    timeout = 120

    @async_test
    async def test_one_drain_link_tries_the_mirror_then_every_backlog_drains(self):
        primary = CentralSystem(100)
        primary_port = await primary.start()
        self.addCleanup(lambda: asyncio.ensure_future(primary.stop()))
        attempts = []

        async def hang_up(reader, writer):  # the mirror's port accepts and closes: no HTTP answer
            attempts.append(1)
            writer.close()

        unreachable = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        mirror_port = unreachable.sockets[0].getsockname()[1]
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = 'listen: "tcp:port=0:interface=127.0.0.1"\n' + outbox_config(primary_port, mirror_port, directory)
        process = await self.run_daemon(config)
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        stations = [f"CP_U{number}" for number in range(5)]
        for station_id in stations:
            station, websocket, _ = await connect_station(f"ws://127.0.0.1:{found.group(1)}/", station_id)
            await station.call(call.Heartbeat())
            await websocket.close()
        await self.read_until(process.stdout, r"upstream m cannot be reached from the drain links")
        before = len(attempts)
        await asyncio.sleep(2.0)  # a window to count in: drain links retry every 0.5 s (reconnect.max_delay)
        self.assertLessEqual(len(attempts) - before, 6, "each station away tried the mirror on its own")
        unreachable.close()
        await asyncio.wait_for(unreachable.wait_closed(), WAIT)
        mirror = CentralSystem(500)
        await mirror.start(mirror_port)
        self.addCleanup(lambda: asyncio.ensure_future(mirror.stop()))

        def heartbeats() -> dict:
            return {connection.path: [frame[2] for frame in connection.session.received]
                    for connection in mirror.connections if connection.session.received}

        await poll_until(lambda: asyncio.sleep(0, heartbeats()), lambda got: len(got) == len(stations),
                         lambda got: f"backlogs delivered to the mirror: {sorted(got)}", timeout=30)
        self.assertEqual(heartbeats(), {f"/mirror/{station_id}": ["Heartbeat"] for station_id in stations})
