"""
The notifier's side of cluster alerts, driven by a Clock and a scripted AlertSharing
whose answers the test gives when it wants: what waits for the cluster, what never
does, and what the cluster's answers change.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import NotifyConfig
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.notify.names import StationNames
from ocppproxy.notify.service import NotifierService
from ocppproxy.notify.sharing import LocalOnly

PRIMARY_URL = "ws://csms.example/ocpp/"


def status(connector: int, value: str):
    body = {"connectorId": connector, "errorCode": "NoError", "status": value}
    return parse_frame(json.dumps([2, f"{connector}-{value}", "StatusNotification", body]))


class ScriptedSharing:
    """An AlertSharing whose Deferreds the test fires; it records what the notifier told it."""

    shared = True

    def __init__(self) -> None:
        self.claims: list[Deferred] = []
        self.arrivals: list[Deferred] = []
        self.loads: list[Deferred] = []
        self.saved: list[tuple] = []
        self.left: list[str] = []
        self.moved: set[str] = set()
        self.counted = 0
        self.held_back_here: list[str] = []

    def count_alert(self, kind, subject, window):
        # As if other instances had already sent two alerts of this kind in the window.
        self.counted += 1
        return succeed(self.counted + 2)

    def claim_alert(self, kind, subject, hold):
        self.claims.append(Deferred())
        return self.claims[-1]

    def held_back(self, kind, subject, station_id, window):
        self.held_back_here.append(station_id)

    def gather_held(self, kind, subject, station_ids):
        # As if another instance had held one back too.
        return succeed([*station_ids, "CP_elsewhere"])

    def station_arrived(self, station_id, window):
        self.arrivals.append(Deferred())
        return self.arrivals[-1]

    def station_left(self, station_id, window):
        self.left.append(station_id)

    def moved_since(self, station_id, since):
        return station_id in self.moved

    def load_statuses(self, station_id):
        self.loads.append(Deferred())
        return self.loads[-1]

    def save_status(self, station_id, place, status):
        self.saved.append((station_id, place, status))


class SharedNotifierTests(SynchronousTestCase):
    def make(self, *events, sharing=None, burst_limit=0):
        self.clock = Clock()
        self.alerts = []
        # Without a burst limit, each alert counts here.
        settings = NotifyConfig(
            events=frozenset(events), flap_window=30.0, upstream_down_after=120.0, burst_limit=burst_limit
        )

        def channel(alert):
            self.alerts.append(alert)
            return succeed(None)

        self.sharing = sharing if sharing is not None else ScriptedSharing()
        notifier = NotifierService(
            settings,
            StationNames({}),
            self.clock,
            {"test": channel},
            {"primary": PRIMARY_URL},
            lambda _: 0,
            sharing=self.sharing,
        )
        notifier.startService()
        self.addCleanup(notifier.stopService)
        return notifier

    def keys(self):
        return [alert.key for alert in self.alerts]

    def test_frames_wait_for_the_last_statuses_and_keep_their_order(self):
        """
        Until the cluster answers, a new station's frames wait; then they are judged in
        order against what another instance saw: a repeated Faulted is no alert, the change after it is.
        """
        notifier = self.make("con_status_faulted", "con_status_available")
        notifier.station_connected("CP_1", "peer")
        notifier.station_frame("CP_1", status(1, "Faulted"))
        notifier.station_frame("CP_1", status(1, "Available"))
        notifier.station_frame("CP_1", status(1, "Faulted"))
        self.assertEqual(self.alerts, [])
        (load,) = self.sharing.loads
        load.callback({(None, 1): ("Faulted", "NoError", None)})
        self.assertEqual(self.keys(), ["con_status_available", "con_status_faulted"])

    def test_status_changes_are_saved_repeats_are_not(self):
        """Each change of a connector's status is handed to the cluster once; a repeat is not."""
        notifier = self.make()
        notifier.station_connected("CP_1", "peer")
        self.sharing.loads[0].callback({})
        for value in ("Available", "Available", "Charging"):
            notifier.station_frame("CP_1", status(2, value))
        self.assertEqual(
            self.sharing.saved,
            [("CP_1", (None, 2), ("Available", "NoError", None)), ("CP_1", (None, 2), ("Charging", "NoError", None))],
        )

    def test_a_station_that_floods_while_loading_is_judged_without_waiting(self):
        """Past 100 waiting frames, what waits is judged at once, in order; the late answer changes nothing."""
        notifier = self.make("con_status_faulted", "con_status_available")
        notifier.station_connected("CP_1", "peer")
        for _ in range(50):
            notifier.station_frame("CP_1", status(1, "Faulted"))
            notifier.station_frame("CP_1", status(1, "Available"))
        self.assertEqual(self.alerts, [])
        notifier.station_frame("CP_1", status(1, "Faulted"))
        self.assertEqual(len(self.alerts), 101)
        self.sharing.loads[0].callback({(None, 1): ("Available", "NoError", None)})
        notifier.station_frame("CP_1", status(1, "Faulted"))
        self.assertEqual(len(self.alerts), 101)

    def test_connected_alert_waits_for_where_the_station_was(self):
        """connected_to_proxy goes out once the cluster says the station is new, not when it came from elsewhere."""
        notifier = self.make("connected_to_proxy")
        notifier.station_connected("CP_1", "peer")
        notifier.station_connected("CP_2", "peer")
        self.assertEqual(self.alerts, [])
        new, moved = self.sharing.arrivals
        new.callback(False)
        moved.callback(True)
        self.assertEqual([alert.station_id for alert in self.alerts], ["CP_1"])

    def test_disconnection_not_sent_when_the_station_went_elsewhere(self):
        """A disconnection held for the flap window is dropped if another instance claimed the station meanwhile."""
        notifier = self.make("disconnected_from_proxy")
        for station_id in ("CP_1", "CP_2"):
            notifier.station_connected(station_id, "peer")
            notifier.station_disconnected(station_id, 4000, "replaced")
        self.assertEqual(self.sharing.left, ["CP_1", "CP_2"])
        self.sharing.moved.add("CP_1")
        self.clock.advance(30)
        self.assertEqual([alert.station_id for alert in self.alerts], ["CP_2"])

    def test_upstream_down_sent_only_by_the_claim_winner(self):
        """upstream_down waits for its claim: lost, nothing is sent; won, it is."""
        for ours, expected in ((False, []), (True, ["upstream_down"])):
            notifier = self.make("upstream_down")
            notifier.upstream_disconnected("CP_1", "primary", PRIMARY_URL + "CP_1", "refused")
            self.clock.advance(120)
            self.assertEqual(self.alerts, [])
            self.sharing.claims[0].callback(ours)
            self.assertEqual(self.keys(), expected)

    def test_burst_counted_by_the_cluster(self):
        """
        Two alerts of the kind already went out elsewhere: of five stations here, three go
        out (limit 5), two are held back for the cluster's summary, which names them and
        the one held back elsewhere at the window's end.
        """
        notifier = self.make("con_status_faulted", burst_limit=5)
        for number in range(5):
            notifier.station_connected(f"CP_{number}", "peer")
            self.sharing.loads[-1].callback({})
            notifier.station_frame(f"CP_{number}", status(1, "Faulted"))
        self.assertEqual([alert.station_id for alert in self.alerts], ["CP_0", "CP_1", "CP_2"])
        self.assertEqual(self.sharing.held_back_here, ["CP_3", "CP_4"])
        self.clock.advance(10)
        self.assertEqual(self.alerts[-1].details["station_ids"], "CP_3, CP_4, CP_elsewhere")

    def test_single_instance_holds_nothing(self):
        """With LocalOnly, every alert goes out at once, as it always did."""
        notifier = self.make("connected_to_proxy", "con_status_faulted", "upstream_down", sharing=LocalOnly())
        notifier.station_connected("CP_1", "peer")
        notifier.station_frame("CP_1", status(1, "Faulted"))
        notifier.upstream_disconnected("CP_1", "primary", PRIMARY_URL + "CP_1", "refused")
        self.clock.advance(120)
        self.assertEqual(self.keys(), ["connected_to_proxy", "con_status_faulted", "upstream_down"])
