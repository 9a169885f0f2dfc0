"""
StationSession carries out what its StationRelay decides: sends, closes, observer events
(isolated), log lines at their level, and the expiry timer on the reactor's clock.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.redact import Redactor
from ocppproxy.core.routes import Route
from ocppproxy.core.transactions import TransactionStore
from ocppproxy.logs import set_log_level
from ocppproxy.relay.session import StationSession
from ocppproxy.wire.upstream import HandshakeOutcome


class Transport:
    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass


class StationStandIn:
    """What the session uses of a StationProtocol: sends and closes are recorded."""

    STATE_OPEN = 3
    state = 3
    peer = "tcp4:127.0.0.1:5000"
    was_opened = True

    def __init__(self) -> None:
        self.transport = Transport()
        self.received: list[bytes] = []
        self.closed_with = None

    def sendMessage(self, payload, isBinary):
        self.received.append(payload)

    def sendCloseFrame(self, code, reason, isReply):
        self.closed_with = (code, reason.decode())
        self.state = 2

    def when_closed(self):
        return succeed(None)


class LinkStandIn:
    """What the session uses of an UpstreamLink: frames sent are recorded."""

    def __init__(self, name: str) -> None:
        self.url = f"ws://127.0.0.1:9/{name}/CP_1"
        self.sent: list[bytes] = []
        self.connected = False
        self.stopped = False

    def start(self):
        pass

    def send(self, payload):
        self.sent.append(payload)

    def stop(self):
        self.stopped = True
        return succeed(None)


class Recorder:
    """An observer that records events, and fails on the ones named in C{failing}."""

    def __init__(self, failing=()) -> None:
        self.events = []
        self.failing = failing

    def __getattr__(self, name):
        if name == "frame_crossed":
            raise AttributeError(name)  # an event observer, not a frame observer

        def record(*args):
            self.events.append(name)
            if name in self.failing:
                raise RuntimeError(f"observer bug in {name}")

        return record


class SessionEffectTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.station = StationStandIn()
        self.observer = Recorder()
        self.session = StationSession("CP_1", self.station, self.clock, lambda session: None, self.observer)
        self.links = {"primary": LinkStandIn("primary"), "secondary": LinkStandIn("secondary")}
        config = SimpleNamespace(handshake_timeout=10, pending_call_timeout=40.0, failover=False, upstream_calls={})
        self.session.attach(self.links, ["ocpp1.6"], config, TransactionStore())
        self.session.subprotocol = "ocpp1.6"
        self.session.relay.use_subprotocol("ocpp1.6")
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def lines(self, level):
        return [formatEvent(event) for event in self.logged if event.get("log_level") == level]

    def test_sends_go_where_the_relay_says_and_a_failing_observer_changes_nothing(self):
        """A station CALL reaches both upstreams even though the observer raises on it; its failure is logged."""
        self.observer.failing = ("station_frame",)
        self.session.from_station(b'[2,"1","Heartbeat",{}]', False)
        self.assertEqual([link.sent for link in self.links.values()], [[b'[2,"1","Heartbeat",{}]']] * 2)
        self.assertIn("station CP_1: observer failed on station_frame", self.lines(LogLevel.critical))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_log_lines_keep_their_level(self):
        """A late answer is a warning with the station id, as before the core returned effects."""
        self.session.from_upstream("primary", b'[3,"gone",{}]')
        self.assertEqual(
            self.lines(LogLevel.warn),
            [
                "station CP_1: CALLRESULT gone from primary dropped: primary answer to no pending station CALL (late or unknown)"
            ],
        )
        self.assertEqual(self.station.received, [])

    def test_expiry_timer_follows_the_relay(self):
        """The waiting CALL goes out when the outstanding one times out, on the clock; then no timer is left."""
        self.session.from_upstream("primary", b'[2,"a","Reset",{}]')
        self.clock.advance(10)
        self.session.from_upstream("secondary", b'[2,"b","Reset",{}]')
        self.assertEqual(self.station.received, [b'[2,"a","Reset",{}]'])
        self.clock.advance(29.9)
        self.assertEqual(self.station.received, [b'[2,"a","Reset",{}]'])
        self.clock.advance(0.1)
        self.assertEqual(self.station.received, [b'[2,"a","Reset",{}]', b'[2,"b","Reset",{}]'])
        self.session.from_station(b'[3,"b",{}]', False)
        self.assertEqual(self.links["secondary"].sent, [b'[3,"b",{}]'])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_upstream_left_closes_the_station_and_its_links(self):
        """The last upstream dropping closes the station with 1013, stops its links and cancels the timer."""
        self.session.upstream_connected("primary")
        self.session.from_upstream("primary", b'[2,"a","Reset",{}]')
        self.session.upstream_disconnected("primary", "connection lost")
        self.assertEqual(self.station.closed_with, (1013, "no central system connected, try again later"))
        self.assertEqual([link.stopped for link in self.links.values()], [True, True])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.observer.events, ["upstream_connected", "upstream_frame", "upstream_disconnected"])

    def test_unknown_effect_raises(self):
        """An effect the session does not know is a bug: it raises, it never closes the station in its place."""
        with self.assertRaises(TypeError):
            self.session._carry_out([object()])
        self.assertIsNone(self.station.closed_with)

    def test_debug_lines_mask_credentials(self):
        """At debug, a central system's frame is logged with the station's password masked, and relayed whole."""
        set_log_level("debug")
        self.addCleanup(set_log_level, "info")
        frame = b'[2,"c","ChangeConfiguration",{"key":"AuthorizationKey","value":"s3cret"}]'
        self.session.from_upstream("primary", frame)
        self.assertEqual(self.station.received, [frame])
        self.assertIn(
            'station CP_1: primary -> [2,"c","ChangeConfiguration",{"key":"AuthorizationKey","value":"***"}]',
            self.lines(LogLevel.debug),
        )
        self.assertNotIn("s3cret", "".join(formatEvent(event) for event in self.logged))

    def test_failure_line_masks_the_frame(self):
        """A frame whose relaying fails is quoted in the failure line with the redact keys masked."""
        session = StationSession(
            "CP_1", self.station, self.clock, lambda session: None, self.observer, redactor=Redactor(["idTag"])
        )
        session.relay = None  # relaying then raises
        session.from_station(b'[2,"1","Authorize",{"idTag":"TAG1"}]', False)
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)
        shown = "".join(formatEvent(event) for event in self.logged)
        self.assertIn('{"idTag":"***"}', shown)
        self.assertNotIn("TAG1", shown)


class NewLinkStandIn(LinkStandIn):
    """A link a change of route asks for: started, offered a subprotocol, its first handshake told on demand."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.started = False
        self.subprotocols = None
        self.first_outcome = Deferred()

    def start(self):
        self.started = True

    def set_subprotocols(self, subprotocols):
        self.subprotocols = subprotocols


