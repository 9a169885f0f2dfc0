"""
Bounded write buffers, driven by a Clock and a transport that keeps Twisted's own
write buffer (L{abstract.FileDescriptor}) in front of a socket that takes what a test lets it.
"""

from __future__ import annotations

import ssl

from twisted.internet import abstract
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ConfigError, ReconnectPolicy
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.core.routing import StationRelay
from ocppproxy.daemon.reload import compare_configs
from ocppproxy.fastpath import FastPath
from ocppproxy.relay.flow import NOT_READING
from ocppproxy.relay.session import StationSession
from ocppproxy.wire.backpressure import WriteBufferWatch, WriteLimits
from ocppproxy.wire.tls import TLSServerFactory
from ocppproxy.wire.upstream import UpstreamLink

from ..unit.test_upstream_link import Owner, RefusingEndpoint

KIB = 1024
LIMIT = 256 * KIB


class SocketTransport(abstract.FileDescriptor):
    """Twisted's write buffer and producer handling; the 'socket' takes C{room} bytes per write event."""

    TLS = False

    def __init__(self) -> None:
        super().__init__(MemoryReactor())
        self.connected = 1
        self.room = 0
        self.sent = 0
        self.reading = True

    def writeSomeData(self, data) -> int:
        taken = min(len(data), self.room)
        self.room -= taken
        self.sent += taken
        return taken

    def drain(self, room: int = 1 << 30) -> None:
        """The peer reads: the socket takes up to C{room} more bytes."""
        self.room = room
        self.doWrite()

    def startReading(self) -> None:
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startWriting(self) -> None:
        pass

    def stopWriting(self) -> None:
        pass


