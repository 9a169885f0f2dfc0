"""Observers: every observer gets every event, whatever another one does."""

from __future__ import annotations

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

import re
from dataclasses import fields

from ocppproxy.core.observer import (
    FailoverEnded,
    FailoverStarted,
    FrameDropped,
    NullObserver,
    ProxyObserver,
    StationConnected,
    StationDisconnected,
    StationFrame,
    UpstreamAttemptFailed,
    UpstreamConnected,
    UpstreamDisconnected,
    UpstreamFrame,
)
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.relay.observers import Observers, frame_recorder


class Broken(NullObserver):
    """An observer that raises on every event."""

    def station_connected(self, station_id, peer):
        raise ZeroDivisionError("broken observer")

    def station_disconnected(self, station_id, code, reason):
        raise ZeroDivisionError("broken observer")


class Taking(NullObserver):
    """An observer that takes note of what it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple] = []

    def station_connected(self, station_id, peer):
        self.heard.append(("connected", station_id, peer))

    def station_disconnected(self, station_id, code, reason):
        self.heard.append(("disconnected", station_id, code))


class ObserversTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.log: list[dict] = []
        globalLogPublisher.addObserver(self.log.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.log.append)

    def lines(self) -> list[str]:
        return [formatEvent(event) for event in self.log]

    def test_a_failing_observer_hides_nothing_from_the_next(self) -> None:
        """The observer after a failing one still gets every event, in order, and nothing is raised."""
        taking = Taking()
        observers = Observers(Broken(), taking)
        observers.station_connected("CP_1", "tcp4:127.0.0.1:1")
        observers.station_disconnected("CP_1", 1000, "bye")
        self.assertEqual(taking.heard, [("connected", "CP_1", "tcp4:127.0.0.1:1"), ("disconnected", "CP_1", 1000)])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_failure_logged_once_with_observer_and_event(self) -> None:
        """Each failing observer and event is logged once, naming both, with the traceback; repeats are not."""
        observers = Observers(Taking(), Broken())
        for station_id in ("CP_1", "CP_2", "CP_3"):
            observers.station_connected(station_id, "peer")
        observers.station_disconnected("CP_1", 1006, None)
        tail = "its next failures on {0} are not logged"
        self.assertEqual(
            self.lines(),
            [
                "observer Broken failed on station_connected (station CP_1); " + tail.format("station_connected"),
                "observer Broken failed on station_disconnected (station CP_1); " + tail.format("station_disconnected"),
            ],
        )
        self.assertTrue(all(event.get("log_failure") is not None for event in self.log))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_failing_frame_observer_is_logged_not_raised(self) -> None:
        """A traffic log that raises is logged once per direction; the relaying path sees no exception."""
        calls = []

        class FailingLog:
            def frame_crossed(self, station_id, direction, upstream, payload):
                calls.append(payload)
                raise OSError("disk full")

        guarded = Observers(FailingLog()).record
        guarded("CP_1", "from_station", None, b"[2]")
        guarded("CP_1", "from_station", None, b"[3]")
        self.assertEqual(calls, [b"[2]", b"[3]"])
        (line,) = self.lines()
        self.assertIn("observer FailingLog failed on frame from_station (station CP_1)", line)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_frames_go_to_frame_observers_only(self) -> None:
        """The traffic log is one observer among the others: it sees the frames, the event observers do not."""
        frames = []

        class FrameLog:
            def frame_crossed(self, station_id, direction, upstream, payload):
                frames.append((station_id, direction, upstream, payload))

        taking = Taking()
        observers = Observers(taking, FrameLog())
        observers.record("CP_1", "to_upstream", "primary", b"[2]")
        observers.station_connected("CP_1", "peer")
        self.assertEqual(frames, [("CP_1", "to_upstream", "primary", b"[2]")])
        self.assertEqual(taking.heard, [("connected", "CP_1", "peer")])

    def test_no_frame_observer_no_recorder(self) -> None:
        """Without a frame observer, nothing is called per frame crossing the wire: the sessions get no recorder."""
        observers = Observers(Taking())
        self.assertIsNone(observers.record)
        self.assertIsNone(frame_recorder(observers))
        self.assertIsNone(frame_recorder(NullObserver()))

    def test_misspelt_observer_refused_at_start(self) -> None:
        """An observer whose method is misspelt is refused when the observers are put together, naming it."""
        methods = {name: method for name, method in vars(NullObserver).items() if name != "station_connected"}
        misspelt = type("Misspelt", (), {**methods, "station_conected": NullObserver.station_connected})
        error = self.assertRaises(TypeError, Observers, Taking(), misspelt())
        self.assertIn("Misspelt is neither a ProxyObserver (it lacks station_connected)", str(error))

    def test_every_event_reaches_its_method(self) -> None:
        """Each event of the core calls the observer method of the same name, through the fan-out, with its fields."""
        events = [
            StationConnected("CP_1", "peer"),
            StationDisconnected("CP_1", 1000, "bye"),
            UpstreamConnected("CP_1", "primary", "ws://a"),
            UpstreamDisconnected("CP_1", "primary", "ws://a", "gone"),
            UpstreamAttemptFailed("CP_1", "primary", "ws://a", "refused"),
            StationFrame("CP_1", parse_frame(b'[2,"1","Heartbeat",{}]'), b'[2,"1","Heartbeat",{}]'),
            UpstreamFrame("CP_1", "primary", parse_frame(b'[3,"1",{}]'), b'[3,"1",{}]'),
            FrameDropped("CP_1", "secondary"),
            FailoverStarted("CP_1"),
            FailoverEnded("CP_1", 2.5),
        ]
        heard = []

        class Every:
            pass

        for name in vars(ProxyObserver):
            if not name.startswith("_") and callable(getattr(ProxyObserver, name)):
                setattr(Every, name, lambda self, *args, name=name: heard.append((name, args)))
        for event in events:
            event.tell(Observers(Every()))
        expected = [
            (re.sub(r"(?<!^)([A-Z])", r"_\1", type(event).__name__).lower(), tuple(astuple_shallow(event)))
            for event in events
        ]
        self.assertEqual(heard, expected)

    def test_proxy_guards_its_recorder(self) -> None:
        """ProxyService's sessions record through the fan-out, which cannot raise into the relaying of a frame."""
        from twisted.internet.testing import MemoryReactorClock

        from ocppproxy.config.parse import config_from_mapping
        from ocppproxy.relay.proxy import ProxyService

        class FailingLog:
            def frame_crossed(self, station_id, direction, upstream, payload):
                raise OSError("disk full")

        config = config_from_mapping({"primary_url": "ws://127.0.0.1:1/"})
        proxy = ProxyService(config, MemoryReactorClock(), observer=Observers(FailingLog()))
        frame_recorder(proxy.observer)("CP_1", "to_upstream", "primary", b"[2]")
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


def astuple_shallow(event) -> list:
    """An event's fields in order, not copied."""
    return [getattr(event, field.name) for field in fields(event)]
