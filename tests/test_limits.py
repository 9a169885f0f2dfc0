"""Connection limits: the pure counting, then floods, slowloris peers and too many stations end to end."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Network

import websockets
from ocpp.v16 import call
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ConfigError
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.daemon.reload import compare_configs
from ocppproxy.relay.connection_options import websocket_options
from ocppproxy.wire.limits import (
    MAX_HANDSHAKE_BYTES,
    HandshakeAdmission,
    KeyedThrottledWarning,
    StationLimits,
    ThrottledWarning,
    source_of,
)
from ocppproxy.wire.station import StationFactory

from .e2e import ProxyTestCase, async_test
from .peers import WAIT, CentralSystem, Station, connect_station

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
        self.assertEqual(
            (config.max_stations, config.max_handshakes, config.max_handshakes_per_address), (10000, 1000, 20)
        )

    def test_set(self):
        limits = {"max_stations": 5, "max_handshakes": 2, "max_handshakes_per_address": 1}
        config = config_from_mapping({"primary_url": PRIMARY, "limits": limits})
        self.assertEqual((config.max_stations, config.max_handshakes, config.max_handshakes_per_address), (5, 2, 1))

    def test_errors(self):
        for limits, text in (
            ({"max_stations": 0}, "limits.max_stations: must be at least 1, got 0"),
            ({"max_handshakes": 2.5}, "limits.max_handshakes: must be a whole number, got 2.5"),
            ({"max_handshakes_per_address": 0}, "limits.max_handshakes_per_address: must be at least 1, got 0"),
            (
                {"max_peers": 1},
                "limits.max_peers: unknown key (expected one of: max_stations, max_handshakes,"
                " max_handshakes_per_address, max_write_buffer, stall_timeout)",
            ),
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


class KeyedThrottledWarningTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.events = []
        self.warning = KeyedThrottledWarning(Logger(observer=self.events.append), self.clock, 60, "{name}", max_keys=4)

    def test_once_per_interval_and_key(self):
        """Each key gets its own first warning; repeats within the interval are held back per key."""
        for key in ("a", "b", "a", "b", "a"):
            self.warning(key, name=key)
        self.assertEqual([event["name"] for event in self.events], ["a", "b"])
        self.clock.advance(60)
        self.warning("a", name="a")
        self.assertEqual((self.events[-1]["name"], self.events[-1]["held_back"]), ("a", 2))

    def test_keys_bounded(self):
        """However many keys come, at most max_keys are remembered; a quiet one is forgotten first."""
        self.warning("quiet", name="quiet")
        self.clock.advance(61)
        for number in range(100):
            self.warning(number, name=number)
        self.assertLessEqual(len(self.warning._warnings), 4)
        self.assertEqual(len(self.events), 101)


class SourceTests(SynchronousTestCase):
    def test_sources(self):
        """IPv4 addresses count one by one, IPv6 ones by /64, IPv4-mapped ones as IPv4; no address, no source."""
        self.assertEqual(source_of("192.0.2.7"), "192.0.2.7")
        self.assertEqual(source_of("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64")
        self.assertEqual(source_of("::ffff:192.0.2.7"), "192.0.2.7")
        self.assertIsNone(source_of(None))
        self.assertIsNone(source_of("/run/ocppproxy.sock"))


def peer(host: str, port: int = 4711) -> tuple[str, str]:
    """A connection's (peer, host) as the station protocol passes them."""
    return f"tcp4:{host}:{port}", host


class StationLimitsTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def warnings(self, text: str) -> list[str]:
        return [formatEvent(event) for event in self.events if text in formatEvent(event)]

    def test_handshakes_per_address(self):
        """
        max_handshakes_per_address handshakes from one address are admitted, the next is
        refused (counted, and a warning names the address); other addresses are not affected,
        and a handshake that ends frees its address's slot.
        """
        limits = StationLimits(Clock(), max_handshakes=100, max_handshakes_per_address=2)
        admitted = [limits.begin_handshake(n, *peer("192.0.2.1", n)).admitted for n in range(3)]
        self.assertEqual(admitted, [True, True, False])
        self.assertTrue(limits.begin_handshake("other", *peer("192.0.2.2")).admitted)
        limits.end_handshake(0)
        limits.end_handshake(0)
        self.assertTrue(limits.begin_handshake(3, *peer("192.0.2.1")).admitted)
        self.assertFalse(limits.begin_handshake(4, *peer("192.0.2.1")).admitted)
        self.assertEqual(limits.handshakes, 3)
        self.assertEqual(limits.refused["max_handshakes_per_address"], 2)
        (warning,) = self.warnings("(limits.max_handshakes_per_address)")
        self.assertIn("2 station handshakes in progress from 192.0.2.1", warning)

    def test_refusals_warned_once_a_minute_per_address(self):
        """Each flooding address is named in a warning of its own; its repeats are held back."""
        clock = Clock()
        limits = StationLimits(clock, max_handshakes=100, max_handshakes_per_address=1)
        for host in ("192.0.2.1", "192.0.2.2"):
            for number in range(4):
                limits.begin_handshake((host, number), *peer(host, number))
        self.assertEqual(len(self.warnings("(limits.max_handshakes_per_address)")), 2)
        self.assertEqual(len(self.warnings("from 192.0.2.2 (limits")), 1)
        clock.advance(60)
        limits.begin_handshake("late", *peer("192.0.2.1"))
        self.assertIn("(2 more since the last such warning)", self.warnings("from 192.0.2.1 (limits")[-1])

    def test_trusted_proxies_exempt(self):
        """An address in trusted_proxies carries everyone: the per-address limit does not apply to it."""
        limits = StationLimits(
            Clock(), max_handshakes=100, max_handshakes_per_address=2, trusted_proxies=[IPv4Network("10.0.0.0/8")]
        )
        self.assertTrue(all(limits.begin_handshake(n, *peer("10.1.2.3", n)).admitted for n in range(10)))
        self.assertEqual(limits.refused["max_handshakes_per_address"], 0)

    def test_ipv6_counted_per_64(self):
        """Two addresses of one IPv6 /64 share its limit."""
        limits = StationLimits(Clock(), max_handshakes=100, max_handshakes_per_address=1)
        self.assertTrue(limits.begin_handshake(1, *peer("2001:db8::1")).admitted)
        self.assertFalse(limits.begin_handshake(2, *peer("2001:db8::2")).admitted)
        self.assertTrue(limits.begin_handshake(3, *peer("2001:db8:0:1::1")).admitted)

    def test_oldest_unread_shed_first(self):
        """
        With max_handshakes in progress, each new connection sheds the oldest one whose
        request is not read yet; one waiting for the primary is never shed.
        """
        limits = StationLimits(Clock(), max_handshakes=3, max_handshakes_per_address=100)
        for name in ("first", "second", "third"):
            self.assertEqual(limits.begin_handshake(name, *peer("192.0.2.1")), HandshakeAdmission(True))
        limits.request_read("first")
        self.assertEqual(limits.begin_handshake("fourth", *peer("192.0.2.2")), HandshakeAdmission(True, "second"))
        self.assertEqual(limits.begin_handshake("fifth", *peer("192.0.2.2")), HandshakeAdmission(True, "third"))
        self.assertEqual(limits.begin_handshake("sixth", *peer("192.0.2.2")), HandshakeAdmission(True, "fourth"))
        self.assertEqual((limits.handshakes, limits.shed), (3, 3))
        (warning,) = self.warnings("closed the oldest unfinished one")
        self.assertIn("from tcp4:192.0.2.1:4711, for a new connection from tcp4:192.0.2.2:4711", warning)

    def test_shed_handshake_leaves_its_address(self):
        """A shed handshake no longer counts for its address; its own end later changes nothing."""
        limits = StationLimits(Clock(), max_handshakes=2, max_handshakes_per_address=2)
        limits.begin_handshake("a1", *peer("192.0.2.1"))
        limits.begin_handshake("a2", *peer("192.0.2.1"))
        self.assertEqual(limits.begin_handshake("b1", *peer("192.0.2.2")).shed, "a1")
        limits.end_handshake("a1")
        self.assertEqual(limits.handshakes, 2)
        self.assertTrue(limits.begin_handshake("a3", *peer("192.0.2.1")).admitted)

    def test_refused_when_every_handshake_waits_for_the_primary(self):
        """When every slot holds a request waiting for the primary, the new connection is refused."""
        limits = StationLimits(Clock(), max_handshakes=2)
        for name in ("first", "second"):
            limits.begin_handshake(name, *peer("192.0.2.1"))
            limits.request_read(name)
        self.assertEqual(limits.begin_handshake("third", *peer("192.0.2.2")), HandshakeAdmission(False))
        self.assertEqual((limits.refused["max_handshakes"], limits.shed), (1, 0))
        self.assertEqual(len(self.warnings("all waiting for the primary: closed a new connection")), 1)
        limits.end_handshake("first")
        self.assertTrue(limits.begin_handshake("fourth", *peer("192.0.2.2")).admitted)

    def test_stations_up_to_the_limit(self):
        """A station is admitted while fewer than max_stations are connected."""
        limits = StationLimits(Clock(), max_stations=2)
        self.assertTrue(limits.admit_station("CP_1", 1))
        self.assertFalse(limits.admit_station("CP_2", 2))
        self.assertEqual(limits.refused["max_stations"], 1)


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

    async def raw(self, source: str = "127.0.0.1"):
        """A TCP connection to the proxy from the loopback address C{source}."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))
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
    async def test_flood_of_silent_connections_shed_oldest_first(self):
        """
        300 connections that send nothing, max_handshakes 50: each one beyond 50 sheds the
        oldest, so the first 250 are closed at once and the last 50 by the handshake
        timeout; a connected station relays throughout.
        """
        base = await self.proxy_with_central(
            listen="tcp:port=0:interface=127.0.0.1:backlog=1024",
            handshake_timeout=0.1,
            limits={"max_handshakes": 50, "max_handshakes_per_address": 1000},
        )
        station = await self.station(base, "CP_BUSY")
        loop = asyncio.get_event_loop()
        started = loop.time()
        peers = [await self.raw() for _ in range(300)]
        closing = [asyncio.ensure_future(closed(reader)) for reader, _ in peers]
        await self.until(lambda: sum(task.done() for task in closing) >= 250, timeout=WAIT)
        self.assertLess(loop.time() - started, 2, "the oldest were not shed at once")
        self.assertEqual((self.proxy.limits.handshakes, self.proxy.limits.shed), (50, 250))
        answer = await station.call(call.Heartbeat())
        self.assertTrue(answer.current_time)
        self.assertEqual([task.done() for task in closing], [True] * 250 + [False] * 50)
        await asyncio.wait_for(asyncio.gather(*closing), 5.1 + WAIT)
        # Autobahn's timers round their due time down to a whole second: up to 1 s early.
        self.assertGreater(loop.time() - started, 4)
        await self.until(lambda: self.proxy.limits.handshakes == 0)
        self.assertEqual(len(self.logged("(limits.max_handshakes): closed the oldest unfinished one")), 1)

    @async_test
    async def test_floods_from_two_addresses_cannot_lock_a_station_out(self):
        """
        Idle connections from 127.0.0.2 and 127.0.0.3, more than max_handshakes in all:
        each address holds at most max_handshakes_per_address slots (its excess is closed
        at once and the log names it), the oldest are shed for newer ones, and a station
        from 127.0.0.1 connects and gets its BootNotification answered by the primary
        while the flood still holds every slot it can.
        """
        base = await self.proxy_with_central(limits={"max_handshakes": 30, "max_handshakes_per_address": 20})
        limits = self.proxy.limits
        flood = {source: [await self.raw(source) for _ in range(25)] for source in ("127.0.0.2", "127.0.0.3")}
        closing = {
            source: [asyncio.ensure_future(closed(reader)) for reader, _ in peers] for source, peers in flood.items()
        }
        # Every connection is held, shed or refused.
        await self.until(lambda: limits.handshakes + limits.shed + limits.refused["max_handshakes_per_address"] == 50)
        self.assertEqual((limits.handshakes, limits.shed, limits.refused["max_handshakes_per_address"]), (30, 10, 10))
        # 127.0.0.2: its first 10 shed by 127.0.0.3's, its last 5 refused; 127.0.0.3: its last 5 refused.
        await self.until(lambda: sum(task.done() for tasks in closing.values() for task in tasks) == 20)
        self.assertEqual([task.done() for task in closing["127.0.0.2"]], [True] * 10 + [False] * 10 + [True] * 5)
        self.assertEqual([task.done() for task in closing["127.0.0.3"]], [False] * 20 + [True] * 5)
        for source in ("127.0.0.2", "127.0.0.3"):
            self.assertEqual(len(self.logged(f"from {source} (limits.max_handshakes_per_address)")), 1)
        self.assertEqual(len(self.logged("closed the oldest unfinished one, from tcp4:127.0.0.2:")), 1)

        loop = asyncio.get_event_loop()
        started = loop.time()
        station = await self.station(base, "CP_GOOD")
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100, "not the primary's answer")
        # The flood's slots are freed by the handshake timeout (10 s + 5 s) only.
        self.assertLess(loop.time() - started, 5)
        self.assertEqual((limits.shed, limits.handshakes), (11, 29))

    @async_test
    async def test_trusted_proxy_exempt_from_the_per_address_limit(self):
        """
        A trusted proxy's address carries every station behind it: more handshakes than
        max_handshakes_per_address from it are held, and a station through it still boots;
        from another address the excess is closed at once.
        """
        base = await self.proxy_with_central(trusted_proxies=["127.0.0.4"], limits={"max_handshakes_per_address": 5})
        limits = self.proxy.limits
        for _ in range(12):
            await self.raw("127.0.0.4")
        other = [await self.raw("127.0.0.5") for _ in range(7)]
        await self.until(lambda: limits.handshakes + limits.refused["max_handshakes_per_address"] == 19)
        self.assertEqual((limits.handshakes, limits.refused["max_handshakes_per_address"]), (17, 2))
        await asyncio.wait_for(asyncio.gather(*(closed(reader) for reader, _ in other[5:])), WAIT)
        self.assertEqual(self.logged("from 127.0.0.4 (limits"), [])
        self.assertEqual(len(self.logged("from 127.0.0.5 (limits.max_handshakes_per_address)")), 1)
        websocket = await websockets.connect(
            base + "CP_BEHIND_LB", subprotocols=["ocpp1.6"], open_timeout=WAIT, local_addr=("127.0.0.4", 0)
        )
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        station = Station("CP_BEHIND_LB", websocket, response_timeout=WAIT)
        reader = asyncio.ensure_future(station.start())
        self.addCleanup(reader.cancel)
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)

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