class Calls:
    """A watch's owner that records the calls it gets, without their write_buffer_ prefix."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __getattr__(self, name):
        return lambda: self.events.append(name.removeprefix("write_buffer_"))


class WriteBufferWatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limits = WriteLimits(self.clock, LIMIT, 5.0, FastPath())
        self.transport = SocketTransport()
        self.owner = Calls()
        self.watch = WriteBufferWatch(self.transport, self.limits, self.owner)

    def test_full_only_over_the_limit(self):
        """Over Twisted's 64 KiB only the transport's mark goes up to the limit; over the limit: full, once."""
        self.transport.write(b"x" * 70 * KIB)
        self.assertEqual((self.owner.events, self.transport.bufferSize), ([], LIMIT))
        self.transport.write(b"x" * 180 * KIB)
        self.assertEqual(self.owner.events, [])
        self.transport.write(b"x" * 10 * KIB)
        self.transport.write(b"x" * 10 * KIB)
        self.assertEqual(self.owner.events, ["full"])
        self.assertTrue(self.watch.full)

    def test_drained_once_empty_and_reads_stay_small(self):
        """A partial drain changes nothing; once empty the owner hears it, and the mark is Twisted's again."""
        self.transport.write(b"x" * (LIMIT + 70 * KIB))
        self.transport.write(b"x")
        self.transport.drain(100 * KIB)
        self.assertEqual(self.owner.events, ["full"])
        self.transport.drain()
        self.assertEqual(self.owner.events, ["full", "drained"])
        self.assertEqual(self.transport.bufferSize, 64 * KIB)
        self.assertFalse(self.watch.full)

    def test_below_the_limit_keeps_twisted_read_size_after_drain(self):
        """Over 64 KiB but under the limit: no call to the owner, and the mark is Twisted's once drained."""
        self.transport.write(b"x" * 100 * KIB)
        self.transport.drain()
        self.assertEqual((self.owner.events, self.transport.bufferSize), ([], 64 * KIB))

    def test_stalled_when_not_drained_within_the_timeout(self):
        """Full for stall_timeout without draining: the owner is told it stalled."""
        self.transport.write(b"x" * (LIMIT + 70 * KIB))
        self.transport.write(b"x")
        self.transport.drain(LIMIT)  # progress, but not empty: still full
        self.clock.advance(4.9)
        self.assertEqual(self.owner.events, ["full"])
        self.clock.advance(0.1)
        self.assertEqual(self.owner.events, ["full", "stalled"])

    def test_drained_in_time_is_no_stall(self):
        """Drained before the timeout: the stall timer is cancelled."""
        self.transport.write(b"x" * (LIMIT + 70 * KIB))
        self.transport.write(b"x")
        self.clock.advance(4.0)
        self.transport.drain()
        self.clock.advance(10.0)
        self.assertEqual(self.owner.events, ["full", "drained"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_producing_silences_the_watch(self):
        """Once the connection is gone, no stall and no calls."""
        self.transport.write(b"x" * (LIMIT + 70 * KIB))
        self.transport.write(b"x")
        self.watch.stopProducing()
        self.clock.advance(10.0)
        self.transport.drain()
        self.assertEqual(self.owner.events, ["full"])

    def test_proxy_tls_is_full_at_the_limit(self):
        """On the proxy's own TLS (station_tls, wss://), which passes every pause on: full at the limit, as plain."""
        socket = SocketTransport()
        factory = TLSServerFactory(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), Factory.forProtocol(Protocol))
        tls = factory.buildProtocol(None)
        tls.makeConnection(socket)
        owner = Calls()
        WriteBufferWatch(tls, self.limits, owner)
        socket.write(b"x" * 70 * KIB)  # what the TLS layer sent, past Twisted's 64 KiB
        self.assertEqual((owner.events, socket.bufferSize), ([], LIMIT))
        socket.write(b"x" * LIMIT)
        self.assertEqual(owner.events, ["full"])

    def test_tls_is_full_at_twisted_mark(self):
        """On Twisted's TLS (ssl: listen), which passes on only its first pause: full at Twisted's own 64 KiB."""
        transport = SocketTransport()
        transport.TLS = True
        owner = Calls()
        WriteBufferWatch(transport, self.limits, owner)
        transport.write(b"x" * 70 * KIB)
        self.assertEqual((owner.events, transport.bufferSize), (["full"], 64 * KIB))


class UpstreamProtocolStandIn:
    """An open upstream protocol: frames go to a L{SocketTransport} (sizes only)."""

    STATE_OPEN = 3
    state = 3
    websocket_protocol_in_use = "ocpp1.6"
    was_open = True

    def __init__(self) -> None:
        self.transport = SocketTransport()
        self.frames: list[bytes] = []
        self.dropped = False

    def sendMessage(self, payload, isBinary):
        self.frames.append(payload)
        self.transport.write(payload)

    def dropConnection(self, abort=False):
        self.dropped = abort

    def when_closed(self):
        return Deferred()

    def sendCloseFrame(self, code, reason, isReply):
        pass


def frame(number: int, size: int = 60 * KIB) -> bytes:
    return b'[2,"%d","DataTransfer",{"data":"' % number + b"x" * size + b'"}]'


class UpstreamStallTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.owner = Owner()
        self.limits = WriteLimits(self.clock, LIMIT, 5.0, FastPath())
        policy = ReconnectPolicy(initial_delay=5.0, factor=2.0, max_delay=12.0, max_attempts=3)
        self.link = UpstreamLink(
            "secondary",
            "ws://127.0.0.1:1/ocpp/CP_1",
            "CP_1",
            self.owner,
            self.clock,
            policy,
            4,
            ["ocpp1.6"],
            {},
            None,
            endpoint=RefusingEndpoint(),
            write_limits=self.limits,
        )
        self.protocol = UpstreamProtocolStandIn()
        self.link.opened(self.protocol)

    def test_over_the_limit_frames_wait_in_the_queue_and_flush_in_order(self):
        """While the upstream does not read, its frames are queued; once it drains they follow in order."""
        for number in range(6):
            self.link.send(frame(number))
        self.assertTrue(self.link.stalled)
        sent = len(self.protocol.frames)
        self.assertEqual(sent, 5)  # 4 x 60 KiB under the limit, the fifth takes it over
        self.link.send(frame(6))
        self.assertEqual(len(self.link.queue), 2)
        self.assertEqual(self.limits.stalls, {"secondary": 1})
        self.protocol.transport.drain()
        self.assertEqual(self.protocol.frames, [frame(number) for number in range(7)])
        self.assertFalse(self.link.stalled)
        self.link.send(frame(7))
        self.assertEqual(self.protocol.frames[-1], frame(7))

    def test_queue_overflow_drops_oldest_and_warns_once_per_stall(self):
        """A full queue drops its oldest frames, each counted, with one warning for the stall."""
        for number in range(12):
            self.link.send(frame(number))
        dropped = [event for event in self.owner.events if event[0] == "dropped"]
        self.assertEqual(len(dropped), 3)  # 5 sent, 7 for a queue of 4
        self.protocol.transport.drain()
        self.assertEqual(self.protocol.frames, [frame(n) for n in (0, 1, 2, 3, 4, 8, 9, 10, 11)])

    def test_stalled_past_the_timeout_is_dropped_and_frames_kept(self):
        """Not drained within stall_timeout: the connection is aborted; the queue waits for the next one."""
        for number in range(7):
            self.link.send(frame(number))
        self.clock.advance(5.0)
        self.assertTrue(self.protocol.dropped)
        self.link.closed(self.protocol, "connection lost")
        self.assertFalse(self.link.stalled)
        again = UpstreamProtocolStandIn()
        self.link.opened(again)
        self.assertEqual(again.frames, [frame(5), frame(6)])

    def test_drained_while_closing_keeps_the_queue_for_the_next_connection(self):
        """A connection that drains while closing sends nothing more: the queue waits for the next one."""
        for number in range(7):
            self.link.send(frame(number))
        self.protocol.state = 2  # closing
        self.protocol.transport.drain()
        self.assertEqual(len(self.protocol.frames), 5)
        self.assertEqual(len(self.link.queue), 2)

    def test_pause_reading_holds_across_reconnection(self):
        """Reading paused for the station's sake stays paused on a new connection, until resumed."""
        self.link.pause_reading()
        self.assertFalse(self.protocol.transport.reading)
        self.link.closed(self.protocol, "connection lost")
        again = UpstreamProtocolStandIn()
        self.link.opened(again)
        self.assertFalse(again.transport.reading)
        self.link.resume_reading()
        self.assertTrue(again.transport.reading)

    def test_stopping_reads_again_for_the_close_handshake(self):
        """A link stopped while its reading is paused reads again, so its close handshake can finish."""
        self.link.pause_reading()
        self.link.stop()
        self.assertTrue(self.protocol.transport.reading)


class StationProtocolStandIn:
    STATE_OPEN = 3
    state = 3
    peer = "tcp4:127.0.0.1:5000"

    def __init__(self) -> None:
        self.transport = SocketTransport()
        self.closed_with = None
        self.dropped = False

    def sendMessage(self, payload, isBinary):
        self.transport.write(payload)

    def sendCloseFrame(self, code, reason, isReply):
        self.closed_with = code

    def dropConnection(self, abort=False):
        self.dropped = abort

    def when_closed(self):
        return succeed(None)


class LinkStandIn:
    def __init__(self) -> None:
        self.reading = True
        self.stopped = False

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def stop(self):
        self.stopped = True
        return succeed(None)


class Silent:
    def __getattr__(self, name):
        return lambda *args: None


class StationStallTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.limits = WriteLimits(self.clock, LIMIT, 5.0, FastPath())
        self.protocol = StationProtocolStandIn()
        self.session = StationSession(
            "CP_1", self.protocol, self.clock, lambda session: None, Silent(), self.limits
        )
        self.session.links = {"primary": LinkStandIn(), "secondary": LinkStandIn()}
        self.session.relay = StationRelay(
            "CP_1", {name: f"ws://127.0.0.1:9/{name}/CP_1" for name in self.session.links}
        )
        self.session.station_open()

    def overfill(self) -> None:
        self.session._to_station(b"x" * (LIMIT + 70 * KIB))
        self.session._to_station(b"x")

    def test_full_station_pauses_itself_and_its_upstream_links(self):
        """Over the limit: no reading from the station nor from its upstream links; once drained, all read again."""
        self.overfill()
        self.assertTrue(self.session.stalled)
        self.assertFalse(self.protocol.transport.reading)
        self.assertEqual([link.reading for link in self.session.links.values()], [False, False])
        self.assertEqual(self.limits.stalls, {"station": 1})
        self.protocol.transport.drain()
        self.assertTrue(self.protocol.transport.reading)
        self.assertEqual([link.reading for link in self.session.links.values()], [True, True])

    def test_stalled_station_is_closed_with_1008_and_dropped(self):
        """Not drained within stall_timeout: close code 1008, connection dropped, its upstream links stopped."""
        self.overfill()
        self.clock.advance(5.0)
        self.assertEqual((self.protocol.closed_with, self.protocol.dropped), (NOT_READING, True))
        self.assertEqual([link.stopped for link in self.session.links.values()], [True, True])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class WriteLimitsConfigTests(SynchronousTestCase):
    """limits.max_write_buffer and limits.stall_timeout: defaults, checks, a change named by a reload."""

    PRIMARY = "ws://127.0.0.1:9/"

    def test_defaults_and_set(self):
        config = config_from_mapping({"primary_url": self.PRIMARY})
        self.assertEqual((config.max_write_buffer, config.stall_timeout), (1024 * 1024, 60.0))
        config = config_from_mapping(
            {"primary_url": self.PRIMARY, "limits": {"max_write_buffer": 65536, "stall_timeout": 0.5}}
        )
        self.assertEqual((config.max_write_buffer, config.stall_timeout), (65536, 0.5))

    def test_errors(self):
        for limits, text in (
            ({"max_write_buffer": 4096}, "limits.max_write_buffer: must be at least 65536, got 4096"),
            ({"max_write_buffer": 1e6}, "limits.max_write_buffer: must be a whole number, got 1000000.0"),
            ({"stall_timeout": 0}, "limits.stall_timeout: must be at least 0.1, got 0"),
            ({"stall_timeout": "1m"}, "limits.stall_timeout: must be a number, got '1m'"),
        ):
            with self.assertRaises(ConfigError) as caught:
                config_from_mapping({"primary_url": self.PRIMARY, "limits": limits})
            self.assertEqual(str(caught.exception), text)

    def test_reload_names_the_keys_for_a_restart(self):
        old = config_from_mapping({"primary_url": self.PRIMARY})
        new = config_from_mapping(
            {"primary_url": self.PRIMARY, "limits": {"max_write_buffer": 65536, "stall_timeout": 5}}
        )
        self.assertEqual(compare_configs(old, new).restart, ("limits.max_write_buffer", "limits.stall_timeout"))
