"""
What an open connection keeps per instance (ocppproxy.wire.slots, the fast path's lazy
send queue and UTF-8 validator, the upstream factories' shared timer): less, and the
rest still made when needed.
"""

from __future__ import annotations

import gc
from collections import deque

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.rates import ConnectCounter
from ocppproxy.core.station_calls import StationBoundCalls
from ocppproxy.fastpath.frames import PROCESS_TRAFFIC
from ocppproxy.wire.closing import CloseWaiters
from ocppproxy.wire.slots import share_attribute_keys
from ocppproxy.wire.station import StationFactory
from ocppproxy.wire.timers import CHUNK, LeanBatchedTimer, shared_batched_timer
from ocppproxy.wire.upstream_protocol import UpstreamFactory

from ..harness import RelayHarness
from .test_frame_equivalence import (
    FAST_PATH,
    SMALL_OPTIONS,
    FakeLink,
    autobahn_timers_on,
    frame,
    open_client,
    open_server,
)

# What an open protocol may keep in its dictionary: names Twisted, Autobahn or txaio also
# define on the class (a slot would hide that default until set).
CLASS_DEFAULTED = {"transport", "factory", "connected", "peer", "_valid_events"}
MASK = b"\x01\x02\x03\x04"


class OpenProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        timers = autobahn_timers_on(self.clock)
        timers.__enter__()
        self.addCleanup(timers.__exit__, None, None, None)

    def test_open_station_keeps_its_state_in_slots(self):
        """An open station connection keeps none of Autobahn's per-connection state in a dictionary."""
        protocol, _, _ = open_server("proxy", SMALL_OPTIONS, self.clock)
        self.assertLessEqual(set(vars(protocol)), CLASS_DEFAULTED)

    def test_open_upstream_keeps_its_state_in_slots(self):
        """Nor does an open upstream connection."""
        protocol, _, _ = open_client("proxy", SMALL_OPTIONS, self.clock)
        self.assertLessEqual(set(vars(protocol)), CLASS_DEFAULTED)

    def test_open_connection_forgets_the_parsed_handshake(self):
        """Once open, neither side keeps what Autobahn parsed out of the opening handshake."""
        server, _, _ = open_server("proxy", SMALL_OPTIONS, self.clock)
        client, _, _ = open_client("proxy", SMALL_OPTIONS, self.clock)
        for name in ("http_status_line", "http_request_path", "http_request_params", "websocket_protocols", "_wskey"):
            self.assertIsNone(getattr(server, name))
        self.assertIsNone(client.http_status_line)
        self.assertEqual((server.transport_details, client.transport_details), (None, None))
        self.assertIsNone(client.websocket_key)

    def test_event_list_shared_results_made_for_a_listener(self):
        """Connections share txaio's list of valid events; the results dictionary comes with a listener, and fire() works."""
        server, _, _ = open_server("proxy", SMALL_OPTIONS, self.clock)
        other, _, _ = open_server("proxy", SMALL_OPTIONS, self.clock)
        client, _, _ = open_client("proxy", SMALL_OPTIONS, self.clock)
        self.assertIs(server._valid_events, other._valid_events)
        self.assertIsNone(server._results)
        self.assertIsNone(client._results)
        self.assertEqual(self.successResultOf(server.fire("message", b"x")), [])  # nobody listens
        heard = []
        server.on("message", lambda payload, is_binary=False: heard.append(payload))
        self.successResultOf(server.fire("message", b"x", is_binary=False))
        self.assertEqual(heard, [b"x"])
        self.assertIn("message", server._results)
        self.assertIsNone(other._results)
        with self.assertRaises(RuntimeError):
            server.on("no-such-event", lambda: None)

    def test_open_connections_count_traffic_in_one_object(self):
        """Once open, both sides count their traffic in the process's TrafficStats, not one each; it still counts."""
        server, _, _ = open_server("proxy", SMALL_OPTIONS, self.clock)
        client, _, _ = open_client("proxy", SMALL_OPTIONS, self.clock)
        self.assertIs(server.trafficStats, PROCESS_TRAFFIC)
        self.assertIs(client.trafficStats, PROCESS_TRAFFIC)
        before = PROCESS_TRAFFIC.outgoingOctetsWireLevel
        server.sendData(b"\x8a\x00")  # what Autobahn's own writes go through (a pong here)
        self.assertEqual(PROCESS_TRAFFIC.outgoingOctetsWireLevel, before + 2)

    def test_idle_connection_has_no_send_queue_nor_validator(self):
        """Open, relaying single-frame text messages and answering a ping: no send queue, no UTF-8 validator made."""
        protocol, transport, events = open_server("proxy", SMALL_OPTIONS, self.clock)
        protocol.dataReceived(frame(0x1, b'[2,"1","Heartbeat",{}]', mask=MASK) + frame(0x9, b"hi", mask=MASK))
        protocol.sendMessage(b'[3,"1",{}]')
        self.assertEqual(events.seen[-1], ("message", b'[2,"1","Heartbeat",{}]', False))
        self.assertIn(b"\x8a\x02hi", transport.value())  # the pong
        self.assertIsNone(protocol._send_queue)
        self.assertIsNone(protocol._utf8validator)

    def test_closed_deferred_made_when_asked_and_fired_at_close(self):
        """No "closed" Deferred until asked for; one asked for before the close fires at the close, with the protocol."""
        protocol, _, _ = open_server("proxy", SMALL_OPTIONS, self.clock)
        self.assertIsNone(protocol._is_closed)
        closed = protocol.is_closed
        self.assertNoResult(closed)
        protocol.dropConnection(abort=True)
        self.assertIs(self.successResultOf(closed), protocol)

    def test_closed_deferred_fired_when_never_asked(self):
        """Closed without anyone asking: Autobahn's resolve makes it then, fired."""
        protocol, _, _ = open_client("proxy", SMALL_OPTIONS, self.clock)
        protocol.dropConnection(abort=True)
        self.assertIs(self.successResultOf(protocol.is_closed), protocol)

    def test_send_queue_made_when_asked(self):
        """Autobahn's send queue is made on first use, then kept; an empty one assigned is as good as none."""
        protocol, _, _ = open_server("proxy", SMALL_OPTIONS, self.clock)
        queue = protocol.send_queue
        self.assertIsInstance(queue, deque)
        self.assertIs(protocol.send_queue, queue)
        protocol.send_queue = deque()
        self.assertIsNone(protocol._send_queue)

    def test_sync_write_goes_through_the_queue_made(self):
        """A synchronous write (Autobahn's queued path) still goes out, through the queue made for it."""
        protocol, transport, _ = open_server("proxy", SMALL_OPTIONS, self.clock)
        protocol.sendData(b"abc", sync=True)
        self.clock.advance(1)
        self.assertIsInstance(protocol._send_queue, deque)
        self.assertEqual(transport.value(), b"abc")

    def test_validator_made_for_a_fragmented_text_message(self):
        """A text message in fragments (Autobahn's own path) is validated: good text passes, bad UTF-8 closes with 1007."""
        protocol, transport, events = open_server("proxy", SMALL_OPTIONS, self.clock)
        protocol.dataReceived(frame(0x1, b"caf\xc3", fin=False, mask=MASK) + frame(0x0, b"\xa9", mask=MASK))
        self.assertEqual(events.seen[-1], ("message", "café".encode(), False))
        self.assertIsNotNone(protocol._utf8validator)
        protocol.dataReceived(frame(0x1, b"ab", fin=False, mask=MASK) + frame(0x0, b"\xff", mask=MASK))
        self.assertEqual(events.seen[-1], ("message", "café".encode(), False))
        self.assertTrue(transport.value().startswith(b"\x88"))
        self.assertEqual(int.from_bytes(transport.value()[2:4], "big"), 1007)


