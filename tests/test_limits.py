"""Connection limits: the pure counting, then floods, slowloris peers and too many stations end to end."""

from __future__ import annotations

import asyncio

import websockets
from ocpp.v16 import call
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config import ConfigError, config_from_mapping
from ocppproxy.limits import MAX_HANDSHAKE_BYTES, StationLimits, ThrottledWarning
from ocppproxy.reload import compare_configs
from ocppproxy.session import websocket_options
from ocppproxy.station import StationFactory

from .e2e import ProxyTestCase, async_test
from .peers import WAIT, CentralSystem, connect_station

REQUEST_HEAD = b"GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
HANDSHAKE_REST = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)


PRIMARY = "ws://127.0.0.1:9/"


class LimitsConfigTests(SynchronousTestCase):
    """The limits section: defaults, whole numbers from 1, a change named by a reload."""

    def test_defaults(self):
        config = config_from_mapping({"primary_url": PRIMARY})
        self.assertEqual((config.max_stations, config.max_handshakes), (10000, 200))

    def test_set(self):
        config = config_from_mapping({"primary_url": PRIMARY, "limits": {"max_stations": 5, "max_handshakes": 2}})
        self.assertEqual((config.max_stations, config.max_handshakes), (5, 2))

    def test_errors(self):
        for limits, text in (
            ({"max_stations": 0}, "limits.max_stations: must be at least 1, got 0"),
            ({"max_handshakes": 2.5}, "limits.max_handshakes: must be a whole number, got 2.5"),
            ({"max_peers": 1}, "limits.max_peers: unknown key (expected one of: max_stations, max_handshakes, max_write_buffer, stall_timeout)",),
        ):
            with self.assertRaises(ConfigError) as caught:
                config_from_mapping({"primary_url": PRIMARY, "limits": limits})
            self.assertEqual(str(caught.exception), text)

    def test_reload_names_the_key(self):
        """A changed limit is named by its configuration key and waits for a restart."""
        old = config_from_mapping({"primary_url": PRIMARY})
        new = config_from_mapping({"primary_url": PRIMARY, "limits": {"max_handshakes": 20}})
        self.assertEqual(compare_configs(old, new).restart, ("limits.max_handshakes",))


class ThrottledWarningTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.events = []
        self.warning = ThrottledWarning(Logger(observer=self.events.append), self.clock, 60, "full: {what}")

    def test_once_per_interval(self):
        """Within the interval only the first occurrence is logged; the next warning counts the others."""
        for _ in range(3):
            self.warning(what="x")
        self.assertEqual(len(self.events), 1)
        self.clock.advance(60)
        self.warning(what="y")
        self.assertEqual([event["held_back"] for event in self.events], [0, 2])
        self.assertEqual(self.events[1]["what"], "y")
        self.assertEqual(self.events[1]["log_level"], LogLevel.warn)


class StationLimitsTests(SynchronousTestCase):
    def test_handshakes_counted_up_to_the_limit(self):
        """max_handshakes connections are admitted; the next one only after one of them ended."""
        limits = StationLimits(Clock(), max_handshakes=2)
        self.assertEqual([limits.begin_handshake("peer") for _ in range(3)], [True, True, False])
        limits.end_handshake()
        self.assertTrue(limits.begin_handshake("peer"))
        self.assertEqual(limits.handshakes, 2)

    def test_stations_up_to_the_limit(self):
        """A station is admitted while fewer than max_stations are connected."""
        limits = StationLimits(Clock(), max_stations=2)
        self.assertTrue(limits.admit_station("CP_1", 1))
        self.assertFalse(limits.admit_station("CP_2", 2))


