"""The notifier service's decisions, driven by a Clock: what fires, when, and what is held back."""

from __future__ import annotations

import json

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import NotifyConfig
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.routes import Route
from ocppproxy.notify.names import StationNames
from ocppproxy.notify.service import NotifierService

PRIMARY_URL = "ws://csms.example/ocpp/"


def frame(*parts):
    return parse_frame(json.dumps(list(parts)))


class NotifierTests(SynchronousTestCase):
    def make(self, *events, flap_window=30.0, connected_links=0, log=False, urls=None, stations_of=None, route_of=None):
        self.clock = Clock()
        self.alerts = []
        settings = NotifyConfig(
            events=frozenset(events), log=log, flap_window=flap_window, upstream_down_after=120.0, retry_delay=1.0
        )

        def channel(alert):
            self.alerts.append(alert)
            return succeed(None)

        self.notifier = NotifierService(
            settings,
            StationNames({"CP_1": "Depot Nord"}),
            self.clock,
            {"test": channel},
            urls or {"primary": PRIMARY_URL},
            links_connected=lambda upstream: connected_links,
            stations_of=stations_of,
            route_of=route_of or (lambda station_id: None),
        )
        self.notifier.startService()
        return self.notifier

    def keys(self):
        return [alert.key for alert in self.alerts]

    def test_disabled_events_send_nothing(self):
        """An event whose key is not enabled raises no alert."""
        notifier = self.make("con_status_faulted")
        notifier.station_connected("CP_1", "tcp4:10.0.0.1:5000")
        self.assertEqual(self.alerts, [])

    def test_connection_alert_names_the_station(self):
        """connected_to_proxy fires once, with the station's human name in the subject."""
        notifier = self.make("connected_to_proxy")
        notifier.station_connected("CP_1", "tcp4:10.0.0.1:5000")
        self.assertEqual(self.keys(), ["connected_to_proxy"])
        self.assertIn("Depot Nord", self.alerts[0].subject)

    def test_disconnection_reported_after_flap_window(self):
        """A disconnection is reported once the station has stayed away for the flap window."""
        notifier = self.make("disconnected_from_proxy")
        notifier.station_connected("CP_1", "peer")
        notifier.station_disconnected("CP_1", 1006, "lost")
        self.clock.advance(29)
        self.assertEqual(self.alerts, [])
        self.clock.advance(1)
        self.assertEqual(self.keys(), ["disconnected_from_proxy"])

    def test_flapping_station_raises_nothing(self):
        """A station that reconnects within the flap window raises neither alert."""
        notifier = self.make("connected_to_proxy", "disconnected_from_proxy")
        notifier.station_connected("CP_1", "peer")
        self.assertEqual(self.keys(), ["connected_to_proxy"])
        for _ in range(5):
            notifier.station_disconnected("CP_1", 1006, "lost")
            self.clock.advance(3)
            notifier.station_connected("CP_1", "peer")
        self.clock.advance(100)
        self.assertEqual(self.keys(), ["connected_to_proxy"])

    def test_replaced_connection_is_not_a_disconnection(self):
        """When a new connection replaces the old one, the old one's end raises no alert."""
        notifier = self.make("connected_to_proxy", "disconnected_from_proxy")
        notifier.station_connected("CP_1", "peer")
        notifier.station_connected("CP_1", "peer")
        notifier.station_disconnected("CP_1", 4000, "replaced")
        self.clock.advance(100)
        self.assertEqual(self.keys(), ["connected_to_proxy"])

    def test_transaction_ids_learnt_from_the_stations_own_primary(self):
        """Under named upstreams, the stop alert finds its start through the answer of the station's route's primary."""
        route = Route("csms-b", ("csms-a",))
        notifier = self.make("con_stop_transaction", route_of=lambda station_id: route)
        notifier.station_connected("CP_1", "peer")
        start = {"connectorId": 2, "idTag": "T", "meterStart": 1000, "timestamp": "2026-12-07T10:00:00Z"}
        notifier.station_frame("CP_1", frame(2, "s1", "StartTransaction", start))
        notifier.upstream_frame("CP_1", "csms-a", frame(3, "s1", {"transactionId": 500}))
        notifier.upstream_frame("CP_1", "csms-b", frame(3, "s1", {"transactionId": 77}))
        stop = {"transactionId": 77, "meterStop": 3000, "timestamp": "2026-12-07T11:00:00Z"}
        notifier.station_frame("CP_1", frame(2, "s2", "StopTransaction", stop))
        self.assertEqual(self.keys(), ["con_stop_transaction"])
        self.assertIn("Connector: 2\n", self.alerts[0].text)
        self.assertIn("Energy: 2.000 kWh\n", self.alerts[0].text)

    def test_answers_not_awaited_ask_no_route(self):
        """An answer the tracker does not wait for (a Heartbeat's, every relayed CALL) costs no route lookup;
        one it waits for still asks which upstream is the station's primary."""
        asked = []
        route = Route("primary", ("secondary",))
        notifier = self.make("con_stop_transaction", route_of=lambda station_id: asked.append(station_id) or route)
        notifier.station_connected("CP_1", "peer")
        notifier.station_frame("CP_1", frame(2, "h1", "Heartbeat", {}))
        notifier.upstream_frame("CP_1", "primary", frame(3, "h1", {"currentTime": "2026-12-07T10:00:00Z"}))
        notifier.upstream_frame("CP_1", "secondary", frame(3, "h1", {"currentTime": "2026-12-07T10:00:00Z"}))
        self.assertEqual(asked, [])
        start = {"connectorId": 2, "idTag": "T", "meterStart": 1000, "timestamp": "2026-12-07T10:00:00Z"}
        notifier.station_frame("CP_1", frame(2, "s1", "StartTransaction", start))
        notifier.upstream_frame("CP_1", "primary", frame(3, "s1", {"transactionId": 77}))
        self.assertEqual(asked, ["CP_1"])

    def test_upstream_added_by_a_reload_is_named_with_its_url(self):
        """After a reload that added an upstream, its upstream_down alert names its URL."""
        notifier = self.make("upstream_down", urls={"csms-a": "ws://a.example/ocpp/"})
        notifier.reconfigure(
            notifier.settings,
            notifier.names,
            upstream_urls={"csms-a": "ws://a.example/ocpp/", "csms-c": "ws://c.example/ocpp/"},
        )
        notifier.station_connected("CP_1", "peer")
        notifier.upstream_attempt_failed("CP_1", "csms-c", "ws://c.example/ocpp/CP_1", "refused")
        self.clock.advance(500)
        (alert,) = self.alerts
        self.assertEqual((alert.details["upstream"], alert.details["url"]), ("csms-c", "ws://c.example/ocpp/"))

    def test_status_change_alert(self):
        """A StatusNotification Faulted raises con_status_faulted naming the station and connector."""
        notifier = self.make("con_status_faulted")
        notifier.station_connected("CP_1", "peer")
        notifier.station_frame(
            "CP_1",
            frame(2, "1", "StatusNotification", {"connectorId": 2, "errorCode": "GroundFailure", "status": "Faulted"}),
        )
        self.assertEqual(self.keys(), ["con_status_faulted"])
        self.assertIn("Depot Nord", self.alerts[0].subject)
        self.assertIn("GroundFailure", self.alerts[0].text)

    def test_station_silent_after_twice_the_heartbeat_interval(self):
        """No frame for twice the heartbeat interval the primary gave raises station_silent, once."""
        notifier = self.make("station_silent")
        notifier.station_connected("CP_1", "peer")
        notifier.station_frame(
            "CP_1", frame(2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        )
        notifier.upstream_frame(
            "CP_1",
            "primary",
            frame(3, "b1", {"currentTime": "2026-01-01T00:00:00Z", "interval": 60, "status": "Accepted"}),
        )
        self.clock.advance(100)
        notifier.station_frame("CP_1", frame(2, "h1", "Heartbeat", {}))
        self.clock.advance(119)
        self.assertEqual(self.alerts, [])
        self.clock.advance(1)
        self.assertEqual(self.keys(), ["station_silent"])
        self.clock.advance(1000)
        self.assertEqual(self.keys(), ["station_silent"])

    def test_failed_attempts_are_not_disconnections(self):
        """disconnected_from_upstream fires once per real disconnection, never per failed retry."""
        notifier = self.make("disconnected_from_upstream", flap_window=0)
        notifier.upstream_disconnected("CP_1", "primary", PRIMARY_URL + "CP_1", "lost")
        for _ in range(10):
            notifier.upstream_attempt_failed("CP_1", "primary", PRIMARY_URL + "CP_1", "refused")
        self.assertEqual(self.keys(), ["disconnected_from_upstream"])
        self.assertIn("primary", self.alerts[0].subject + self.alerts[0].text)

    def test_upstream_down_is_one_alert_per_upstream(self):
        """Many stations failing to reach the primary raise one upstream_down alert, not one per station."""
        notifier = self.make("upstream_down")
        for number in range(20):
            notifier.station_connected(f"CP_{number}", "peer")
            notifier.upstream_attempt_failed(f"CP_{number}", "primary", PRIMARY_URL + f"CP_{number}", "refused")
        self.clock.advance(120)
        for number in range(20):
            notifier.upstream_attempt_failed(f"CP_{number}", "primary", PRIMARY_URL + f"CP_{number}", "refused")
        self.clock.advance(500)
        self.assertEqual(self.keys(), ["upstream_down"])

    def test_upstream_down_names_the_upstream_and_counts_its_stations(self):
        """
        upstream_down names the upstream (its name and URL) and counts the stations with it
        on their route, not every station connected: csms-b is on 3 routes of 20.
        """
        urls = {"csms-a": "ws://a.example/ocpp/", "csms-b": "wss://b.example/steve/"}
        routes = {f"CP_{number}": ("csms-a", "csms-b") if number < 3 else ("csms-a",) for number in range(20)}
        notifier = self.make(
            "upstream_down",
            urls=urls,
            stations_of=lambda upstream: sum(upstream in route for route in routes.values()),
        )
        for station_id in routes:
            notifier.station_connected(station_id, "peer")
        notifier.upstream_attempt_failed("CP_0", "csms-b", urls["csms-b"] + "CP_0", "refused")
        self.clock.advance(500)
        (alert,) = self.alerts
        self.assertEqual(
            (alert.key, alert.details["upstream"], alert.details["stations"]), ("upstream_down", "csms-b", 3)
        )
        self.assertEqual(alert.details["url"], urls["csms-b"])
        self.assertIn("csms-b central system wss://b.example/steve/ unreachable", alert.subject)
        self.assertIn("(3 stations)", alert.subject)

    def test_upstream_not_down_while_some_links_are_up(self):
        """If some stations are still connected to the upstream at the deadline, it is not reported down."""
        notifier = self.make("upstream_down", connected_links=3)
        notifier.upstream_attempt_failed("CP_1", "primary", PRIMARY_URL + "CP_1", "HTTP 404")
        self.clock.advance(500)
        self.assertEqual(self.alerts, [])

    def test_stop_sends_no_shutdown_alerts_and_leaves_no_timer(self):
        """Stopping the notifier raises no alert for stations closed by the shutdown and cancels every timer."""
        notifier = self.make("disconnected_from_proxy", "station_silent", "upstream_down")
        notifier.station_connected("CP_1", "peer")
        notifier.upstream_attempt_failed("CP_1", "primary", PRIMARY_URL + "CP_1", "refused")
        stopped = notifier.stopService()
        notifier.station_disconnected("CP_1", 1001, "shutdown")
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.alerts, [])

    def test_log_channel_writes_the_alert(self):
        """With notify.log the alert is written to the daemon's log at warning level."""
        from twisted.logger import LogLevel, globalLogPublisher

        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        notifier = self.make("connected_to_proxy", log=True)
        notifier.station_connected("CP_1", "peer")
        alerts = [event for event in seen if event.get("alert_key") == "connected_to_proxy"]
        self.assertEqual(len(alerts), 1)
        self.assertEqual(alerts[0]["log_level"], LogLevel.warn)

    def test_one_station_failover_alerts_name_it(self):
        """A single station failing over raises failover_started naming it, and failover_ended with the duration."""
        notifier = self.make("failover_started", "failover_ended")
        notifier.failover_started("CP_1")
        self.clock.advance(10)
        notifier.failover_ended("CP_1", 95.0)
        self.clock.advance(10)
        self.assertEqual(self.keys(), ["failover_started", "failover_ended"])
        self.assertIn("Depot Nord", self.alerts[0].subject)
        self.assertIn("after 95 s", self.alerts[1].subject)

    def test_many_stations_failing_over_get_one_summary(self):
        """When many stations fail over at once (the primary is down), one summary alert is sent."""
        notifier = self.make("failover_started")
        for number in range(50):
            notifier.failover_started(f"CP_{number}")
        self.clock.advance(10)
        self.assertEqual(self.keys(), ["failover_started"])
        self.assertIn("50 stations", self.alerts[0].subject)
        self.assertIn("CP_0", self.alerts[0].text)

    def test_restart_burst_gives_a_handful_of_alerts(self):
        """5,000 stations reconnecting after a restart: five alerts at once, then one summary naming the others."""
        notifier = self.make("connected_to_proxy")
        for number in range(5000):
            notifier.station_connected(f"CP_{number:04d}", "peer")
        self.assertEqual(len(self.alerts), 5)
        self.clock.advance(10)
        self.assertEqual(self.keys(), ["connected_to_proxy"] * 6)
        summary = self.alerts[-1]
        self.assertEqual(summary.station_id, "")
        self.assertIn("4995 more stations: connected to proxy", summary.subject)
        self.assertIn("CP_0005", summary.text)
        self.assertIn("and 4975 more", summary.text)

    def test_burst_window_restarts(self):
        """After a window ends, the next alerts of that kind go out one by one again."""
        notifier = self.make("connected_to_proxy")
        for number in range(7):
            notifier.station_connected(f"CP_{number}", "peer")
        self.clock.advance(10)
        notifier.station_connected("CP_LATE", "peer")
        self.assertEqual(len(self.alerts), 7)
        self.assertEqual(self.alerts[-1].station_id, "CP_LATE")

    def test_bursts_counted_per_event_and_upstream(self):
        """A burst of one kind does not hold back alerts of another kind or another upstream."""
        notifier = self.make("connected_to_upstream", "cp_status_faulted")
        for number in range(6):
            notifier.upstream_connected(f"CP_{number}", "primary", PRIMARY_URL)
        notifier.upstream_connected("CP_0", "secondary", "ws://other/")
        notifier.station_frame(
            "CP_0", frame(2, "s", "StatusNotification", {"connectorId": 0, "status": "Faulted", "errorCode": "NoError"})
        )
        self.assertEqual(len(self.alerts), 7)
        self.clock.advance(10)
        self.assertEqual(len(self.alerts), 8)
        self.assertIn("1 more station: connected to primary central system", self.alerts[-1].subject)

    def test_burst_limit_zero_sends_every_alert(self):
        """burst_limit 0 switches the summaries off."""
        self.make("connected_to_proxy")
        self.notifier.settings = NotifyConfig(events=frozenset({"connected_to_proxy"}), burst_limit=0)
        for number in range(20):
            self.notifier.station_connected(f"CP_{number}", "peer")
        self.assertEqual(len(self.alerts), 20)

    def test_misconfigured_channel_warned_once_at_start(self):
        """A channel disabled by its configuration is named in one warning at start-up."""
        from twisted.logger import globalLogPublisher

        seen = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        notifier = NotifierService(
            NotifyConfig(
                events=frozenset({"connected_to_proxy"}), channel_problems=(("email", "notify.email.to: is mandatory"),)
            ),
            StationNames({}),
            Clock(),
            {},
            {},
            links_connected=lambda upstream: 0,
        )
        notifier.startService()
        notifier.station_connected("CP_1", "peer")
        warnings = [event for event in seen if "disabled" in event.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["channel"], "email")
        self.assertIn("notify.email.to", warnings[0]["problem"])


