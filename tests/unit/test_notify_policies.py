"""The notifier's timer policies on their own, and the notifier forgetting the stations gone for a day, with a Clock."""

from __future__ import annotations

import json

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import NotifyConfig
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.notify.alert import StationEvent
from ocppproxy.notify.names import StationNames
from ocppproxy.notify.policies import (
    FORGET_AFTER,
    BurstLimiter,
    DepartedStations,
    FailoverBatches,
    FlapDamping,
    SilenceWatch,
    UpstreamDownWatch,
)
from ocppproxy.notify.service import NotifierService

DAY = FORGET_AFTER


def frame(*parts):
    return parse_frame(json.dumps(list(parts)))


def per_station_leftovers(notifier: NotifierService, station_id: str) -> list[str]:
    """
    Every mapping or set held by the notifier or one of its policies (one level down)
    that still names C{station_id}, as C{owner.attribute}: what it would keep forever.
    """
    found = []
    owners = [("notifier", notifier)]
    owners += [(name, value) for name, value in vars(notifier).items() if type(value).__module__.endswith("policies")]
    for owner_name, owner in owners:
        for name in getattr(owner, "__dict__", {}):
            value = getattr(owner, name)
            if isinstance(value, dict | set) and any(
                key == station_id or (isinstance(key, tuple) and station_id in key) for key in value
            ):
                found.append(f"{owner_name}.{name}")
    return found


class DepartedStationsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.forgotten: list[str] = []
        self.departed = DepartedStations(self.clock, self.forgotten.append)

    def test_forgotten_after_a_day(self) -> None:
        """A station gone for a day is forgotten then, not a second earlier."""
        self.departed.left("CP_1")
        self.clock.advance(DAY - 1)
        self.assertEqual(self.forgotten, [])
        self.clock.advance(1)
        self.assertEqual(self.forgotten, ["CP_1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_returning_station_is_kept(self) -> None:
        """A station back before the day is over is not forgotten; leaving again starts a new day."""
        self.departed.left("CP_1")
        self.clock.advance(DAY / 2)
        self.departed.returned("CP_1")
        self.clock.advance(DAY / 4)
        self.departed.left("CP_1")
        self.clock.advance(DAY * 3 / 4)
        self.assertEqual(self.forgotten, [])
        self.clock.advance(DAY / 4)
        self.assertEqual(self.forgotten, ["CP_1"])

    def test_one_timer_for_many_departures(self) -> None:
        """Thousands of departures cost one timer; each station is forgotten a day after it left, in order."""
        for number in range(1000):
            self.departed.left(f"CP_{number}")
            self.clock.advance(10)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(DAY - 5005)  # now a day after CP_499 left, and before CP_500 did
        self.assertEqual(self.forgotten, [f"CP_{number}" for number in range(500)])
        self.clock.advance(10_000)
        self.assertEqual(len(self.forgotten), 1000)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_cancels(self) -> None:
        """Stopping leaves no timer behind."""
        self.departed.left("CP_1")
        self.departed.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PolicyTests(SynchronousTestCase):
    """Each policy with its own Clock, raising through a list."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.raised: list[StationEvent] = []

    def test_flap_damping_holds_and_cancels(self) -> None:
        """A held alert goes out after its window unless cancelled; cancel says whether one was held."""
        flaps = FlapDamping(self.clock, self.raised.append)
        flaps.hold(("station", "CP_1"), StationEvent("disconnected_from_proxy", "CP_1", {}), 30)
        self.assertTrue(flaps.cancel(("station", "CP_1")))
        self.assertFalse(flaps.cancel(("station", "CP_1")))
        flaps.hold(("station", "CP_2"), StationEvent("disconnected_from_proxy", "CP_2", {}), 30)
        self.clock.advance(30)
        self.assertEqual([event.station_id for event in self.raised], ["CP_2"])

    def test_burst_limiter_summarises_the_rest(self) -> None:
        """Beyond the limit, the window's stations go out as one summary at its end."""
        bursts = BurstLimiter(self.clock, self.raised.append)
        held = [bursts.held(StationEvent("con_status_faulted", f"CP_{n}", {}), 2, 60) for n in range(5)]
        self.assertEqual(held, [False, False, True, True, True])
        self.clock.advance(60)
        (summary,) = self.raised
        self.assertEqual((summary.details["stations"], summary.details["station_ids"]), (3, "CP_2, CP_3, CP_4"))

    def test_silence_watch(self) -> None:
        """A watched station silent for twice its interval is reported once; forgetting it stops the watch."""
        silence = SilenceWatch(self.clock, self.raised.append)
        silence.heard("CP_1")
        silence.watch("CP_1", 60)
        self.clock.advance(120)
        self.clock.advance(500)
        self.assertEqual([event.key for event in self.raised], ["station_silent"])
        silence.forget("CP_1")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_upstream_down_once(self) -> None:
        """An upstream with no link after the delay is reported once, until a link is up again."""
        reports = []
        down = UpstreamDownWatch(self.clock, lambda upstream: 0, lambda upstream, since: reports.append(upstream))
        down.failing("primary", 120)
        self.clock.advance(120)
        down.failing("primary", 120)
        self.clock.advance(120)
        self.assertEqual(reports, ["primary"])
        down.up("primary")
        down.failing("primary", 120)
        self.clock.advance(120)
        self.assertEqual(reports, ["primary", "primary"])

    def test_failover_batches(self) -> None:
        """One station is named; several in one window are one alert."""
        batches = FailoverBatches(self.clock, self.raised.append)
        batches.add("failover_started", "CP_1", None, 60)
        self.clock.advance(60)
        batches.add("failover_started", "CP_1", None, 60)
        batches.add("failover_started", "CP_2", None, 60)
        self.clock.advance(60)
        self.assertEqual(
            [(event.station_id, event.details.get("stations")) for event in self.raised], [("CP_1", None), ("", 2)]
        )


class NotifierForgetsTests(SynchronousTestCase):
    """What the notifier keeps per station is dropped once the station has been gone for a day."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.alerts = []
        settings = NotifyConfig(
            events=frozenset({"station_silent", "con_status_faulted", "disconnected_from_proxy"}), flap_window=30.0
        )
        self.notifier = NotifierService(
            settings,
            StationNames({}),
            self.clock,
            {"test": lambda alert: self.alerts.append(alert) or succeed(None)},
            {"primary": "ws://csms.example/"},
            links_connected=lambda upstream: 0,
        )
        self.notifier.startService()

    def visit(self, station_id: str, leave: bool = True) -> None:
        """A station connects, boots (the primary gives it a heartbeat interval), reports a fault and leaves."""
        notifier = self.notifier
        notifier.station_connected(station_id, "peer")
        boot = {"chargePointVendor": "V", "chargePointModel": "M"}
        notifier.station_frame(station_id, frame(2, "b1", "BootNotification", boot))
        boot_answer = {"currentTime": "2026-01-01T00:00:00Z", "interval": 60, "status": "Accepted"}
        notifier.upstream_frame(station_id, "primary", frame(3, "b1", boot_answer))
        fault = {"connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted"}
        notifier.station_frame(station_id, frame(2, "s1", "StatusNotification", fault))
        if leave:
            notifier.station_disconnected(station_id, 1006, "lost")

    def test_nothing_kept_a_day_after_leaving(self) -> None:
        """Kept while gone less than a day; a day after it left, no map of the notifier names the station."""
        self.visit("CP_1")
        self.clock.pump([3600] * 23 + [3599])  # in steps: timers started by timers run too
        self.assertIn("notifier._trackers", per_station_leftovers(self.notifier, "CP_1"))
        self.clock.advance(1)
        self.assertEqual(per_station_leftovers(self.notifier, "CP_1"), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_leftover_check_sees_a_policy_map(self) -> None:
        """The check looks into the policies too: a watched station is found in the silence watch."""
        self.visit("CP_1", leave=False)
        self.assertIn("_silence._timers", per_station_leftovers(self.notifier, "CP_1"))

    def test_station_back_within_the_day_keeps_its_state(self) -> None:
        """A station back within the day is remembered: its connector already Faulted raises no second alert."""
        self.visit("CP_1")
        self.clock.advance(DAY / 2)
        self.visit("CP_1")
        self.clock.advance(DAY / 2 + 1)
        self.assertNotEqual(per_station_leftovers(self.notifier, "CP_1"), [])
        self.assertEqual([alert.key for alert in self.alerts].count("con_status_faulted"), 1)
