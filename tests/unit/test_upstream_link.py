"""UpstreamLink's reconnect policy and queue, driven by a Clock and a fake endpoint."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ReconnectPolicy
from ocppproxy.wire.upstream import UpstreamLink
from ocppproxy.wire.upstream_protocol import UpstreamProtocol


class RefusingEndpoint:
    """A client endpoint whose every connection attempt is refused; counts attempts."""

    def __init__(self) -> None:
        self.attempts = 0

    def connect(self, factory):
        self.attempts += 1
        return fail(ConnectionRefusedError("127.0.0.1:1"))


class Owner:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def from_upstream(self, name, payload):
        self.events.append(("frame", name))

    def upstream_connected(self, name):
        self.events.append(("connected", name))

    def upstream_disconnected(self, name, reason):
        self.events.append(("disconnected", name))

    def upstream_attempt_failed(self, name, reason):
        self.events.append(("attempt_failed", name))

    def upstream_gave_up(self, name):
        self.events.append(("gave_up", name))

    def upstream_frame_dropped(self, name):
        self.events.append(("dropped", name))


class ReconnectTests(SynchronousTestCase):
    def make_link(self, max_attempts=4, queue_limit=3):
        self.clock = Clock()
        self.endpoint = RefusingEndpoint()
        self.owner = Owner()
        policy = ReconnectPolicy(initial_delay=5.0, factor=2.0, max_delay=12.0, max_attempts=max_attempts)
        return UpstreamLink(
            "secondary", "ws://127.0.0.1:1/ocpp/CP_1", "CP_1", self.owner, self.clock, policy, queue_limit,
            ["ocpp1.6"], {}, None, jitter=lambda: 0.0, endpoint=self.endpoint,
        )

    def test_retries_back_off_exponentially_up_to_max_delay(self):
        """Failed attempts are retried after initial_delay, then times factor, capped at max_delay."""
        link = self.make_link(max_attempts=10)
        link.start()
        waits = []
        for _ in range(4):
            (pending,) = self.clock.getDelayedCalls()
            waits.append(pending.getTime() - self.clock.seconds())
            self.clock.advance(waits[-1])
        self.assertEqual(waits, [5.0, 10.0, 12.0, 12.0])
        self.assertEqual(self.endpoint.attempts, 5)

    def test_gives_up_after_max_attempts(self):
        """After max_attempts failed attempts in a row the link stops and tells its owner once."""
        link = self.make_link(max_attempts=3)
        link.start()
        self.clock.advance(5.0)
        self.clock.advance(10.0)
        self.clock.advance(0)
        self.assertEqual(self.endpoint.attempts, 3)
        self.assertEqual(self.owner.events, [("attempt_failed", "secondary")] * 3 + [("gave_up", "secondary")])
        self.assertTrue(link.gave_up)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(1000)
        self.assertEqual(self.endpoint.attempts, 3)

    def test_queue_keeps_newest_frames_while_away(self):
        """Frames sent while the link is down are queued, bounded, the oldest dropped."""
        link = self.make_link(queue_limit=3)
        link.start()
        for number in range(5):
            link.send(b"[2,\"%d\",\"Heartbeat\",{}]" % number)
        self.assertEqual(len(link.queue), 3)
        self.assertEqual(link.queue.dropped, 2)
        self.assertEqual(link.queue.drain()[0], b"[2,\"2\",\"Heartbeat\",{}]")
        self.assertEqual(self.owner.events.count(("dropped", "secondary")), 2)

    def test_stop_cancels_retries(self):
        """Stopping the link cancels the pending retry and fires at once."""
        link = self.make_link()
        link.start()
        stopped = link.stop()
        self.assertIsNone(self.successResultOf(stopped))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.owner.events, [("attempt_failed", "secondary")])


class ClosingProtocol:
    """Stands for an Autobahn protocol whose close handshake has started."""

    STATE_OPEN = 3
    state = 2

    def sendMessage(self, payload, isBinary):
        raise AssertionError("must not send on a closing connection")


class ClosingLinkTests(SynchronousTestCase):
    def test_frames_for_a_closing_connection_are_queued(self):
        """A frame sent while the upstream connection is closing is queued for the next one, not lost."""
        policy = ReconnectPolicy(initial_delay=5.0, factor=2.0, max_delay=12.0, max_attempts=3)
        link = UpstreamLink(
            "primary", "ws://127.0.0.1:1/ocpp/CP_1", "CP_1", Owner(), Clock(), policy, 10,
            ["ocpp1.6"], {}, None, endpoint=RefusingEndpoint(),
        )
        link.protocol = ClosingProtocol()
        link.send(b'[2,"1","Heartbeat",{}]')
        self.assertEqual(link.queue.drain(), [b'[2,"1","Heartbeat",{}]'])


class OpenProtocol:
    """Stands for an open Autobahn protocol; records what is sent."""

    STATE_OPEN = 3
    state = 3
    websocket_protocol_in_use = "ocpp1.6"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.transport = StringTransport()
        self.transport.bufferSize = 65536

    def sendMessage(self, payload, isBinary):
        self.sent.append(payload)


class RecorderTests(SynchronousTestCase):
    """The frame recorder sees frames when they really go out to the upstream."""

    def test_sent_and_flushed_frames_are_recorded_when_sent(self):
        recorded = []
        policy = ReconnectPolicy(initial_delay=5.0, factor=2.0, max_delay=12.0, max_attempts=3)
        link = UpstreamLink(
            "primary", "ws://127.0.0.1:1/ocpp/CP_1", "CP_1", Owner(), Clock(), policy, 10,
            ["ocpp1.6"], {}, None, endpoint=RefusingEndpoint(),
            recorder=lambda *args: recorded.append(args),
        )
        link.send(b'[2,"1","Heartbeat",{}]')
        self.assertEqual(recorded, [])
        protocol = OpenProtocol()
        link.opened(protocol)
        link.send(b'[2,"2","Heartbeat",{}]')
        self.assertEqual(protocol.sent, [b'[2,"1","Heartbeat",{}]', b'[2,"2","Heartbeat",{}]'])
        self.assertEqual(
            recorded,
            [
                ("CP_1", "to_upstream", "primary", b'[2,"1","Heartbeat",{}]'),
                ("CP_1", "to_upstream", "primary", b'[2,"2","Heartbeat",{}]'),
            ],
        )


class WhenClosedTests(SynchronousTestCase):
    def test_already_closed_fires_at_once(self):
        """when_closed() asked after the connection closed fires at once (it used to wait for good)."""
        protocol = UpstreamProtocol()
        closed = []
        protocol.factory = SimpleNamespace(link=SimpleNamespace(closed=lambda proto, why: closed.append(why)))
        waiting = protocol.when_closed()
        protocol.onClose(True, 1000, None)
        self.assertEqual(closed, ["close code 1000"])
        self.successResultOf(waiting)
        self.successResultOf(protocol.when_closed())


class TCPTransport(StringTransport):
    """A memory transport that takes TCP options, and Autobahn's unregistering a producer it never registered."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        self.producer = None


