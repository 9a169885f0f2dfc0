"""format_alert: station events in words, for a phone and for an e-mail body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.notify.alert import StationEvent
from ocppproxy.notify.keys import EVENT_KEYS
from ocppproxy.notify.messages import SUBJECT_LIMIT, format_alert
from ocppproxy.notify.names import StationNames

NOW = datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC)
NAMES = StationNames({"CP_1": "Depot Nord"})

# Details as the tracker and the notifier service give them, one example per key.
EXAMPLES = {
    "connected_to_proxy": {"peer": "tcp4:192.0.2.7:50123"},
    "disconnected_from_proxy": {"code": 1006, "reason": "connection lost"},
    "connected_to_upstream": {"upstream": "primary", "url": "wss://cs.example.com/ocpp/CP_1"},
    "disconnected_from_upstream": {"upstream": "secondary", "url": "ws://cs2.example.com/CP_1", "reason": "lost"},
    "cp_status_available": {"connector": 0, "status": "Available"},
    "cp_status_unavailable": {"connector": 0, "status": "Unavailable"},
    "cp_status_faulted": {"connector": 0, "status": "Faulted", "error_code": "PowerMeterFailure"},
    "con_status_available": {"connector": 1, "status": "Available", "error_code": "NoError"},
    "con_status_preparing": {"connector": 1, "status": "Preparing"},
    "con_status_charging": {"connector": 1, "status": "Charging"},
    "con_status_suspended_evse": {"connector": 1, "status": "SuspendedEVSE"},
    "con_status_suspended_ev": {"connector": 1, "status": "SuspendedEV"},
    "con_status_finishing": {"connector": 1, "status": "Finishing"},
    "con_status_reserved": {"connector": 1, "status": "Reserved"},
    "con_status_unavailable": {"connector": 1, "status": "Unavailable"},
    "con_status_faulted": {"connector": 1, "status": "Faulted"},
    "con_status_occupied": {"evse": 1, "connector": 1, "status": "Occupied"},
    "con_start_transaction": {"connector": 2, "id_tag": "TAG1", "meter_start": 1000},
    "con_stop_transaction": {"connector": 2, "energy_wh": 12345, "duration_s": 3723, "reason": "EVDisconnected"},
    "station_boot": {"vendor": "ABB", "model": "Terra AC", "firmware": "1.2.3"},
    "station_silent": {"silent_for_s": 620, "heartbeat_interval": 300},
    "upstream_down": {"upstream": "primary", "url": "ws://cs.example.com/ocpp", "down_for_s": 300, "stations": 12},
    "status_error": {"connector": 1, "status": "Faulted", "error_code": "GroundFailure", "vendor_error_code": "E42"},
    "failover_started": {},
    "failover_ended": {"duration_s": 95},
    "certificate_expiring": {
        "role": "station",
        "subject": "CN=proxy.example.com",
        "file": "/etc/ocppproxy/tls/cert.pem",
        "expires": "2024-05-04 10:00 UTC",
        "fingerprint": "ab" * 32,
        "days_left": 3,
    },
    "certificate_expired": {"role": "ca", "subject": "CN=Stations CA", "file": "/etc/ocppproxy/tls/ca.pem"},
    "outbox_dropped": {"upstream": "billing", "count": 12},
}


def alert(key, station_id="CP_1", names=NAMES, **details):
    return format_alert(StationEvent(key, station_id, details), names, NOW)


class EveryKeyTests(SynchronousTestCase):
    """Every event key an operator can switch on has a message."""

    def test_examples_cover_every_key(self):
        """The examples below are for exactly the configurable keys."""
        self.assertEqual(sorted(EXAMPLES), sorted(EVENT_KEYS))

    def test_every_key_formats(self):
        """Each key gives a subject naming the station within the limit, and a body with its id and the time."""
        for key, details in EXAMPLES.items():
            result = alert(key, **details)
            self.assertEqual((result.key, result.station_id), (key, "CP_1"))
            self.assertTrue(result.subject.startswith("Depot Nord (CP_1): "), result.subject)
            self.assertLessEqual(len(result.subject), SUBJECT_LIMIT, key)
            self.assertIn("Station id: CP_1\n", result.text)
            self.assertIn("Proxy time: 2024-05-01T10:00:05Z\n", result.text)
            self.assertIn(f"Alert: {key}\n", result.text)

    def test_every_key_without_details(self):
        """A key with no details at all still formats, naming the station."""
        for key in EVENT_KEYS:
            self.assertTrue(alert(key).subject.startswith("Depot Nord (CP_1): "), key)


class SubjectTests(SynchronousTestCase):
    """Subjects: short, the station first, the event in words."""

    def test_connector_status(self):
        """A connector status names the connector and the status."""
        self.assertEqual(
            alert("con_status_faulted", **EXAMPLES["con_status_faulted"]).subject,
            "Depot Nord (CP_1): connector 1 Faulted",
        )

    def test_evse_status(self):
        """A 2.0.1 status names EVSE and connector."""
        self.assertEqual(
            alert("con_status_occupied", **EXAMPLES["con_status_occupied"]).subject,
            "Depot Nord (CP_1): EVSE 1 connector 1 Occupied",
        )

    def test_charge_point_status(self):
        """Connector 0 is the station itself."""
        self.assertEqual(
            alert("cp_status_unavailable", **EXAMPLES["cp_status_unavailable"]).subject,
            "Depot Nord (CP_1): station Unavailable",
        )

    def test_charge_point_status_without_details(self):
        """A cp_status_ key names the station even when no connector is given."""
        self.assertEqual(alert("cp_status_faulted").subject, "Depot Nord (CP_1): station Faulted")

    def test_started(self):
        """A start names the connector."""
        self.assertEqual(
            alert("con_start_transaction", connector=2).subject, "Depot Nord (CP_1): charging started on connector 2"
        )

    def test_stopped(self):
        """A stop names the connector and the energy."""
        self.assertEqual(
            alert("con_stop_transaction", **EXAMPLES["con_stop_transaction"]).subject,
            "Depot Nord (CP_1): charging stopped on connector 2, 12.345 kWh",
        )

    def test_stopped_unknown_connector(self):
        """A stop whose connector is unknown says no connector."""
        self.assertEqual(alert("con_stop_transaction", connector=None).subject, "Depot Nord (CP_1): charging stopped")

    def test_unnamed_station(self):
        """A station without a name is named by its id alone."""
        self.assertEqual(alert("disconnected_from_proxy", station_id="CP_7").subject, "CP_7: disconnected from proxy")

    def test_upstream_disconnected(self):
        """An upstream disconnection says which upstream."""
        self.assertEqual(
            alert("disconnected_from_upstream", station_id="CP_7", upstream="primary").subject,
            "CP_7: primary central system disconnected",
        )

    def test_boot(self):
        """A boot names vendor, model and firmware."""
        self.assertEqual(
            alert("station_boot", **EXAMPLES["station_boot"]).subject,
            "Depot Nord (CP_1): booted (ABB Terra AC firmware 1.2.3)",
        )

    def test_silent(self):
        """A silent station's alert says for how long, and the heartbeat interval."""
        self.assertEqual(
            alert("station_silent", **EXAMPLES["station_silent"]).subject,
            "Depot Nord (CP_1): no message for 10 min (heartbeat every 5 min)",
        )

    def test_status_error(self):
        """An error names the place, the error code and the status."""
        self.assertEqual(
            alert("status_error", **EXAMPLES["status_error"]).subject,
            "Depot Nord (CP_1): connector 1 error GroundFailure (Faulted)",
        )

    def test_upstream_down(self):
        """upstream_down covers all stations: its subject names the upstream, its URL and the station count."""
        result = alert("upstream_down", station_id="", **EXAMPLES["upstream_down"])
        self.assertEqual(
            result.subject, "primary central system ws://cs.example.com/ocpp unreachable for 5 min (12 stations)"
        )
        self.assertNotIn("Station id", result.text)

    def test_long_name(self):
        """A long name is cut so that the event still fits in the subject."""
        names = StationNames({"CP_1": "Parking garage level -2, Main Street 14, bay 7 next to the lifts " * 2})
        subject = alert("con_status_faulted", names=names, connector=1, status="Faulted").subject
        self.assertLessEqual(len(subject), SUBJECT_LIMIT)
        self.assertTrue(subject.endswith("...: connector 1 Faulted"), subject)

    def test_long_station_text(self):
        """Station-provided text cannot push the subject beyond the limit."""
        subject = alert("station_boot", vendor="V" * 500, model="M" * 500).subject
        self.assertLessEqual(len(subject), SUBJECT_LIMIT)
        self.assertTrue(subject.startswith("Depot Nord (CP_1): booted (VVV"))

    def test_control_characters(self):
        """Line breaks sent by a station never reach a subject (or a mail header through it)."""
        result = alert("con_status_faulted", station_id="CP_1\r\nBcc: x@example.com", connector=1, status="Fault\ned")
        self.assertNotIn("\n", result.subject)
        self.assertNotIn("\r", result.subject)
        self.assertIn("Status: Fault ed\n", result.text)


