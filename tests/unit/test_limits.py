"""Connection limits: the pure counting and the station protocol's handshake bounds (end to end: test_relay_limits)."""

from __future__ import annotations

from ipaddress import IPv4Network

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
                " max_handshakes_per_address, max_write_buffer, stall_timeout, max_frames_per_second,"
                " frame_burst, max_connects_per_minute)",
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