class SessionRouteChangeTests(SynchronousTestCase):
    """The session opens and closes links as a change of route decides, and tells the relay a failed opening."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.station = StationStandIn()
        self.session = StationSession("CP_1", self.station, self.clock, lambda session: None, Recorder())
        self.links = {"primary": LinkStandIn("primary"), "secondary": LinkStandIn("secondary")}
        self.made = {}
        config = SimpleNamespace(handshake_timeout=10, pending_call_timeout=40.0, failover=False, upstream_calls={})
        self.session.attach(self.links, ["ocpp1.6"], config, TransactionStore(), self.make_link)
        self.session.subprotocol = "ocpp1.6"
        self.session.relay.use_subprotocol("ocpp1.6")
        self.session.upstream_connected("primary")
        self.session.upstream_connected("secondary")
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def make_link(self, name):
        self.made[name] = NewLinkStandIn(name)
        return self.made[name]

    def warnings(self):
        return [formatEvent(event) for event in self.logged if event.get("log_level") == LogLevel.warn]

    def test_links_opened_and_closed(self):
        """A new mirror's link is made, offered the station's subprotocol and started; the one that left is stopped."""
        secondary = self.links["secondary"]
        self.session.change_route(Route("primary", ("third",)))
        third = self.made["third"]
        self.assertEqual((third.started, third.subprotocols), (True, ["ocpp1.6"]))
        self.assertIs(self.session.links["third"], third)
        self.assertTrue(secondary.stopped)
        self.assertNotIn("secondary", self.session.links)
        self.session.upstream_connected("third")
        self.session.from_station(b'[2,"h","Heartbeat",{}]', False)
        self.assertEqual(third.sent, [b'[2,"h","Heartbeat",{}]'])

    def test_refused_new_primary_keeps_the_route(self):
        """A new primary refusing its handshake: its link is stopped, the station keeps its primary, a warning says why."""
        self.session.change_route(Route("third", ("primary",)))
        self.made["third"].first_outcome.callback(HandshakeOutcome(refused_status=404, reason="Not Found"))
        self.assertTrue(self.made["third"].stopped)
        self.assertEqual(self.session.relay.route, Route("primary", ("secondary",)))
        self.assertIn(
            "station CP_1: its new primary third did not open (HTTP 404 Not Found): it keeps its route, primary primary",
            self.warnings(),
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_new_primary_silent_past_handshake_timeout(self):
        """A new primary with no handshake within handshake_timeout is given up the same way."""
        self.session.change_route(Route("third", ("primary",)))
        self.clock.advance(10)
        self.assertTrue(self.made["third"].stopped)
        self.assertIn(
            "station CP_1: its new primary third did not open (no handshake within 10 s (handshake_timeout)): it keeps"
            " its route, primary primary",
            self.warnings(),
        )
