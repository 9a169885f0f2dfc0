"""
The relaying rules, end to end on 127.0.0.1: the real proxy service between the `ocpp`
library's charge point and two of its central systems.
"""

from __future__ import annotations

import asyncio

import websockets
from ocpp.v16 import call
from ocpp.v16.enums import AvailabilityType, ChargePointErrorCode, ChargePointStatus
from twisted.internet.defer import Deferred

from .e2e import ProxyTestCase, async_test
from .peers import WAIT, CentralSystem, connect_station, wait_until

AUTH = "Basic Q1BfMTpzM2NyZXQtcGFzc3dvcmQ="


class TwoCentralSystems(ProxyTestCase):
    """A primary (BootNotification interval 100) and a secondary (200) from the ocpp library."""

    async def two_central_systems(self):
        self.primary, self.secondary = CentralSystem(100), CentralSystem(200)
        primary_port = await self.primary.start()
        secondary_port = await self.secondary.start()
        self.addCleanup(lambda: asyncio.ensure_future(self.primary.stop()))
        self.addCleanup(lambda: asyncio.ensure_future(self.secondary.stop()))
        return (
            f"ws://127.0.0.1:{primary_port}/ocpp/",
            f"ws://127.0.0.1:{secondary_port}/ocpp/",
        )

    async def station(self, base: str, station_id: str = "CP_1", **kwargs):
        station, websocket, _ = await connect_station(base, station_id, **kwargs)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        return station, websocket


class RelayTests(TwoCentralSystems):
    """Station CALLs reach both central systems; only the primary answers."""

    @async_test
    async def test_boot_reaches_both_and_only_primary_answers(self):
        """A BootNotification reaches both central systems; the station gets the primary's answer only."""
        primary_url, secondary_url = await self.two_central_systems()
        base = await self.start_proxy(primary_url=primary_url, secondary_url=secondary_url)
        station, _ = await self.station(base)
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        for central in (self.primary, self.secondary):
            (connection,) = await central.wait_connections(1)
            await wait_until(lambda c=connection: c.session.received, connection.session.changed)
            self.assertEqual(connection.path, "/ocpp/CP_1")
            self.assertEqual(connection.session.received[0][2], "BootNotification")
        # The secondary answered too; that answer must never reach the station.
        await wait_until(lambda: self.secondary.connections[0].session.sent, self.secondary.connections[0].session.changed)
        results = [frame for frame in station.received if frame[0] == 3]
        self.assertEqual(len(results), 1)

    @async_test
    async def test_handshake_carries_station_headers_and_subprotocol(self):
        """Each upstream handshake carries the station's Authorization, User-Agent, address and subprotocol."""
        primary_url, secondary_url = await self.two_central_systems()
        base = await self.start_proxy(primary_url=primary_url, secondary_url=secondary_url, log_level="debug")
        station, _ = await self.station(base, headers={"Authorization": AUTH, "User-Agent": "Wallbox/1.2"})
        await station.call(call.Heartbeat())
        for central in (self.primary, self.secondary):
            (connection,) = await central.wait_connections(1)
            headers = {name.lower(): value for name, value in connection.headers.items()}
            self.assertEqual(headers["authorization"], AUTH)
            self.assertEqual(headers["user-agent"], "Wallbox/1.2")
            self.assertEqual(headers["x-forwarded-for"], "127.0.0.1")
            self.assertEqual(headers["x-real-ip"], "127.0.0.1")
            self.assertEqual(connection.subprotocol, "ocpp1.6")
        self.assertTrue(self.log_lines)
        self.assertEqual([line for line in self.log_lines if "s3cret" in line or "Q1BfMTpzM2Ny" in line], [])

    @async_test
    async def test_late_secondary_gets_queued_boot(self):
        """A secondary that comes up after the station booted still receives the BootNotification, in order."""
        self.primary = CentralSystem(100)
        primary_port = await self.primary.start()
        self.addCleanup(lambda: asyncio.ensure_future(self.primary.stop()))
        late = CentralSystem(200)
        late_port = await late.start()
        await late.stop()  # keep the port number, refuse connections for now
        base = await self.start_proxy(
            primary_url=f"ws://127.0.0.1:{primary_port}/ocpp/",
            secondary_url=f"ws://127.0.0.1:{late_port}/ocpp/",
        )
        station, _ = await self.station(base)
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await station.call(
            call.StatusNotification(
                connector_id=1, error_code=ChargePointErrorCode.no_error, status=ChargePointStatus.available
            )
        )
        await late.start(late_port)
        self.addCleanup(lambda: asyncio.ensure_future(late.stop()))
        (connection,) = await late.wait_connections(1)
        await wait_until(lambda: len(connection.session.received) >= 2, connection.session.changed)
        self.assertEqual([frame[2] for frame in connection.session.received], ["BootNotification", "StatusNotification"])

    @async_test
    async def test_upstream_call_answer_goes_back_to_the_asker_only(self):
        """A CALL from the secondary reaches the station; the answer returns to the secondary, not the primary."""
        primary_url, secondary_url = await self.two_central_systems()
        base = await self.start_proxy(primary_url=primary_url, secondary_url=secondary_url)
        station, _ = await self.station(base)
        await station.call(call.Heartbeat())
        (secondary_side,) = await self.secondary.wait_connections(1)
        answer = await asyncio.wait_for(
            secondary_side.session.call(call.ChangeAvailability(connector_id=0, type=AvailabilityType.inoperative)),
            WAIT,
        )
        self.assertEqual(answer.status, "Accepted")
        (primary_side,) = self.primary.connections
        self.assertEqual([frame[2] for frame in primary_side.session.received], ["Heartbeat"])

    @async_test
    async def test_primary_call_answer_goes_to_primary(self):
        """A CALL from the primary is answered to the primary."""
        primary_url, secondary_url = await self.two_central_systems()
        base = await self.start_proxy(primary_url=primary_url, secondary_url=secondary_url)
        station, _ = await self.station(base)
        await station.call(call.Heartbeat())
        (primary_side,) = await self.primary.wait_connections(1)
        answer = await asyncio.wait_for(
            primary_side.session.call(call.ChangeAvailability(connector_id=1, type=AvailabilityType.operative)),
            WAIT,
        )
        self.assertEqual(answer.status, "Accepted")
        (secondary_side,) = self.secondary.connections
        self.assertEqual([frame[0] for frame in secondary_side.session.received], [2])