class SessionTests(SynchronousTestCase):
    def test_open_session_keeps_its_state_in_slots(self):
        """
        An open station's session (both links up, a call relayed) keeps in its dictionary
        at most the names its mixins give a class-level default.
        """
        harness = RelayHarness(self, secondary=True)
        station = harness.connect_station("CP_1")
        station.send('[2,"b-1","BootNotification",{}]')
        harness.flush()
        session = harness.proxy.sessions["CP_1"]
        self.assertTrue(station.opened)
        self.assertTrue(all(link.connected for link in session.links.values()))
        defaulted = {name for cls in type(session).__mro__ for name in vars(cls)}
        self.assertLessEqual(set(vars(session)), defaulted)


def _materialized(instance) -> bool:
    """Whether C{instance} has a dictionary of its own (not its class's shared keys): the garbage collector sees it."""
    return any(type(referent) is dict for referent in gc.get_referents(instance))


def _connection_class() -> type:
    class Connection:
        """Like Twisted's: some attributes set at once, some later in each instance's life."""

        def __init__(self) -> None:
            for number in range(13):
                setattr(self, f"early{number}", number)

        def write(self) -> None:
            self.dataBuffer, self.offset, self.producer, self.streamingProducer = b"", 0, object(), True

    return Connection


class SharedAttributeKeysTests(SynchronousTestCase):
    def test_late_names_without_sharing(self):
        """The CPython behaviour worked around: with many instances made first, a late name gives its own dictionary."""
        connection = _connection_class()
        made = [connection() for _ in range(200)]
        made[-1].write()
        self.assertTrue(_materialized(made[-1]))

    def test_late_names_shared_first(self):
        """With every name made known first, no instance needs a dictionary of its own."""
        connection = _connection_class()
        share_attribute_keys(connection, [*(f"early{n}" for n in range(13)), "dataBuffer", "offset", "producer"])
        share_attribute_keys(connection, ["streamingProducer"])
        made = [connection() for _ in range(200)]
        for instance in made:
            instance.write()
        self.assertFalse(any(_materialized(instance) for instance in made))


