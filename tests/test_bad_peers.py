"""Bad frames, binary frames, oversized frames and dead peers, end to end."""

from __future__ import annotations

import asyncio
import json

import websockets

from .e2e import ProxyTestCase, async_test
from .peers import WAIT, CentralSystem

HANDSHAKE = (
    b"GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)


class BadPeerTests(ProxyTestCase):
    async def proxy_with_central(self, **settings):
        self.central = CentralSystem(100, subprotocols=("ocpp1.6", "ocpp2.0.1"))
        port = await self.central.start()
        self.addCleanup(lambda: asyncio.ensure_future(self.central.stop()))
        return await self.start_proxy(primary_url=f"ws://127.0.0.1:{port}/ocpp/", **settings)

    async def station(self, base, station_id, subprotocol="ocpp1.6"):
        websocket = await websockets.connect(base + station_id, subprotocols=[subprotocol], open_timeout=WAIT)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        return websocket

    @async_test
    async def test_malformed_call_answered_with_formation_violation(self):
        """A malformed 1.6 CALL whose id can be read is answered with CALLERROR FormationViolation."""
        base = await self.proxy_with_central()
        websocket = await self.station(base, "CP_B1")
        await websocket.send('[2, "bad-1", "Heartbeat"]')
        reply = json.loads(await asyncio.wait_for(websocket.recv(), WAIT))
        self.assertEqual(reply[:3], [4, "bad-1", "FormationViolation"])
        self.assertEqual(self.central.connections[0].session.received, [])

    @async_test
    async def test_malformed_call_in_201_is_format_violation(self):
        """The same in OCPP 2.0.1 is answered with FormatViolation."""
        base = await self.proxy_with_central()
        websocket = await self.station(base, "CP_B2", "ocpp2.0.1")
        await websocket.send('[2, "bad-2", 42, {}]')
        reply = json.loads(await asyncio.wait_for(websocket.recv(), WAIT))
        self.assertEqual(reply[:3], [4, "bad-2", "FormatViolation"])

    @async_test
    async def test_binary_frame_closes_with_1003(self):
        """A binary frame from the station closes it with 1003 (unsupported data)."""
        base = await self.proxy_with_central()
        websocket = await self.station(base, "CP_B3")
        await websocket.send(b"\x00\x01binary")
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1003)

    @async_test
    async def test_oversized_frame_closes_with_1009(self):
        """A frame over max_frame_size closes the station with 1009 (message too big)."""
        base = await self.proxy_with_central(max_frame_size=4096)
        websocket = await self.station(base, "CP_B4")
        await websocket.send('[2,"big","DataTransfer",{"data":"%s"}]' % ("x" * 5000))
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1009)

    @async_test
    async def test_dead_station_detected_by_keepalive(self):
        """A station that stops answering pings is dropped within interval + timeout, with its upstream link."""
        base = await self.proxy_with_central(keepalive={"interval": 1, "timeout": 1})
        healthy = await self.station(base, "CP_ALIVE")
        port = int(base.rsplit(":", 1)[1].strip("/"))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HANDSHAKE % b"CP_DEAD")
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        self.assertTrue(response.startswith(b"HTTP/1.1 101"), response)
        upstream = [c for c in await self.central.wait_connections(2) if c.path.endswith("CP_DEAD")][0]
        started = asyncio.get_event_loop().time()
        await self.until(lambda: "CP_DEAD" not in self.proxy.sessions, timeout=5)
        self.assertLess(asyncio.get_event_loop().time() - started, 3.5)
        await asyncio.wait_for(upstream.closed.wait(), WAIT)
        # The healthy station on the same proxy answered its pings and is still there.
        self.assertIsNone(healthy.close_code)
        self.assertIn("CP_ALIVE", self.proxy.sessions)
        writer.close()

    @async_test
    async def test_dead_upstream_detected_by_keepalive(self):
        """A central system that accepts the handshake, then never answers pings, is dropped in time."""
        import base64
        import hashlib

        writers = []

        async def silent_central(reader, writer):
            request = await reader.readuntil(b"\r\n\r\n")
            key = [line.split(b":", 1)[1].strip() for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")][0]
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
            )
            writers.append(writer)

        server = await asyncio.start_server(silent_central, "127.0.0.1", 0)
        self.addCleanup(server.close)
        port = server.sockets[0].getsockname()[1]
        base = await self.start_proxy(
            primary_url=f"ws://127.0.0.1:{port}/ocpp/", keepalive={"interval": 1, "timeout": 1}
        )
        websocket = await self.station(base, "CP_SILENT")
        started = asyncio.get_event_loop().time()
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1013)
        self.assertLess(asyncio.get_event_loop().time() - started, 3.5)
        for writer in writers:
            writer.close()
