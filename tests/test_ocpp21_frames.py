"""OCPP 2.1 frame types through the real proxy, with plain `websockets` peers."""

from __future__ import annotations

import asyncio
import json

import websockets

from .e2e import ProxyTestCase, async_test
from .peers import WAIT, RawCentralSystem, wait_until


class OCPP21Tests(ProxyTestCase):
    async def setup(self):
        self.primary, self.secondary = RawCentralSystem(), RawCentralSystem()
        primary_port, secondary_port = await self.primary.start(), await self.secondary.start()
        self.addCleanup(lambda: asyncio.ensure_future(self.primary.stop()))
        self.addCleanup(lambda: asyncio.ensure_future(self.secondary.stop()))
        base = await self.start_proxy(
            primary_url=f"ws://127.0.0.1:{primary_port}/ocpp/",
            secondary_url=f"ws://127.0.0.1:{secondary_port}/ocpp/",
        )
        station = await websockets.connect(base + "CP_21", subprotocols=["ocpp2.1"], open_timeout=WAIT)
        self.addCleanup(lambda: asyncio.ensure_future(station.close()))
        self.assertEqual(station.subprotocol, "ocpp2.1")
        await wait_until(lambda: self.secondary.websockets, self.secondary.changed)
        return station

    @async_test
    async def test_send_goes_to_every_upstream(self):
        """A SEND (type 6) from the station reaches both central systems and expects no answer."""
        station = await self.setup()
        frame = '[6,"send-1","NotifyPeriodicEventStream",{"id":1,"pending":0,"basetime":"2026-11-24T10:00:00Z","data":[]}]'
        await station.send(frame)
        for central in (self.primary, self.secondary):
            await wait_until(lambda central=central: central.received, central.changed)
            self.assertEqual(json.loads(central.received[0])[:3], [6, "send-1", "NotifyPeriodicEventStream"])

    @async_test
    async def test_callresulterror_returns_to_the_asker(self):
        """The station's CALLRESULTERROR (type 5) answering the secondary's CALL goes to the secondary only."""
        station = await self.setup()
        await self.secondary.websockets[0].send('[2,"q-1","GetVariables",{"getVariableData":[]}]')
        request = json.loads(await asyncio.wait_for(station.recv(), WAIT))
        self.assertEqual(request[:2], [2, "q-1"])
        await station.send('[5,"q-1","InternalError","could not build the result",{}]')
        await wait_until(lambda: self.secondary.received, self.secondary.changed)
        self.assertEqual(json.loads(self.secondary.received[0])[:3], [5, "q-1", "InternalError"])
        await station.send('[2,"h-1","Heartbeat",{}]')
        await wait_until(lambda: self.primary.received, self.primary.changed)
        self.assertEqual([json.loads(text)[1] for text in self.primary.received], ["h-1"])

    @async_test
    async def test_fragmented_messages_relayed_whole(self):
        """A message the station and a central system send in several WebSocket frames is relayed whole, byte for byte."""
        station = await self.setup()
        call = '[2,"frag-1","DataTransfer",{"vendorId":"X","data":"' + "y" * 5000 + '"}]'
        await station.send([call[:10], call[10:4000], call[4000:]])
        for central in (self.primary, self.secondary):
            await wait_until(lambda central=central: central.received, central.changed)
            self.assertEqual(central.received[0], call)
        request = '[2,"frag-2","GetVariables",{"getVariableData":[]}]'
        await self.primary.websockets[0].send([request[:5], request[5:]])
        self.assertEqual(await asyncio.wait_for(station.recv(), WAIT), request)

    @async_test
    async def test_burst_larger_than_socket_buffers_keeps_order(self):
        """4 MB of CALLs sent at once (more than the sockets hold) reach both central systems whole and in order."""
        station = await self.setup()
        body = "z" * 2000
        frames = [f'[2,"b-{number}","DataTransfer",{{"vendorId":"X","data":"{body}"}}]' for number in range(2000)]
        for text in frames:
            await station.send(text)
        for central in (self.primary, self.secondary):
            await wait_until(lambda central=central: len(central.received) >= len(frames), central.changed, timeout=30)
            self.assertEqual(central.received, frames)

    @async_test
    async def test_unknown_answer_from_primary_dropped_with_warning(self):
        """An answer from the primary to no pending station CALL never reaches the station, and is logged."""
        station = await self.setup()
        await self.primary.websockets[0].send('[3,"nobody-asked",{}]')
        await self.until(lambda: self.logged("CALLRESULT nobody-asked from primary dropped"))
        await station.send('[2,"h-1","Heartbeat",{}]')
        await wait_until(lambda: self.primary.received, self.primary.changed)
        await self.primary.websockets[0].send('[3,"h-1",{"currentTime":"2026-11-25T10:00:00Z"}]')
        self.assertEqual(json.loads(await asyncio.wait_for(station.recv(), WAIT))[:2], [3, "h-1"])
