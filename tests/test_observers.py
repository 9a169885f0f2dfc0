"""Observers: every observer gets every event, whatever another one does."""

from __future__ import annotations

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.relay.observers import Observers, isolated_recorder


class Broken:
    """An observer that raises on every event."""

    def station_connected(self, station_id, peer):
        raise ZeroDivisionError("broken observer")

    def station_disconnected(self, station_id, code, reason):
        raise ZeroDivisionError("broken observer")


class Taking:
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

    def test_failing_recorder_is_logged_not_raised(self) -> None:
        """A traffic log that raises is logged once per direction; the relaying path sees no exception."""
        calls = []

        def record(station_id, direction, upstream, payload):
            calls.append(payload)
            raise OSError("disk full")

        guarded = isolated_recorder(record)
        guarded("CP_1", "from_station", None, b"[2]")
        guarded("CP_1", "from_station", None, b"[3]")
        self.assertEqual(calls, [b"[2]", b"[3]"])
        (line,) = self.lines()
        self.assertIn("failed on frame from_station (station CP_1)", line)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_proxy_guards_its_recorder(self) -> None:
        """ProxyService hands its sessions a recorder that cannot raise into the relaying of a frame."""
        from twisted.internet.testing import MemoryReactorClock

        from ocppproxy.config.parse import config_from_mapping
        from ocppproxy.relay.proxy import ProxyService

        def record(station_id, direction, upstream, payload):
            raise OSError("disk full")

        config = config_from_mapping({"primary_url": "ws://127.0.0.1:1/"})
        proxy = ProxyService(config, MemoryReactorClock(), recorder=record)
        proxy.recorder("CP_1", "to_upstream", "primary", b"[2]")
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
