"""
Subprotocol negotiation through the proxy: the station is answered with the primary's
choice, or refused with the primary's HTTP status.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import websockets
from ocpp.routing import on
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from .e2e import ProxyTestCase, async_test
from .peers import WAIT, CentralSystem, RecordingMixin


class CentralSystem201Session(RecordingMixin, ChargePoint201):
    """The ocpp library's OCPP 2.0.1 central system side."""

    @on("BootNotification")
    def on_boot(self, charging_station, reason, **kwargs):
        return result201.BootNotification(
            current_time=datetime.now(UTC).isoformat(), interval=300, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs):
        return result201.Heartbeat(current_time=datetime.now(UTC).isoformat())


class Station201(RecordingMixin, ChargePoint201):
    pass


class NegotiationTests(ProxyTestCase):
    async def centrals(self, subprotocols=("ocpp1.6",), session_class=None, refuse_status=None, secondary=True):
        kwargs = {"subprotocols": subprotocols}
        if session_class is not None:
            kwargs["session_class"] = session_class
        self.primary = CentralSystem(100, refuse_status=refuse_status, **kwargs)
        self.secondary = CentralSystem(200, **kwargs)
        primary_port = await self.primary.start()
        secondary_port = await self.secondary.start()
        self.addCleanup(lambda: asyncio.ensure_future(self.primary.stop()))
        self.addCleanup(lambda: asyncio.ensure_future(self.secondary.stop()))
        settings = {"primary_url": f"ws://127.0.0.1:{primary_port}/ocpp/"}
        if secondary:
            settings["secondary_url"] = f"ws://127.0.0.1:{secondary_port}/ocpp/"
        return settings

    async def open(self, base, station_id, subprotocols):
        websocket = await websockets.connect(base + station_id, subprotocols=subprotocols, open_timeout=WAIT)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        return websocket

    @async_test
    async def test_station_gets_the_primarys_choice(self):
        """A station offering ocpp1.6, ocpp2.0.1 before central systems speaking only 2.0.1 ends up on 2.0.1."""
        settings = await self.centrals(subprotocols=("ocpp2.0.1",))
        base = await self.start_proxy(**settings)
        websocket = await self.open(base, "CP_S", ["ocpp1.6", "ocpp2.0.1"])
        self.assertEqual(websocket.subprotocol, "ocpp2.0.1")
        (primary_side,) = await self.primary.wait_connections(1)
        (secondary_side,) = await self.secondary.wait_connections(1)
        self.assertEqual(primary_side.websocket.request.headers["Sec-WebSocket-Protocol"], "ocpp1.6,ocpp2.0.1")
        self.assertEqual(secondary_side.websocket.request.headers["Sec-WebSocket-Protocol"], "ocpp2.0.1")
        self.assertEqual(secondary_side.subprotocol, "ocpp2.0.1")

    @async_test
    async def test_ocpp201_station_end_to_end(self):
        """A pure OCPP 2.0.1 station boots through the proxy against the ocpp library's v201 central system."""
        settings = await self.centrals(subprotocols=("ocpp2.0.1",), session_class=CentralSystem201Session)
        base = await self.start_proxy(**settings)
        websocket = await self.open(base, "CP_201", ["ocpp2.0.1"])
        station = Station201("CP_201", websocket, response_timeout=WAIT)
        reader = asyncio.ensure_future(station.start())
        self.addCleanup(reader.cancel)
        answer = await station.call(
            call201.BootNotification(charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp")
        )
        self.assertEqual(answer.status, "Accepted")
        self.assertEqual(answer.interval, 300)
        (secondary_side,) = await self.secondary.wait_connections(1)
        self.assertEqual(secondary_side.subprotocol, "ocpp2.0.1")

    @async_test
    async def test_primary_refusal_reaches_the_station(self):
        """When the primary refuses the handshake (404), the station is refused with 404 too."""
        settings = await self.centrals(refuse_status=404)
        base = await self.start_proxy(**settings)
        with self.assertRaises(websockets.InvalidStatus) as caught:
            await websockets.connect(base + "CP_UNKNOWN", subprotocols=["ocpp1.6"], open_timeout=WAIT)
        self.assertEqual(caught.exception.response.status_code, 404)
        self.assertEqual(self.primary.refused, ["/ocpp/CP_UNKNOWN"])
        self.assertEqual(self.secondary.connections, [])
        self.assertTrue(self.logged("station CP_UNKNOWN: refused, as the primary refused it: HTTP 404"))

    @async_test
    async def test_station_without_subprotocol_is_answered_without_one(self):
        """A station offering no subprotocol gets no Sec-WebSocket-Protocol; upstreams are offered ocpp1.6."""
        settings = await self.centrals()
        base = await self.start_proxy(**settings)
        websocket = await self.open(base, "CP_N", None)
        self.assertIsNone(websocket.subprotocol)
        self.assertNotIn("Sec-WebSocket-Protocol", websocket.response.headers)
        (primary_side,) = await self.primary.wait_connections(1)
        self.assertEqual(primary_side.subprotocol, "ocpp1.6")

    @async_test
    async def test_stray_commas_in_the_offer(self):
        """An offer with an empty entry (",ocpp2.0.1") works."""
        settings = await self.centrals(subprotocols=("ocpp2.0.1",))
        base = await self.start_proxy(**settings)
        port = int(base.rsplit(":", 1)[1].strip("/"))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /CP_C HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: ,ocpp2.0.1\r\n\r\n"
        )
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        self.assertTrue(response.startswith(b"HTTP/1.1 101"), response)
        self.assertIn(b"Sec-WebSocket-Protocol: ocpp2.0.1\r\n", response)
        writer.close()
        await self.until(lambda: not self.proxy.sessions)

    @async_test
    async def test_only_non_ocpp_offers_are_refused(self):
        """A station offering only non-OCPP subprotocols is refused with 400 and a clear log line."""
        settings = await self.centrals()
        base = await self.start_proxy(**settings)
        with self.assertRaises(websockets.InvalidStatus) as caught:
            await websockets.connect(base + "CP_X", subprotocols=["mqtt", "wamp.2.json"], open_timeout=WAIT)
        self.assertEqual(caught.exception.response.status_code, 400)
        self.assertEqual(self.primary.connections, [])
        self.assertTrue(self.logged("it offers no OCPP subprotocol"))

    @async_test
    async def test_silent_primary_station_gets_its_first_offer(self):
        """If the primary does not answer within handshake_timeout, the station gets its first offer."""
        settings = await self.centrals()
        await self.primary.stop()
        base = await self.start_proxy(handshake_timeout=0.3, **settings)
        websocket = await self.open(base, "CP_T", ["ocpp1.6", "ocpp2.0.1"])
        self.assertEqual(websocket.subprotocol, "ocpp1.6")
        (secondary_side,) = await self.secondary.wait_connections(1)
        self.assertEqual(secondary_side.websocket.request.headers["Sec-WebSocket-Protocol"], "ocpp1.6")