class SocketTransport(StringTransport):
    """A StringTransport that, like a TCP one, takes TCP_NODELAY and an unregisterProducer without a producer."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        self.producer = None


class WaitingProxy:
    """Stands in for the proxy service: every station waits for a primary that never answers."""

    def __init__(self) -> None:
        self.connecting: list[str] = []

    def station_connecting(self, protocol, station_id, request, offers):
        self.connecting.append(station_id)
        return self

    def negotiate(self, station_offered: bool) -> Deferred:
        return Deferred()


class RequestAfterRequestTests(SynchronousTestCase):
    """What a peer sends after its request, while its handshake waits for the primary."""

    def setUp(self):
        self.proxy = WaitingProxy()
        config = config_from_mapping({"primary_url": PRIMARY})
        factory = StationFactory(self.proxy, Clock(), websocket_options(config))
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        # Autobahn's timers run on the global reactor, which this test does not use.
        self.protocol.openHandshakeTimeout = 0
        self.transport = SocketTransport()
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(REQUEST_HEAD % b"CP_FIRST" + HANDSHAKE_REST)

    def test_second_request_not_parsed(self):
        """A second request on the same connection does not connect a second station."""
        self.protocol.dataReceived(REQUEST_HEAD % b"CP_SECOND" + HANDSHAKE_REST)
        self.assertEqual(self.proxy.connecting, ["CP_FIRST"])
        self.assertFalse(self.transport.disconnecting)

    def test_bytes_after_request_bounded(self):
        """Over 16 KiB after the request, before the answer, the connection is dropped."""
        self.protocol.dataReceived(b"x" * MAX_HANDSHAKE_BYTES)
        self.assertFalse(self.transport.disconnecting)
        self.protocol.dataReceived(b"x")
        self.assertTrue(self.transport.disconnected)


async def closed(reader: asyncio.StreamReader) -> None:
    """Read until the proxy closes the connection (a FIN or a reset)."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionResetError:
        pass