class ConnectionRuleTests(ProxyTestCase):
    """Station ids, replacement, losing every upstream, shutdown."""

    async def central(self, interval=100):
        central = CentralSystem(interval)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        return central, f"ws://127.0.0.1:{port}/ocpp/"

    @async_test
    async def test_bad_station_id_is_refused_before_any_upstream(self):
        """Paths that are not a valid station id get HTTP 400 (counted) and no upstream connection is made."""
        central, url = await self.central()
        base = await self.start_proxy(primary_url=url)
        for path in ["", "a/b", "CP%201", "x" * 49, "...", "CP 1"]:
            with self.assertRaises(websockets.InvalidStatus) as caught:
                await websockets.connect(base + path, subprotocols=["ocpp1.6"], open_timeout=WAIT)
            self.assertEqual(caught.exception.response.status_code, 400, path)
        self.assertEqual(central.connections, [])
        self.assertEqual(self.proxy.handshakes_refused, 6)
        self.assertTrue(self.logged("bad path"))

    @async_test
    async def test_second_connection_replaces_the_first(self):
        """A second connection with the same id closes the first (code 4000) and its upstream link."""
        central, url = await self.central()
        base = await self.start_proxy(primary_url=url)
        first, first_ws, _ = await connect_station(base, "CP_7")
        await first.call(call.Heartbeat())
        second, second_ws, _ = await connect_station(base, "CP_7")
        self.addCleanup(lambda: asyncio.ensure_future(second_ws.close()))
        await asyncio.wait_for(first_ws.wait_closed(), WAIT)
        self.assertEqual(first_ws.close_code, 4000)
        await second.call(call.Heartbeat())
        connections = await central.wait_connections(2)
        await asyncio.wait_for(connections[0].closed.wait(), WAIT)
        self.assertFalse(connections[1].closed.is_set())
        self.assertEqual(list(self.proxy.sessions), ["CP_7"])

    @async_test
    async def test_station_closed_when_every_upstream_is_gone(self):
        """When the only upstream drops, the station gets close code 1013 (try again later)."""
        central, url = await self.central()
        base = await self.start_proxy(primary_url=url)
        station, websocket, _ = await connect_station(base, "CP_2")
        await station.call(call.Heartbeat())
        (connection,) = await central.wait_connections(1)
        await connection.websocket.close(code=1011)
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1013)

    @async_test
    async def test_station_stays_while_one_upstream_remains(self):
        """When the secondary drops but the primary stays, the station keeps being served."""
        _, primary_url = await self.central(100)
        secondary, secondary_url = await self.central(200)
        base = await self.start_proxy(primary_url=primary_url, secondary_url=secondary_url)
        station, websocket, _ = await connect_station(base, "CP_3")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.Heartbeat())
        (secondary_side,) = await secondary.wait_connections(1)
        await secondary.stop()
        await asyncio.wait_for(secondary_side.closed.wait(), WAIT)
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        self.assertIsNone(websocket.close_code)

    @async_test
    async def test_shutdown_closes_stations_with_going_away(self):
        """Stopping the service closes every station with 1001 and its upstream connections."""
        central, url = await self.central()
        base = await self.start_proxy(primary_url=url)
        station, websocket, _ = await connect_station(base, "CP_4")
        await station.call(call.Heartbeat())
        (connection,) = await central.wait_connections(1)
        await Deferred.asFuture(self.proxy.stopService(), asyncio.get_event_loop())
        self.assertEqual(self.proxy.sessions, {})
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1001)
        await asyncio.wait_for(connection.closed.wait(), WAIT)
        self.assertEqual(connection.websocket.close_code, 1001)

    @async_test
    async def test_bad_frame_is_logged_and_others_keep_working(self):
        """A station sending garbage is logged with its id; it and other stations keep being relayed."""
        _, url = await self.central()
        base = await self.start_proxy(primary_url=url)
        good, good_ws, _ = await connect_station(base, "GOOD")
        self.addCleanup(lambda: asyncio.ensure_future(good_ws.close()))
        bad_ws = await websockets.connect(base + "BAD", subprotocols=["ocpp1.6"], open_timeout=WAIT)
        self.addCleanup(lambda: asyncio.ensure_future(bad_ws.close()))
        await bad_ws.send("this is not OCPP")
        await bad_ws.send('[2, 17, "Heartbeat", {}]')
        answer = await good.call(call.Heartbeat())
        self.assertTrue(answer.current_time)
        self.assertTrue(self.logged("station BAD sent a bad frame (not JSON)"))
        self.assertTrue(self.logged("message id is not a non-empty string"))
        await bad_ws.send('[2, "ok-1", "Heartbeat", {}]')
        reply = await asyncio.wait_for(bad_ws.recv(), WAIT)
        self.assertIn('"ok-1"', reply)


