"""
Real-socket smoke tests of the relaying core on 127.0.0.1: the real proxy service between
peers nobody here wrote (the `ocpp` library's charge points and central systems over
`websockets`). The rules themselves are tested without sockets on the synchronous harness
(test_relay_frames.py, test_relay_connections.py); these check that the same proxy works
over TCP, on whichever reactor trial runs: the peers have an asyncio loop in a thread of
their own, so ``make test`` runs this module on the asyncio reactor and again on the
default one (epoll), which production uses.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import websockets
from ocpp.routing import on
from ocpp.v16 import call
from ocpp.v16.enums import AvailabilityType
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.fastpath import FastPath
from ocppproxy.relay.proxy import ProxyService

from ..peers import WAIT, CentralSystem, RawCentralSystem, RecordingMixin, connect_station, wait_until


class PeerLoop:
    """An asyncio loop in a thread of its own, where the asyncio peers run whatever the reactor."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="asyncio peers", daemon=True)
        self._thread.start()

    def run(self, coroutine, timeout: float = WAIT) -> Deferred:
        """Run C{coroutine} on the peers' loop (at most C{timeout} seconds); a Deferred of its result."""
        done: Deferred = Deferred()
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout), self.loop)

        def finished(future) -> None:
            error = future.exception()
            if error is None:
                reactor.callFromThread(done.callback, future.result())
            else:
                reactor.callFromThread(done.errback, error)

        future.add_done_callback(finished)
        return done

    def stop(self) -> None:
        """Cancel what still runs there, then stop the loop and its thread."""

        async def cancel_all() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


async def read_until_closed(station) -> None:
    """Let an ocpp station read its frames until its connection closes."""
    try:
        await station.start()
    except websockets.ConnectionClosed:
        pass


class CentralSystem201Session(RecordingMixin, ChargePoint201):
    """The ocpp library's OCPP 2.0.1 central system side."""

    @on("BootNotification")
    def on_boot(self, charging_station, reason, **kwargs):
        return result201.BootNotification(current_time=datetime.now(UTC).isoformat(), interval=300, status="Accepted")


class Station201(RecordingMixin, ChargePoint201):
    """The ocpp library's OCPP 2.0.1 charging station."""


class SmokeTestCase(TestCase):
    """The real proxy on 127.0.0.1, the peers on their own asyncio loop."""

    timeout = 60

    def setUp(self) -> None:
        self.peers = PeerLoop()
        self.addCleanup(self.peers.stop)

    def start_proxy(self, **settings) -> str:
        """Start the proxy with C{settings}; returns the ws:// base URL stations connect to."""
        raw = {"listen": "tcp:port=0:interface=127.0.0.1", "reconnect": {"initial_delay": 0.2, "max_delay": 0.5}}
        raw.update(settings)
        self.proxy = ProxyService(config_from_mapping(raw), reactor, fast_path=FastPath())
        self.proxy.startService()
        self.addCleanup(self._stop_proxy)
        return f"ws://127.0.0.1:{self.successResultOf(self.proxy.listening).getHost().port}/"

    @inlineCallbacks
    def _stop_proxy(self):
        if self.proxy.running:
            yield self.proxy.stopService()
        # Autobahn's timer buckets (0.2 s, on the global reactor through txaio) outlive the connections.
        for _ in range(40):
            if not any("_notify_bucket" in repr(call) for call in reactor.getDelayedCalls()):
                break
            yield deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def central_systems(self, primary=None, secondary=None):
        """Start the two central systems (ocpp 1.6 ones unless given); their ws:// base URLs."""
        self.primary = primary or CentralSystem(100)
        self.secondary = secondary or CentralSystem(200)
        ports = []
        for central in (self.primary, self.secondary):
            ports.append((yield self.peers.run(central.start())))
            self.addCleanup(lambda central=central: self.peers.run(central.stop()))
        return [f"ws://127.0.0.1:{port}/ocpp/" for port in ports]

    @inlineCallbacks
    def station(self, base: str, station_id: str, **kwargs):
        """An ocpp 1.6 charge point connected to the proxy as C{station_id}."""
        station, websocket, _ = yield self.peers.run(connect_station(base, station_id, **kwargs))
        self.addCleanup(lambda: self.peers.run(websocket.close()))
        return station, websocket