class ReconfigureTests(SynchronousTestCase):
    """L{NotifierService.reconfigure}: a configuration reload applied to the running notifier."""

    def setUp(self):
        self.clock = Clock()
        self.old_alerts = []
        self.notifier = NotifierService(
            NotifyConfig(events=frozenset({"connected_to_proxy"}), flap_window=30.0, flush_timeout=5.0),
            StationNames({"CP_1": "Depot Nord"}),
            self.clock,
            {"old": self.old_channel},
            {"primary": PRIMARY_URL},
            links_connected=lambda upstream: 0,
        )
        self.notifier.startService()

    def old_channel(self, alert):
        self.old_alerts.append(alert)
        return succeed(None)

    def test_events_and_names_change_at_once(self):
        """After a reload, newly enabled events fire, disabled ones do not, with the new names."""
        self.notifier.reconfigure(
            NotifyConfig(events=frozenset({"disconnected_from_proxy"}), flap_window=0.0),
            StationNames({"CP_1": "Depot Sud"}),
        )
        self.notifier.station_connected("CP_1", "peer")
        self.notifier.station_disconnected("CP_1", 1006, "lost")
        self.assertEqual([alert.key for alert in self.old_alerts], ["disconnected_from_proxy"])
        self.assertIn("Depot Sud", self.old_alerts[0].subject)

    def test_connected_station_keeps_its_state(self):
        """A station connected before the reload is still known: its reconnection within the window is a flap."""
        self.notifier.station_connected("CP_1", "peer")
        self.notifier.reconfigure(
            NotifyConfig(events=frozenset({"connected_to_proxy", "disconnected_from_proxy"}), flap_window=10.0),
            StationNames({}),
        )
        self.notifier.station_disconnected("CP_1", 1006, "lost")
        self.clock.advance(5)
        self.notifier.station_connected("CP_1", "peer")
        self.clock.advance(100)
        self.assertEqual([alert.key for alert in self.old_alerts], ["connected_to_proxy"])

    def test_switched_off_event_is_not_raised_by_a_running_timer(self):
        """A disconnection pending in the flap window is not reported once its event is switched off."""
        self.notifier.reconfigure(NotifyConfig(events=frozenset({"disconnected_from_proxy"})), StationNames({}))
        self.notifier.station_connected("CP_1", "peer")
        self.notifier.station_disconnected("CP_1", 1006, "lost")
        self.notifier.reconfigure(NotifyConfig(events=frozenset()), StationNames({}))
        self.clock.advance(100)
        self.assertEqual(self.old_alerts, [])

    def test_station_silent_switched_on_watches_connected_stations(self):
        """Switching station_silent on watches the stations already connected."""
        self.notifier.station_connected("CP_1", "peer")
        boot = frame(2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        self.notifier.station_frame("CP_1", boot)
        self.notifier.upstream_frame(
            "CP_1",
            "primary",
            frame(3, "b1", {"currentTime": "2026-01-01T00:00:00Z", "interval": 60, "status": "Accepted"}),
        )
        self.notifier.reconfigure(NotifyConfig(events=frozenset({"station_silent"})), StationNames({}))
        self.clock.advance(120)
        self.assertEqual([alert.key for alert in self.old_alerts], ["connected_to_proxy", "station_silent"])
        self.notifier.reconfigure(NotifyConfig(events=frozenset()), StationNames({}))
        watches = [call for call in self.clock.getDelayedCalls() if call.func.__name__ == "_check_silence"]
        self.assertEqual(watches, [])

    def test_new_channels_take_new_alerts_and_old_queue_is_flushed(self):
        """New channels get the alerts after the reload; the old queue delivers what it held, then closes."""
        from twisted.internet.defer import Deferred

        held = []
        self.notifier.reconfigure(
            self.notifier.settings, self.notifier.names, {"old": lambda alert: held.append(Deferred()) or held[-1]}
        )
        self.notifier.station_connected("CP_1", "peer")
        self.assertEqual(len(held), 1)
        new_alerts, closed = [], []
        self.notifier.reconfigure(
            NotifyConfig(events=frozenset({"connected_to_proxy"})),
            StationNames({}),
            {"new": lambda alert: new_alerts.append(alert) or succeed(None)},
            closers=[lambda: closed.append("new")],
        )
        self.notifier.station_connected("CP_2", "peer")
        self.assertEqual([alert.station_id for alert in new_alerts], ["CP_2"])
        held[0].callback(None)
        stopped = self.notifier.stopService()
        self.successResultOf(stopped)
        self.assertEqual(closed, ["new"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_waits_for_old_queues(self):
        """stopService fires only once the queues replaced by a reload are flushed (or timed out)."""
        from twisted.internet.defer import Deferred

        self.notifier.reconfigure(self.notifier.settings, self.notifier.names, {"slow": lambda alert: Deferred()})
        self.notifier.station_connected("CP_1", "peer")
        self.notifier.reconfigure(self.notifier.settings, self.notifier.names, {})
        stopped = self.notifier.stopService()
        self.assertNoResult(stopped)
        self.clock.advance(5)
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_starters_run_at_start_and_with_new_channels(self):
        """A channel's starters (the Apprise thread pool) run when the notifier starts, or at once for a reload's."""
        started = []
        notifier = NotifierService(
            NotifyConfig(), StationNames({}), self.clock, {}, {}, lambda _: 0, starters=[lambda: started.append("a")]
        )
        self.assertEqual(started, [])
        notifier.startService()
        self.assertEqual(started, ["a"])
        notifier.reconfigure(NotifyConfig(), StationNames({}), {}, starters=[lambda: started.append("b")])
        self.assertEqual(started, ["a", "b"])
        self.successResultOf(notifier.stopService())
