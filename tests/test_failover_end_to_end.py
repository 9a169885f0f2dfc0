"""
Failover end to end: the `ocpp` library's station and central systems, the primary
stopped and started again under the real proxy.
"""

from __future__ import annotations

import asyncio

from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, AuthorizationStatus

from .e2e import ProxyTestCase, async_test
from .peers import WAIT, CentralSystem, CentralSystemSession, connect_station, wait_until


class SlowAuthorizeSession(CentralSystemSession):
    """A primary that answers Authorize only once the test releases it."""

    release: asyncio.Event

    @on(Action.authorize)
    async def on_authorize(self, id_tag):
        await asyncio.wait_for(self.release.wait(), WAIT)
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})


def boot():
    return call.BootNotification(charge_point_model="M", charge_point_vendor="V")


class FailoverTests(ProxyTestCase):
    async def setup_pair(self, failover=True, primary_session=CentralSystemSession):
        self.primary = CentralSystem(100, session_class=primary_session)
        self.secondary = CentralSystem(200)
        self.primary_port = await self.primary.start()
        secondary_port = await self.secondary.start()
        self.addCleanup(lambda: asyncio.ensure_future(self.primary.stop()))
        self.addCleanup(lambda: asyncio.ensure_future(self.secondary.stop()))
        base = await self.start_proxy(
            primary_url=f"ws://127.0.0.1:{self.primary_port}/ocpp/",
            secondary_url=f"ws://127.0.0.1:{secondary_port}/ocpp/",
            failover=failover,
            reconnect={"initial_delay": 0.2, "max_delay": 0.5, "max_attempts": 100},
        )
        station, websocket, _ = await connect_station(base, "CP_F")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        return station, websocket

    async def primary_link_state(self, connected: bool):
        session = self.proxy.sessions["CP_F"]
        loop = asyncio.get_event_loop()
        deadline = loop.time() + WAIT
        while session.links["primary"].connected != connected:
            if loop.time() > deadline:
                raise AssertionError("primary link never became %s" % ("connected" if connected else "disconnected"))
            await asyncio.sleep(0.01)

    def answers(self, station):
        return [frame for frame in station.received if frame[0] in (3, 4)]

    @async_test
    async def test_secondary_answers_while_primary_is_away_then_primary_again(self):
        """Primary stops: the secondary answers; primary back: it answers alone and got the outage's frames."""
        station, _ = await self.setup_pair()
        self.assertEqual((await station.call(boot())).interval, 100)
        await self.primary.wait_connections(1)
        await self.primary.stop()
        await self.primary_link_state(False)
        self.assertEqual((await station.call(boot())).interval, 200)
        outage_id = station.sent[-1][1]
        await self.primary.start(self.primary_port)
        await self.primary_link_state(True)
        self.assertEqual((await station.call(boot())).interval, 100)
        second = self.primary.connections[1]
        await wait_until(lambda: len(second.session.received) >= 2, second.session.changed)
        self.assertEqual(second.session.received[0][1], outage_id)
        self.assertEqual(len(self.answers(station)), 3)
        self.assertTrue(self.logged("station CP_F: primary away, the secondary answers (failover)"))
        self.assertTrue(self.logged("station CP_F: failover ended"))

    @async_test
    async def test_call_pending_when_primary_drops_gets_secondary_answer(self):
        """A CALL still unanswered by the primary when it drops is answered with the secondary's answer."""
        SlowAuthorizeSession.release = asyncio.Event()
        station, _ = await self.setup_pair(primary_session=SlowAuthorizeSession)
        await station.call(call.Heartbeat())
        pending = asyncio.ensure_future(station.call(call.Authorize(id_tag="TAG")))
        await wait_until(lambda: station.sent[-1][2] == "Authorize", station.changed)
        (secondary_side,) = await self.secondary.wait_connections(1)
        await wait_until(
            lambda: any(frame[0] == 3 and frame[1] == station.sent[-1][1] for frame in secondary_side.session.sent),
            secondary_side.session.changed,
        )
        self.assertFalse(pending.done())
        (primary_side,) = self.primary.connections
        await primary_side.websocket.close()
        result = await asyncio.wait_for(pending, WAIT)
        self.assertEqual(result.id_tag_info["status"], "Accepted")
        SlowAuthorizeSession.release.set()
        self.assertEqual(len(self.answers(station)), 2)

    @async_test
    async def test_without_failover_nothing_changes(self):
        """With failover off, a CALL sent while the primary is away gets no answer from the secondary."""
        station, websocket = await self.setup_pair(failover=False)
        await station.call(call.Heartbeat())
        await self.primary.stop()
        await self.primary_link_state(False)
        await websocket.send('[2,"no-answer-1","Heartbeat",{}]')
        (secondary_side,) = await self.secondary.wait_connections(1)
        await wait_until(
            lambda: any(frame[1] == "no-answer-1" for frame in secondary_side.session.sent),
            secondary_side.session.changed,
        )
        # A round trip on the same connections: anything the secondary sent before it has been relayed by now.
        await asyncio.wait_for(
            secondary_side.session.call(call.ChangeAvailability(connector_id=0, type="Operative")), WAIT
        )
        self.assertFalse(any(frame[1] == "no-answer-1" for frame in station.received))