class FaultIsolationTests(ProxyTestCase):
    """An exception while handling one station's frame stays with that frame."""

    @async_test
    async def test_exception_in_routing_is_logged_and_daemon_keeps_serving(self):
        """A routing error is logged with the station id; the next frames are relayed as usual."""
        central = CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        base = await self.start_proxy(primary_url=f"ws://127.0.0.1:{port}/ocpp/")
        station, websocket, _ = await connect_station(base, "CP_ERR")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.Heartbeat())
        session = self.proxy.sessions["CP_ERR"]
        original = session.relay.from_station
        calls = []

        def broken_once(payload, now, binary):
            if not calls:
                calls.append(payload)
                raise RuntimeError("routing bug")
            return original(payload, now, binary)

        session.relay.from_station = broken_once
        await websocket.send('[2, "boom-1", "Heartbeat", {}]')
        answer = await station.call(call.Heartbeat())
        self.assertTrue(answer.current_time)
        self.assertTrue(self.logged("station CP_ERR: error relaying a frame from the station"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class StationBoundCallTests(TwoCentralSystems):
    """Both central systems talk to the station: one CALL at a time, ids never confused, a policy."""

    @async_test
    async def test_same_call_id_from_both_upstreams_at_once(self):
        """The primary and the secondary send a CALL with the same id at once; each gets its own answer."""
        primary_url, secondary_url = await self.two_central_systems()
        base = await self.start_proxy(primary_url=primary_url, secondary_url=secondary_url)
        station, _ = await self.station(base)
        await station.call(call.Heartbeat())
        (primary_side,) = await self.primary.wait_connections(1)
        (secondary_side,) = await self.secondary.wait_connections(1)
        answers = await asyncio.wait_for(
            asyncio.gather(
                primary_side.session.call(
                    call.ChangeAvailability(connector_id=1, type=AvailabilityType.inoperative), unique_id="same-id"
                ),
                secondary_side.session.call(
                    call.ChangeAvailability(connector_id=2, type=AvailabilityType.inoperative), unique_id="same-id"
                ),
            ),
            WAIT,
        )
        self.assertEqual([answer.status for answer in answers], ["Accepted", "Accepted"])
        requests = [frame for frame in station.received if frame[0] == 2]
        self.assertEqual([frame[1] for frame in requests], ["same-id", "same-id"])
        self.assertEqual(sorted(frame[3]["connectorId"] for frame in requests), [1, 2])

    @async_test
    async def test_read_only_secondary(self):
        """With upstream_calls.secondary limited, a refused action gets SecurityError and never reaches the station."""
        from ocpp.exceptions import SecurityError

        primary_url, secondary_url = await self.two_central_systems()
        base = await self.start_proxy(
            primary_url=primary_url, secondary_url=secondary_url, upstream_calls={"secondary": ["GetConfiguration"]}
        )
        station, _ = await self.station(base)
        await station.call(call.Heartbeat())
        (secondary_side,) = await self.secondary.wait_connections(1)
        with self.assertRaises(SecurityError):
            await asyncio.wait_for(
                secondary_side.session.call(
                    call.ChangeAvailability(connector_id=0, type=AvailabilityType.inoperative), suppress=False
                ),
                WAIT,
            )
        self.assertEqual([frame for frame in station.received if frame[0] == 2], [])
        self.assertTrue(self.logged("ChangeAvailability"))