class LimitsEndToEndTests(ProxyTestCase):
    timeout = 60

    async def proxy_with_central(self, **settings) -> str:
        self.central = CentralSystem(100)
        port = await self.central.start()
        self.addCleanup(lambda: asyncio.ensure_future(self.central.stop()))
        base = await self.start_proxy(primary_url=f"ws://127.0.0.1:{port}/ocpp/", **settings)
        self.port = int(base.rsplit(":", 1)[1].strip("/"))
        return base

    async def station(self, base: str, station_id: str):
        station, websocket, _ = await connect_station(base, station_id)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        return station

    async def raw(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.addCleanup(writer.close)
        return reader, writer

    @async_test
    async def test_station_beyond_max_stations_refused_with_503(self):
        """With max_stations connected, a new station is refused with 503 and a warning; a reconnecting one is not."""
        base = await self.proxy_with_central(limits={"max_stations": 2})
        await self.station(base, "CP_L1")
        await self.station(base, "CP_L2")
        for station_id in ("CP_L3", "CP_L4"):
            with self.assertRaises(websockets.InvalidStatus) as refused:
                await websockets.connect(base + station_id, subprotocols=["ocpp1.6"], open_timeout=WAIT)
            self.assertEqual(refused.exception.response.status_code, 503)
        self.assertEqual(len(self.logged("(limits.max_stations): refused station CP_L3 with 503")), 1)
        self.assertEqual(self.logged("CP_L4 with 503"), [])
        again = await self.station(base, "CP_L1")
        answer = await again.call(call.Heartbeat())
        self.assertTrue(answer.current_time)
        paths = sorted(connection.path for connection in self.central.connections)
        self.assertEqual(paths, ["/ocpp/CP_L1", "/ocpp/CP_L1", "/ocpp/CP_L2"])

    @async_test
    async def test_endless_request_head_cut_at_16_kib(self):
        """Header bytes without the blank line are answered with 431 and closed once over 16 KiB."""
        await self.proxy_with_central()
        reader, writer = await self.raw()
        writer.write(REQUEST_HEAD % b"CP_SLOW" + b"X-Padding: ")
        for _ in range(MAX_HANDSHAKE_BYTES // 1024 + 1):
            writer.write(b"a" * 1024)
        response = await asyncio.wait_for(reader.read(), WAIT)
        self.assertTrue(response.startswith(b"HTTP/1.1 431"), response)
        self.assertTrue(self.logged(f"its handshake request is over {MAX_HANDSHAKE_BYTES} bytes"))
        self.assertEqual(self.central.connections, [])

    @async_test
    async def test_trickling_request_closed_by_handshake_timeout(self):
        """A request sent a byte at a time, never finished, is closed handshake_timeout + 5 s after connecting."""
        await self.proxy_with_central(handshake_timeout=0.1)
        reader, writer = await self.raw()
        loop = asyncio.get_event_loop()
        started = loop.time()
        writer.write(REQUEST_HEAD % b"CP_TRICKLE")
        eof = asyncio.ensure_future(closed(reader))
        while not eof.done():
            self.assertLess(loop.time() - started, 5.1 + WAIT, "the trickling peer was never closed")
            writer.write(b"a")
            await asyncio.wait([eof], timeout=0.2)
        # Autobahn's timers round their due time down to a whole second: up to 1 s early.
        self.assertGreater(loop.time() - started, 4)
        self.assertEqual(self.proxy.limits.handshakes, 0)

    @async_test
    async def test_flood_of_silent_connections_bounded(self):
        """
        300 connections that send nothing, max_handshakes 50: 250 are closed at once, the
        other 50 by the handshake timeout; a connected station relays throughout, and a
        new one connects once the slots are free.
        """
        base = await self.proxy_with_central(
            listen="tcp:port=0:interface=127.0.0.1:backlog=1024", handshake_timeout=0.1, limits={"max_handshakes": 50}
        )
        station = await self.station(base, "CP_BUSY")
        loop = asyncio.get_event_loop()
        started = loop.time()
        peers = await asyncio.gather(*(self.raw() for _ in range(300)))
        closing = [asyncio.ensure_future(closed(reader)) for reader, _ in peers]
        await self.until(lambda: sum(task.done() for task in closing) >= 250, timeout=WAIT)
        self.assertLess(loop.time() - started, 2, "the excess was not closed at once")
        self.assertEqual(self.proxy.limits.handshakes, 50)
        answer = await station.call(call.Heartbeat())
        self.assertTrue(answer.current_time)
        self.assertEqual(sum(task.done() for task in closing), 250)
        await asyncio.wait_for(asyncio.gather(*closing), 5.1 + WAIT)
        # Autobahn's timers round their due time down to a whole second: up to 1 s early.
        self.assertGreater(loop.time() - started, 4)
        await self.until(lambda: self.proxy.limits.handshakes == 0)
        self.assertEqual(len(self.logged("(limits.max_handshakes): closed a new connection")), 1)
        late = await self.station(base, "CP_LATE")
        answer = await late.call(call.Heartbeat())
        self.assertTrue(answer.current_time)

    @async_test
    async def test_host_and_origin_change_nothing_upstream(self):
        """A strange Host and Origin reach neither the upstream URL nor the upstream's headers."""
        await self.proxy_with_central()
        reader, writer = await self.raw()
        writer.write(
            b"GET /CP_HOST HTTP/1.1\r\nHost: evil.example:666\r\nOrigin: http://evil.example/other/\r\n"
            + HANDSHAKE_REST
        )
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        self.assertTrue(response.startswith(b"HTTP/1.1 101"), response)
        (connection,) = await self.central.wait_connections(1)
        self.assertEqual(connection.path, "/ocpp/CP_HOST")
        headers = {name.lower(): value for name, value in connection.headers.items()}
        self.assertEqual(headers["host"], f"127.0.0.1:{self.central.server.sockets[0].getsockname()[1]}")
        self.assertNotIn("evil", repr(headers))
        writer.close()
        await self.until(lambda: not self.proxy.sessions)