class TextTests(SynchronousTestCase):
    """The body: every detail known, one per line."""

    def test_station_and_status(self):
        """The body names the station, its id, the connector, status, error details and both times."""
        text = alert(
            "status_error",
            connector=1,
            status="Faulted",
            error_code="GroundFailure",
            vendor_error_code="E42",
            info="RCD tripped",
            station_timestamp="2024-05-01T09:59:58Z",
        ).text
        for line in [
            "Station: Depot Nord",
            "Station id: CP_1",
            "Event: Connector 1 error GroundFailure (Faulted)",
            "Connector: 1",
            "Status: Faulted",
            "Error code: GroundFailure",
            "Vendor error code: E42",
            "Info: RCD tripped",
            "Station time: 2024-05-01T09:59:58Z",
            "Proxy time: 2024-05-01T10:00:05Z",
        ]:
            self.assertIn(line + "\n", text)

    def test_no_error(self):
        """errorCode NoError is not reported as an error."""
        self.assertNotIn("Error code", alert("con_status_available", **EXAMPLES["con_status_available"]).text)

    def test_transaction(self):
        """A stop gives id tag, energy in kWh with three decimals, duration as h:mm:ss and the reason."""
        text = alert(
            "con_stop_transaction",
            connector=2,
            transaction_id=77,
            id_tag="TAG1",
            energy_wh=12345.6,
            duration_s=3723,
            reason="EVDisconnected",
        ).text
        for line in [
            "Transaction: 77",
            "Id tag: TAG1",
            "Energy: 12.346 kWh",
            "Duration: 1:02:03",
            "Reason: EVDisconnected",
        ]:
            self.assertIn(line + "\n", text)

    def test_boot(self):
        """A boot gives vendor, model and firmware."""
        text = alert("station_boot", **EXAMPLES["station_boot"]).text
        for line in ["Vendor: ABB", "Model: Terra AC", "Firmware: 1.2.3"]:
            self.assertIn(line + "\n", text)

    def test_upstream(self):
        """An upstream event gives the upstream's name and URL, and the reason."""
        text = alert("disconnected_from_upstream", **EXAMPLES["disconnected_from_upstream"]).text
        for line in ["Central system: secondary", "URL: ws://cs2.example.com/CP_1", "Reason: lost"]:
            self.assertIn(line + "\n", text)

    def test_url_credentials(self):
        """User name and password in an upstream URL are never written."""
        result = alert("upstream_down", station_id="", upstream="primary", url="wss://cp:s3cret@cs.example.com/ocpp")
        self.assertNotIn("s3cret", result.subject + result.text)
        self.assertIn("URL: wss://cs.example.com/ocpp\n", result.text)

    def test_proxy_time_in_utc(self):
        """The proxy's time is written in UTC whatever zone it was given in."""
        paris = timezone(timedelta(hours=2))
        result = format_alert(
            StationEvent("connected_to_proxy", "CP_1"), NAMES, datetime(2024, 5, 1, 12, 0, tzinfo=paris)
        )
        self.assertIn("Proxy time: 2024-05-01T10:00:00Z\n", result.text)

    def test_naive_proxy_time(self):
        """A naive proxy time is taken as UTC."""
        result = format_alert(StationEvent("connected_to_proxy", "CP_1"), NAMES, datetime(2024, 5, 1, 10, 0))
        self.assertIn("Proxy time: 2024-05-01T10:00:00Z\n", result.text)

    def test_unnamed_station(self):
        """A station without a name has no Station line, only its id."""
        text = alert("connected_to_proxy", station_id="CP_7").text
        self.assertNotIn("Station:", text)
        self.assertIn("Station id: CP_7\n", text)


class AlertFactsTests(SynchronousTestCase):
    """What channels that send data (the webhook) take from an alert besides its words."""

    def test_name_time_and_details(self):
        """The human name, the proxy's time in milliseconds (UTC) and the details go with the alert."""
        moment = datetime(2024, 5, 1, 12, 0, 5, 250000, tzinfo=timezone(timedelta(hours=2)))
        made = format_alert(StationEvent("con_status_faulted", "CP_1", {"connector": 2}), NAMES, moment)
        self.assertEqual(
            (made.name, made.time, made.details), ("Depot Nord", "2024-05-01T10:00:05.250Z", {"connector": 2})
        )

    def test_no_name(self):
        """A station without a human name, and a summary without a station, have none."""
        self.assertIsNone(alert("station_boot", "CP_9").name)
        self.assertIsNone(alert("upstream_down", "", upstream="primary").name)

    def test_station_texts_cleaned_in_details(self):
        """Station-provided texts in the details are one bounded line, as in the message."""
        made = alert("status_error", info="line one\r\nline two" + "x" * 500, connector=1)
        self.assertNotIn("\n", made.details["info"])
        self.assertLessEqual(len(made.details["info"]), 200)
        self.assertEqual(made.details["connector"], 1)