class RefusingHandshakeEndpoint:
    """A client endpoint whose connections open (TCP) but whose server then refuses the upgrade with HTTP 404."""

    def __init__(self) -> None:
        self.attempts = 0
        self.refused = None

    def connect(self, factory):
        self.attempts += 1
        self.refused = protocol = factory.buildProtocol(None)  # ClientService's proxy around the link's protocol
        protocol.makeConnection(TCPTransport())
        protocol.dataReceived(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return succeed(protocol)

    def lose(self) -> None:
        """The refused handshake dropped the connection: it is lost (after ClientService saw it made)."""
        refused, self.refused = self.refused, None
        refused.connectionLost(Failure(ConnectionDone()))


class RefusedHandshakeTests(SynchronousTestCase):
    def test_refused_handshakes_count_and_back_off(self):
        """
        A WebSocket handshake refused after TCP connected is a failed attempt: told to the
        owner, the waits grow as for refused TCP connections, and after max_attempts the link gives up.
        """
        clock, owner, endpoint = Clock(), Owner(), RefusingHandshakeEndpoint()
        policy = ReconnectPolicy(initial_delay=5.0, factor=2.0, max_delay=12.0, max_attempts=3)
        link = UpstreamLink(
            "secondary", "ws://127.0.0.1:1/ocpp/CP_1", "CP_1", owner, clock, policy, 10,
            ["ocpp1.6"], {}, None, jitter=lambda: 0.0, endpoint=endpoint,
            websocket_options={"openHandshakeTimeout": 0, "closeHandshakeTimeout": 0},
        )
        link.start()
        endpoint.lose()
        waits = []
        for _ in range(2):
            (pending,) = clock.getDelayedCalls()
            waits.append(pending.getTime() - clock.seconds())
            clock.advance(waits[-1])
            endpoint.lose()
        clock.advance(0)
        self.assertEqual(waits, [5.0, 10.0])
        self.assertEqual(endpoint.attempts, 3)
        self.assertEqual(link.failed_attempts, 3)
        self.assertEqual(owner.events, [("attempt_failed", "secondary")] * 3 + [("gave_up", "secondary")])
        self.assertEqual(self.successResultOf(link.first_outcome).refused_status, 502)  # the stock path
        self.assertEqual(clock.getDelayedCalls(), [])
