"""
The per-station limits of the real daemon (``twistd -n ocppproxy``) with real peers on
127.0.0.1: a profile-3 station whose certificate names another station, a station
flooding frames, a station reconnecting in a loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl

import websockets
from ocpp.v16 import call

from ..certs import make_station_pki
from ..e2e import async_test
from ..peers import WAIT, CentralSystem, RawCentralSystem, connect_station, poll_until
from .test_daemon import DaemonTestCase


class DaemonLimitTests(DaemonTestCase):
    async def daemon(self, primary_url: str, extra: str = "") -> str:
        """twistd with C{extra} configuration; returns the port stations connect to. Its log goes to C{self.lines}."""
        process = await self.run_daemon(
            f'listen: "tcp:port=0:interface=127.0.0.1"\nprimary_url: "{primary_url}"\n{extra}'
        )
        found, self.lines = await self.read_until(process.stdout, r"listening on .*port=(\d+)")

        async def keep_reading():
            while line := await process.stdout.readline():
                self.lines.append(line.decode("utf-8", "replace"))

        reader = asyncio.ensure_future(keep_reading())
        self.addCleanup(reader.cancel)
        return found.group(1)

    def logged(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def central(self, server):
        port = await server.start()
        self.addCleanup(lambda: asyncio.ensure_future(server.stop()))
        return f"ws://127.0.0.1:{port}/ocpp/"

    @async_test
    async def test_certificate_for_another_station_refused_with_403(self):
        """
        check_client_id: refuse: a profile-3 station whose valid certificate names CP_1
        connecting as CP_2 gets 403, one line names both, and the central system never
        hears of it; CP_1 with that certificate connects.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        paths = make_station_pki(directory, "CP_1")
        central = CentralSystem(100)
        url = await self.central(central)
        port = await self.daemon(
            url,
            f'station_tls: {{certificate: "{paths["server.pem"]}", private_key: "{paths["server-key.pem"]}",'
            f' client_ca_file: "{paths["ca.pem"]}", check_client_id: refuse}}\n',
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(paths["ca.pem"])
        context.load_cert_chain(paths["client.pem"], paths["client-key.pem"])
        with self.assertRaises(websockets.InvalidStatus) as caught:
            await websockets.connect(
                f"wss://127.0.0.1:{port}/CP_2", subprotocols=["ocpp1.6"], ssl=context, open_timeout=WAIT
            )
        self.assertEqual(caught.exception.response.status_code, 403)
        await poll_until(
            lambda: asyncio.sleep(0, self.logged("refused station CP_2")), bool, lambda lines: "not logged"
        )
        (line,) = self.logged("refused station CP_2")
        self.assertIn("its client certificate is for 'CP_1'", line)
        websocket = await websockets.connect(
            f"wss://127.0.0.1:{port}/CP_1", subprotocols=["ocpp1.6"], ssl=context, open_timeout=WAIT
        )
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await central.wait_connections(1)
        self.assertEqual([connection.path for connection in central.connections], ["/ocpp/CP_1"])

    @async_test
    async def test_flooding_station_throttled_to_the_rate_without_losing_a_frame(self):
        """
        A station sending 500 frames/s is read at limits.max_frames_per_second after its
        burst: what one read brought is relayed at once, and reading waits until that
        debt is paid, so its last frame reaches the central system no sooner than the rate
        allows; every frame arrives, in order; one warning names the station.
        """
        central = RawCentralSystem(subprotocols=("ocpp1.6",))
        port = await self.daemon(
            await self.central(central), "limits: {max_frames_per_second: 40, frame_burst: 10}\n"
        )
        websocket = await websockets.connect(
            f"ws://127.0.0.1:{port}/CP_FLOOD", subprotocols=["ocpp1.6"], open_timeout=WAIT
        )
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        frames = [json.dumps([2, str(number), "Heartbeat", {}]) for number in range(120)]
        loop = asyncio.get_event_loop()
        started = loop.time()
        for frame in frames[:-1]:
            await websocket.send(frame)
            await asyncio.sleep(0.002)
        sent = loop.time() - started

        async def received(count: int) -> list[str]:
            return await poll_until(
                lambda: asyncio.sleep(0, list(central.received)),
                lambda got: len(got) >= count,
                lambda got: f"{len(got)} of {count} frames received",
            )

        # The last frame comes in a read of its own, once the others were relayed.
        await received(len(frames) - 1)
        await websocket.send(frames[-1])
        arrived = await received(len(frames))
        elapsed = loop.time() - started
        self.assertEqual(arrived, frames)
        self.assertLess(sent, 0.5)
        # 110 frames beyond the burst at 40/s: 2.75 s, whatever the reads brought.
        self.assertGreater(elapsed, 2.7, "".join(self.lines))
        self.assertLess(elapsed, 2.75 + 1.5)
        self.assertEqual(len(self.logged("station CP_FLOOD (")), 1)
        self.assertIn("sends over 40 frames/s (limits.max_frames_per_second", self.logged("station CP_FLOOD (")[0])

    @async_test
    async def test_reconnecting_station_gets_429_after_20_and_stays_connected(self):
        """
        A station reconnecting 30 times in a minute: the 20 first connections are
        accepted, the next ones refused with 429 and Retry-After before any upstream
        handshake; its open (20th) connection keeps working.
        """
        central = CentralSystem(100)
        port = await self.daemon(await self.central(central))
        base = f"ws://127.0.0.1:{port}/"
        statuses = []
        station = None
        for _ in range(30):
            try:
                station, _, _ = await connect_station(base, "CP_LOOP")
                statuses.append(101)
            except websockets.InvalidStatus as refusal:
                statuses.append(refusal.response.status_code)
                retry_after = int(refusal.response.headers["Retry-After"])
        self.assertEqual(statuses, [101] * 20 + [429] * 10)
        self.assertTrue(0 < retry_after <= 60, retry_after)
        self.assertEqual(len(central.connections), 20)
        answer = await station.call(call.Heartbeat())
        self.assertTrue(answer.current_time)
        self.assertEqual(len(self.logged("(limits.max_connects_per_minute)")), 1)
        self.assertTrue(re.search(r"station CP_LOOP connected 20 times", self.logged("max_connects")[0]))