class PerStationContainerTests(SynchronousTestCase):
    def test_waiting_queue_made_for_the_first_waiting_call(self):
        """A station's CALL queue is no deque until a CALL has to wait; then it waits and goes out in turn."""
        calls = StationBoundCalls(30.0)
        self.assertNotIsInstance(calls._waiting, deque)
        self.assertEqual(calls.offer("primary", parse_frame(b'[2,"a","Reset",{}]'), b"a", 0.0)[0], "sent")
        self.assertNotIsInstance(calls._waiting, deque)
        self.assertEqual(calls.offer("secondary", parse_frame(b'[2,"b","Reset",{}]'), b"b", 0.0)[0], "waiting")
        self.assertIsInstance(calls._waiting, deque)
        upstream, sends = calls.answer("a", b"answer", 1.0)
        self.assertEqual((upstream, [send.payload for send in sends]), ("primary", [b"answer", b"b"]))

    def test_connect_times_bounded_list(self):
        """An id's accepted connections are a list of at most C{limit} times, the refusal as before."""
        counter = ConnectCounter(3)
        for second in range(5):
            counter.accepted("CP_1", float(second))
        self.assertEqual(counter._times["CP_1"], [2.0, 3.0, 4.0])
        self.assertEqual(counter.check("CP_1", 5.0).retry_after, 57)
        self.assertIsNone(counter.check("CP_1", 62.5))
        self.assertEqual(counter._times["CP_1"], [3.0, 4.0])


class UpstreamFactoryTests(SynchronousTestCase):
    def factory(self) -> UpstreamFactory:
        return UpstreamFactory(FakeLink(), SMALL_OPTIONS, FAST_PATH, url="ws://127.0.0.1:9/", reactor=Clock())

    def test_options_in_slots(self):
        """A link's factory keeps Autobahn's options in slots: its dictionary holds only the protocol class."""
        self.assertLessEqual(set(vars(self.factory())), {"protocol"})

    def test_one_timer_per_loop(self):
        """Every upstream factory shares one batched timer while txaio's loop is the same; another loop, another."""
        first, second = self.factory(), self.factory()
        self.assertIs(first._batched_timer, second._batched_timer)
        with autobahn_timers_on(Clock()):
            self.assertIsNot(self.factory()._batched_timer, first._batched_timer)

    def test_no_compression_accepted(self):
        """The shared compression-accept function accepts nothing, as Autobahn's own default."""
        self.assertIsNone(self.factory().perMessageCompressionAccept([object()]))


class LeanTimerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        timers = autobahn_timers_on(self.clock)
        timers.__enter__()
        self.addCleanup(timers.__exit__, None, None, None)
        self.timer = shared_batched_timer(self.clock)

    def test_lean_calls_run_when_due(self):
        """Calls are slotted objects, batched per 0.2 s bucket, run with their arguments once due."""
        self.assertIsInstance(self.timer, LeanBatchedTimer)
        ran = []
        first = self.timer.call_later(5, ran.append, "first")
        self.timer.call_later(5.1, ran.append, "second")
        self.assertFalse(hasattr(first, "__dict__"))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(4.9)
        self.assertEqual(ran, [])
        self.clock.advance(0.2)
        self.assertEqual(ran, ["first", "second"])

    def test_buckets_of_a_fifth_of_a_second_never_early_by_more(self):
        """Calls due within one second fall in 0.2 s buckets of their own, none run more than 0.2 s early (txaio truncated to the second)."""
        ran = []
        self.timer.call_later(0.9, ran.append, "0.9")
        self.timer.call_later(1.3, ran.append, "1.3")
        self.timer.call_later(1.9, ran.append, "1.9")
        self.assertEqual(len(self.clock.getDelayedCalls()), 3)
        self.clock.advance(0.79)
        self.assertEqual(ran, [])
        self.clock.advance(0.02)
        self.assertEqual(ran, ["0.9"])
        self.clock.advance(0.4)
        self.assertEqual(ran, ["0.9", "1.3"])
        self.clock.advance(0.6)
        self.assertEqual(ran, ["0.9", "1.3", "1.9"])

    def test_a_full_bucket_runs_in_chunks_spread_over_its_time(self):
        """120 calls due together run 50, 50, then 20, in three reactor turns within the bucket's 0.2 s."""
        ran = []
        for number in range(120):
            self.timer.call_later(30, ran.append, number)
        self.clock.advance(30)
        self.assertEqual(len(ran), CHUNK)
        self.clock.advance(0.2 / 3)
        self.assertEqual(len(ran), 2 * CHUNK)
        self.clock.advance(0.2 / 3)
        self.assertEqual(ran, list(range(120)))

    def test_cancelled_call_never_runs(self):
        """A cancelled call does not run; its bucket's timer goes once the bucket is empty."""
        ran = []
        call = self.timer.call_later(3, ran.append, "x")
        call.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5)
        self.assertEqual(ran, [])

    def test_keyword_arguments_as_txaio(self):
        """A call with keyword arguments is txaio's own, and runs as it does."""
        ran = []
        self.timer.call_later(1, lambda **kw: ran.append(kw), x=1)
        self.clock.advance(1.2)
        self.assertEqual(ran, [{"x": 1}])

    def test_station_and_upstream_factories_share_it(self):
        """The station factory's timer is the upstream factories' one."""
        station = StationFactory(None, self.clock, SMALL_OPTIONS, fast_path=FAST_PATH)
        upstream = UpstreamFactory(FakeLink(), SMALL_OPTIONS, FAST_PATH, url="ws://127.0.0.1:9/", reactor=self.clock)
        self.assertIs(station._batched_timer, self.timer)
        self.assertIs(upstream._batched_timer, self.timer)


class CloseWaitersTests(SynchronousTestCase):
    def test_list_made_for_the_first_waiter(self):
        """No list until someone waits; every waiter fires once closed, and a late one at once."""
        waiters = CloseWaiters()
        waiters._init_close_waiters()
        self.assertIsNone(waiters._close_waiters)
        first, second = waiters.when_closed(), waiters.when_closed()
        waiters._closing_now()
        waiters._release_close_waiters()
        self.assertEqual([self.successResultOf(first), self.successResultOf(second)], [None, None])
        self.assertIsNone(self.successResultOf(waiters.when_closed()))