class RelaySmokeTests(SmokeTestCase):
    """Frames both ways between the ocpp library's station and central systems, through TCP."""

    @inlineCallbacks
    def test_boot_reaches_both_and_only_the_primary_answers(self):
        """A BootNotification reaches both central systems, with the station's headers; the station gets the primary's answer."""
        primary_url, secondary_url = yield self.central_systems()
        base = self.start_proxy(primary_url=primary_url, secondary_url=secondary_url)
        station, _ = yield self.station(base, "CP_1", headers={"Authorization": "Basic Q1BfMTpzM2NyZXQ="})
        boot = call.BootNotification(charge_point_model="M", charge_point_vendor="V")
        answer = yield self.peers.run(station.call(boot))
        self.assertEqual(answer.interval, 100)
        for central in (self.primary, self.secondary):
            # The secondary connects once the primary has chosen: it may get the boot after the station's answer.
            (connection,) = yield self.peers.run(central.wait_connections(1))
            session = connection.session
            yield self.peers.run(wait_until(lambda session=session: session.received, session.changed))
            self.assertEqual(session.received[0][2], "BootNotification")
            headers = {name.lower(): value for name, value in connection.headers.items()}
            self.assertEqual(connection.path, "/ocpp/CP_1")
            self.assertEqual(headers["authorization"], "Basic Q1BfMTpzM2NyZXQ=")
            self.assertEqual(headers["x-forwarded-for"], "127.0.0.1")
            self.assertEqual(connection.subprotocol, "ocpp1.6")
        secondary = self.secondary.connections[0].session
        yield self.peers.run(wait_until(lambda: secondary.sent, secondary.changed))
        # Barrier: the secondary's CALL after its answer reaches the station, and is answered.
        change = call.ChangeAvailability(connector_id=0, type=AvailabilityType.inoperative)
        result = yield self.peers.run(secondary.call(change))
        self.assertEqual(result.status, "Accepted")
        self.assertEqual([frame[0] for frame in station.received], [3, 2])

    @inlineCallbacks
    def test_ocpp201_station_boots_through_the_proxy(self):
        """A pure OCPP 2.0.1 station boots through the proxy against the ocpp library's v201 central systems."""
        central = {"subprotocols": ("ocpp2.0.1",), "session_class": CentralSystem201Session}
        primary_url, secondary_url = yield self.central_systems(
            CentralSystem(100, **central), CentralSystem(200, **central)
        )
        base = self.start_proxy(primary_url=primary_url, secondary_url=secondary_url)

        async def boot():
            websocket = await websockets.connect(base + "CP_201", subprotocols=["ocpp1.6", "ocpp2.0.1"])
            self.addCleanup(lambda: self.peers.run(websocket.close()))
            station = Station201("CP_201", websocket, response_timeout=WAIT)
            asyncio.ensure_future(read_until_closed(station))
            boot = call201.BootNotification(charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp")
            return websocket.subprotocol, await station.call(boot)

        subprotocol, answer = yield self.peers.run(boot())
        self.assertEqual(subprotocol, "ocpp2.0.1")
        self.assertEqual((answer.status, answer.interval), ("Accepted", 300))
        self.assertEqual(self.secondary.connections[0].subprotocol, "ocpp2.0.1")

    @inlineCallbacks
    def test_burst_larger_than_socket_buffers_keeps_order(self):
        """4 MB of CALLs sent at once (more than the sockets hold) reach both central systems whole and in order."""
        self.primary, self.secondary = RawCentralSystem(), RawCentralSystem()
        urls = []
        for central in (self.primary, self.secondary):
            urls.append(f"ws://127.0.0.1:{(yield self.peers.run(central.start()))}/ocpp/")
            self.addCleanup(lambda central=central: self.peers.run(central.stop()))
        # Not the frame rate limit under test: 2000 frames at once pass.
        limits = {"max_frames_per_second": 100000, "frame_burst": 100000}
        base = self.start_proxy(primary_url=urls[0], secondary_url=urls[1], limits=limits)
        _, websocket, _ = yield self.peers.run(connect_station(base, "CP_B", subprotocols=["ocpp2.1"]))
        self.addCleanup(lambda: self.peers.run(websocket.close()))
        body = "z" * 2000
        frames = [f'[2,"b-{number}","DataTransfer",{{"vendorId":"X","data":"{body}"}}]' for number in range(2000)]

        async def burst():
            # The secondary connects once the primary has chosen; until then its queue holds 1000 frames.
            await wait_until(lambda: self.secondary.websockets, self.secondary.changed)
            for text in frames:
                await websocket.send(text)
            for central in (self.primary, self.secondary):
                await wait_until(lambda central=central: len(central.received) >= len(frames), central.changed, 30)

        yield self.peers.run(burst(), timeout=40)
        self.assertEqual(self.primary.received, frames)
        self.assertEqual(self.secondary.received, frames)


class ConnectionSmokeTests(SmokeTestCase):
    """Failover and shutdown, with central systems that really stop and start."""

    @inlineCallbacks
    def test_failover_while_the_primary_is_stopped(self):
        """Primary stopped: the secondary answers; primary started again: it answers alone, and got the outage's frames."""
        primary_url, secondary_url = yield self.central_systems()
        base = self.start_proxy(
            primary_url=primary_url,
            secondary_url=secondary_url,
            failover=True,
            reconnect={"initial_delay": 0.2, "max_delay": 0.5, "max_attempts": 100},
        )
        station, _ = yield self.station(base, "CP_F")
        primary_port = int(primary_url.split(":")[2].split("/")[0])
        boot = call.BootNotification(charge_point_model="M", charge_point_vendor="V")
        self.assertEqual((yield self.peers.run(station.call(boot))).interval, 100)
        yield self.until(lambda: self.proxy.connected_links("secondary"))
        yield self.peers.run(self.primary.stop())
        yield self.until(lambda: not self.proxy.connected_links("primary"))
        self.assertEqual((yield self.peers.run(station.call(boot))).interval, 200)
        outage_id = station.sent[-1][1]
        yield self.peers.run(self.primary.start(primary_port))
        yield self.until(lambda: self.proxy.connected_links("primary"))
        self.assertEqual((yield self.peers.run(station.call(boot))).interval, 100)
        self.assertEqual(self.primary.connections[1].session.received[0][1], outage_id)
        self.assertEqual(len([frame for frame in station.received if frame[0] == 3]), 3)

    @inlineCallbacks
    def test_shutdown_closes_stations_and_upstreams_with_going_away(self):
        """Stopping the service closes the station and its upstream connection with 1001."""
        primary_url, _ = yield self.central_systems()
        base = self.start_proxy(primary_url=primary_url)
        station, websocket = yield self.station(base, "CP_4")
        yield self.peers.run(station.call(call.Heartbeat()))
        yield self.proxy.stopService()
        yield self.peers.run(websocket.wait_closed())
        self.assertEqual(websocket.close_code, 1001)
        (connection,) = self.primary.connections
        yield self.peers.run(connection.closed.wait())
        self.assertEqual(connection.websocket.close_code, 1001)

    @inlineCallbacks
    def until(self, condition, timeout: float = WAIT):
        """Wait at most C{timeout} seconds for C{condition()} to hold, checking every 10 ms."""
        for _ in range(int(timeout / 0.01)):
            if condition():
                return
            yield deferLater(reactor, 0.01, lambda: None)
        raise AssertionError("condition not met in time")
