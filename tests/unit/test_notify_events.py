"""StationTracker: OCPP 1.6 and 2.0.1 frames in, station events out."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.ocppj import CALL, CALLERROR, CALLRESULT, Frame
from ocppproxy.core.redact import Redactor
from ocppproxy.notify.events import AWAITED_ANSWERS_LIMIT, CONNECTORS_LIMIT, OPEN_TRANSACTIONS_LIMIT, StationTracker

_ids = itertools.count(1)


def call(action, body, message_id=None):
    """A CALL frame, with a fresh message id unless one is given."""
    return Frame(CALL, message_id or f"m{next(_ids)}", action, body)


def result(message_id, body):
    return Frame(CALLRESULT, message_id, None, body)


def status16(connector, status, error_code="NoError", **extra):
    return call("StatusNotification", {"connectorId": connector, "status": status, "errorCode": error_code, **extra})


def status201(evse, connector, status):
    body = {"timestamp": "2024-05-01T10:00:00Z", "connectorStatus": status, "evseId": evse, "connectorId": connector}
    return call("StatusNotification", body)


def keys(events):
    return [event.key for event in events]


class StatusV16Tests(SynchronousTestCase):
    """OCPP 1.6 StatusNotification: connector and charge point status keys, on change only."""

    def setUp(self):
        self.tracker = StationTracker("CP_1")

    def test_connector_statuses(self):
        """Every 1.6 ChargePointStatus on a connector raises its con_status_ key."""
        expected = {
            "Available": "con_status_available",
            "Preparing": "con_status_preparing",
            "Charging": "con_status_charging",
            "SuspendedEVSE": "con_status_suspended_evse",
            "SuspendedEV": "con_status_suspended_ev",
            "Finishing": "con_status_finishing",
            "Reserved": "con_status_reserved",
            "Unavailable": "con_status_unavailable",
            "Faulted": "con_status_faulted",
        }
        for status, key in expected.items():
            self.assertEqual(keys(self.tracker.station_frame(status16(1, status))), [key], status)

    def test_charge_point_statuses(self):
        """Available, Unavailable and Faulted on connector 0 raise the cp_status_ keys."""
        expected = {
            "Available": "cp_status_available",
            "Unavailable": "cp_status_unavailable",
            "Faulted": "cp_status_faulted",
        }
        for status, key in expected.items():
            self.assertEqual(keys(self.tracker.station_frame(status16(0, status))), [key], status)

    def test_other_charge_point_status(self):
        """A status on connector 0 without a cp_status_ key raises nothing."""
        self.assertEqual(self.tracker.station_frame(status16(0, "Charging")), [])

    def test_status_details(self):
        """The event names the station, connector, status and the station's timestamp."""
        [event] = self.tracker.station_frame(status16(2, "Charging", timestamp="2024-05-01T10:00:00Z"))
        self.assertEqual(event.station_id, "CP_1")
        self.assertEqual(event.details["connector"], 2)
        self.assertEqual(event.details["status"], "Charging")
        self.assertEqual(event.details["station_timestamp"], "2024-05-01T10:00:00Z")

    def test_same_status_twice(self):
        """A connector repeating its status raises one event only."""
        self.tracker.station_frame(status16(1, "Available"))
        self.assertEqual(self.tracker.station_frame(status16(1, "Available")), [])

    def test_status_back_after_another(self):
        """A status that returns after another one is a change again."""
        self.tracker.station_frame(status16(1, "Available"))
        self.tracker.station_frame(status16(1, "Preparing"))
        self.assertEqual(keys(self.tracker.station_frame(status16(1, "Available"))), ["con_status_available"])

    def test_connectors_tracked_apart(self):
        """The same status on another connector is that connector's first report."""
        self.tracker.station_frame(status16(1, "Available"))
        self.assertEqual(keys(self.tracker.station_frame(status16(2, "Available"))), ["con_status_available"])

    def test_unknown_status_is_remembered(self):
        """A status with no key raises nothing, and the known status after it is a change."""
        self.tracker.station_frame(status16(1, "Available"))
        self.assertEqual(self.tracker.station_frame(status16(1, "Occupied")), [])
        self.assertEqual(keys(self.tracker.station_frame(status16(1, "Available"))), ["con_status_available"])

    def test_status_error(self):
        """An errorCode other than NoError raises status_error with the vendor's code and info."""
        frame = status16(1, "Faulted", "GroundFailure", vendorErrorCode="E42", info="RCD tripped")
        events = self.tracker.station_frame(frame)
        self.assertEqual(keys(events), ["con_status_faulted", "status_error"])
        details = events[1].details
        self.assertEqual(
            (details["error_code"], details["vendor_error_code"], details["info"]),
            ("GroundFailure", "E42", "RCD tripped"),
        )

    def test_no_error_raises_no_status_error(self):
        """errorCode NoError raises no status_error."""
        self.assertEqual(keys(self.tracker.station_frame(status16(1, "Faulted", "NoError"))), ["con_status_faulted"])

    def test_status_error_repeated(self):
        """The same status and error code again raise nothing."""
        self.tracker.station_frame(status16(1, "Faulted", "GroundFailure"))
        self.assertEqual(self.tracker.station_frame(status16(1, "Faulted", "GroundFailure")), [])

    def test_status_error_code_changes(self):
        """A new error code under the same status raises status_error but no status key."""
        self.tracker.station_frame(status16(1, "Faulted", "GroundFailure"))
        self.assertEqual(keys(self.tracker.station_frame(status16(1, "Faulted", "OverVoltage"))), ["status_error"])

    def test_status_error_vendor_code_changes(self):
        """A new vendorErrorCode under the same error code is a new status_error."""
        self.tracker.station_frame(status16(1, "Faulted", "OtherError", vendorErrorCode="E1"))
        events = self.tracker.station_frame(status16(1, "Faulted", "OtherError", vendorErrorCode="E2"))
        self.assertEqual(keys(events), ["status_error"])

    def test_status_error_on_charge_point(self):
        """An error on connector 0 raises status_error too."""
        events = self.tracker.station_frame(status16(0, "Faulted", "PowerMeterFailure"))
        self.assertEqual(keys(events), ["cp_status_faulted", "status_error"])

    def test_statuses_survive_reconnection(self):
        """One tracker lives across connections: a status re-sent after reconnecting raises nothing."""
        self.tracker.station_frame(status16(1, "Charging"))
        self.tracker.station_frame(call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}))
        self.assertEqual(self.tracker.station_frame(status16(1, "Charging")), [])


class StatusV201Tests(SynchronousTestCase):
    """OCPP 2.0.1 StatusNotification: connectorStatus on evseId/connectorId."""

    def setUp(self):
        self.tracker = StationTracker("CS_1")

    def test_connector_statuses(self):
        """Every 2.0.1 ConnectorStatus on an EVSE raises its con_status_ key."""
        expected = {
            "Available": "con_status_available",
            "Occupied": "con_status_occupied",
            "Reserved": "con_status_reserved",
            "Unavailable": "con_status_unavailable",
            "Faulted": "con_status_faulted",
        }
        for status, key in expected.items():
            self.assertEqual(keys(self.tracker.station_frame(status201(1, 1, status))), [key], status)

    def test_details(self):
        """The event names the EVSE, the connector, the status and the station's timestamp."""
        [event] = self.tracker.station_frame(status201(2, 1, "Occupied"))
        self.assertEqual(
            dict(event.details),
            {"evse": 2, "connector": 1, "status": "Occupied", "station_timestamp": "2024-05-01T10:00:00Z"},
        )

    def test_change_only(self):
        """The same connectorStatus twice raises one event."""
        self.tracker.station_frame(status201(1, 1, "Occupied"))
        self.assertEqual(self.tracker.station_frame(status201(1, 1, "Occupied")), [])

    def test_connectors_of_one_evse_apart(self):
        """Two connectors of one EVSE have their own statuses."""
        self.tracker.station_frame(status201(1, 1, "Occupied"))
        self.assertEqual(keys(self.tracker.station_frame(status201(1, 2, "Occupied"))), ["con_status_occupied"])

    def test_evse_zero(self):
        """evseId 0 is the station itself: cp_status_ keys."""
        self.assertEqual(keys(self.tracker.station_frame(status201(0, 0, "Unavailable"))), ["cp_status_unavailable"])

    def test_evse_zero_occupied(self):
        """Occupied on evseId 0 has no cp_status_ key: nothing."""
        self.assertEqual(self.tracker.station_frame(status201(0, 0, "Occupied")), [])


class TransactionV16Tests(SynchronousTestCase):
    """OCPP 1.6 StartTransaction / StopTransaction; the connector of a stop comes from the primary's answer."""

    def setUp(self):
        self.tracker = StationTracker("CP_1")

    def start(self, connector=2, meter_start=1000, timestamp="2024-05-01T10:00:00Z", transaction_id=None, by="primary"):
        body = {"connectorId": connector, "idTag": "TAG1", "meterStart": meter_start, "timestamp": timestamp}
        frame = call("StartTransaction", body)
        events = self.tracker.station_frame(frame)
        if transaction_id is not None:
            answer = {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}
            self.assertEqual(self.tracker.upstream_frame(by, result(frame.message_id, answer)), [])
        return events

    def stop(self, transaction_id, meter_stop=13345, timestamp="2024-05-01T11:02:03Z", **extra):
        body = {"transactionId": transaction_id, "meterStop": meter_stop, "timestamp": timestamp, **extra}
        [event] = self.tracker.station_frame(call("StopTransaction", body))
        self.assertEqual(event.key, "con_stop_transaction")
        return event

    def test_start_raises_at_once(self):
        """StartTransaction raises con_start_transaction before (and without) any answer."""
        [event] = self.start()
        self.assertEqual(event.key, "con_start_transaction")
        self.assertEqual(
            dict(event.details),
            {"connector": 2, "id_tag": "TAG1", "meter_start": 1000, "station_timestamp": "2024-05-01T10:00:00Z"},
        )

    def test_stop_connector_from_primary(self):
        """A stop names the connector of the start the primary gave that transactionId to."""
        self.start(connector=2, transaction_id=77)
        self.assertEqual(self.stop(77).details["connector"], 2)

    def test_secondary_answer_ignored(self):
        """The secondary's transactionId is not the one the station uses: it maps nothing."""
        self.start(connector=2, transaction_id=500, by="secondary")
        self.assertIsNone(self.stop(500).details["connector"])

    def test_primary_answer_after_secondary(self):
        """The secondary answering first does not stop the primary's answer from being used."""
        frame = call("StartTransaction", {"connectorId": 3, "idTag": "T", "meterStart": 0, "timestamp": "x"})
        self.tracker.station_frame(frame)
        self.tracker.upstream_frame("secondary", result(frame.message_id, {"transactionId": 9}))
        self.tracker.upstream_frame("primary", result(frame.message_id, {"transactionId": 8}))
        self.assertEqual(self.stop(8).details["connector"], 3)

    def test_energy_and_duration(self):
        """Energy is meterStop - meterStart in Wh; duration runs between the station's timestamps."""
        self.start(meter_start=1000, timestamp="2024-05-01T10:00:00Z", transaction_id=77)
        details = self.stop(77, meter_stop=13345, timestamp="2024-05-01T11:02:03Z").details
        self.assertEqual((details["energy_wh"], details["duration_s"]), (12345, 3723))

    def test_duration_across_offsets(self):
        """Timestamps with different UTC offsets are compared as instants."""
        self.start(timestamp="2024-05-01T12:00:00+02:00", transaction_id=77)
        self.assertEqual(self.stop(77, timestamp="2024-05-01T10:00:30Z").details["duration_s"], 30)

    def test_unreadable_timestamp(self):
        """A timestamp that is not ISO 8601 leaves the duration unknown."""
        self.start(timestamp="yesterday", transaction_id=77)
        self.assertNotIn("duration_s", self.stop(77).details)

    def test_clock_going_back(self):
        """A stop stamped before its start (a reset clock) has no duration."""
        self.start(timestamp="2024-05-01T10:00:00Z", transaction_id=77)
        self.assertNotIn("duration_s", self.stop(77, timestamp="2024-05-01T09:00:00Z").details)

    def test_stop_reason_and_id_tag(self):
        """The stop's reason is reported, and the start's idTag when the stop has none."""
        self.start(transaction_id=77)
        details = self.stop(77, reason="EVDisconnected").details
        self.assertEqual((details["reason"], details["id_tag"]), ("EVDisconnected", "TAG1"))

    def test_stop_without_reason(self):
        """A stop without a reason says so."""
        self.start(transaction_id=77)
        self.assertEqual(self.stop(77).details["reason"], "unknown")

    def test_unknown_transaction(self):
        """A stop for a transaction never seen has connector None, no energy and no duration."""
        details = self.stop(12345, idTag="TAG9").details
        self.assertIsNone(details["connector"])
        self.assertNotIn("energy_wh", details)
        self.assertNotIn("duration_s", details)
        self.assertEqual((details["transaction_id"], details["id_tag"]), (12345, "TAG9"))

    def test_transaction_forgotten_after_stop(self):
        """A second stop for the same transactionId knows nothing of the start."""
        self.start(transaction_id=77)
        self.stop(77)
        self.assertIsNone(self.stop(77).details["connector"])

    def test_error_answer_ends_wait(self):
        """A CALLERROR from the primary leaves the transaction unmapped, and a late result is ignored."""
        frame = call("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "x"})
        self.tracker.station_frame(frame)
        self.tracker.upstream_frame("primary", Frame(CALLERROR, frame.message_id, None, {}))
        self.tracker.upstream_frame("primary", result(frame.message_id, {"transactionId": 5}))
        self.assertIsNone(self.stop(5).details["connector"])

    def test_pending_starts_bounded(self):
        """Only the newest AWAITED_ANSWERS_LIMIT starts wait for an answer; older answers map nothing."""
        frames = [
            call("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "x"})
            for _ in range(AWAITED_ANSWERS_LIMIT + 1)
        ]
        for frame in frames:
            self.tracker.station_frame(frame)
        self.tracker.upstream_frame("primary", result(frames[0].message_id, {"transactionId": 1}))
        self.tracker.upstream_frame("primary", result(frames[-1].message_id, {"transactionId": 2}))
        self.assertIsNone(self.stop(1).details["connector"])
        self.assertEqual(self.stop(2).details["connector"], 1)

    def test_open_transactions_bounded(self):
        """Only the newest OPEN_TRANSACTIONS_LIMIT transactions are remembered."""
        for transaction_id in range(OPEN_TRANSACTIONS_LIMIT + 1):
            self.start(connector=4, transaction_id=transaction_id)
        self.assertIsNone(self.stop(0).details["connector"])
        self.assertEqual(self.stop(OPEN_TRANSACTIONS_LIMIT).details["connector"], 4)

    def test_answers_to_other_calls_ignored(self):
        """A CALLRESULT for an id the tracker does not wait for changes nothing."""
        self.start(transaction_id=77)
        self.assertEqual(self.tracker.upstream_frame("primary", result("unrelated", {"transactionId": 77})), [])
        self.assertEqual(self.stop(77).details["connector"], 2)


def meter(value, **sample):
    return [{"timestamp": "2024-05-01T10:00:00Z", "sampledValue": [{"value": value, **sample}]}]


def transaction_event(event_type, transaction_id="tx-1", timestamp="2024-05-01T10:00:00Z", **extra):
    body = {
        "eventType": event_type,
        "timestamp": timestamp,
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": transaction_id},
        **extra,
    }
    return call("TransactionEvent", body)


class TransactionV201Tests(SynchronousTestCase):
    """OCPP 2.0.1 TransactionEvent Started / Ended."""

    def setUp(self):
        self.tracker = StationTracker("CS_1")

    def started(self, **extra):
        extra.setdefault("evse", {"id": 1, "connectorId": 2})
        extra.setdefault("idToken", {"idToken": "TOKEN", "type": "ISO14443"})
        return self.tracker.station_frame(transaction_event("Started", **extra))

    def ended(self, timestamp="2024-05-01T10:30:00Z", **extra):
        [event] = self.tracker.station_frame(transaction_event("Ended", timestamp=timestamp, **extra))
        self.assertEqual(event.key, "con_stop_transaction")
        return event

    def test_started(self):
        """Started raises con_start_transaction with EVSE, connector, idToken and transaction id."""
        [event] = self.started()
        self.assertEqual(event.key, "con_start_transaction")
        self.assertEqual(
            dict(event.details),
            {
                "evse": 1,
                "connector": 2,
                "transaction_id": "tx-1",
                "id_tag": "TOKEN",
                "station_timestamp": "2024-05-01T10:00:00Z",
            },
        )

    def test_ended_recovers_place(self):
        """Ended without an evse names the Started event's EVSE and connector, and its duration."""
        self.started()
        details = self.ended(transactionInfo={"transactionId": "tx-1", "stoppedReason": "EVDisconnected"}).details
        self.assertEqual(
            (details["evse"], details["connector"], details["id_tag"], details["duration_s"], details["reason"]),
            (1, 2, "TOKEN", 1800, "EVDisconnected"),
        )

    def test_energy_from_meter_values(self):
        """Energy is the difference of the energy register in Started and Ended."""
        self.started(meterValue=meter(1000.5))
        details = self.ended(meterValue=meter(13346.0)).details
        self.assertEqual(details["energy_wh"], 12345.5)

    def test_energy_in_kwh(self):
        """A register reported in kWh is converted to Wh."""
        self.started(meterValue=meter(1.0, measurand="Energy.Active.Import.Register", unitOfMeasure={"unit": "kWh"}))
        self.assertEqual(self.ended(meterValue=meter(3.5, unitOfMeasure={"unit": "kWh"})).details["energy_wh"], 2500.0)

    def test_other_measurand_ignored(self):
        """A meter value of another measurand gives no energy."""
        self.started(meterValue=meter(10, measurand="Power.Active.Import"))
        self.assertNotIn("energy_wh", self.ended(meterValue=meter(20, measurand="Power.Active.Import")).details)

    def test_updated_ignored(self):
        """Updated events raise nothing."""
        self.started()
        self.assertEqual(self.tracker.station_frame(transaction_event("Updated")), [])

    def test_ended_unknown(self):
        """Ended for an unknown transaction has connector None and reason unknown."""
        details = self.ended(transaction_id="nope").details
        self.assertEqual((details["connector"], details["reason"]), (None, "unknown"))


class BootTests(SynchronousTestCase):
    """BootNotification: station_boot, and the heartbeat interval from the primary's answer."""

    def setUp(self):
        self.tracker = StationTracker("CP_1")

    def boot16(self):
        body = {"chargePointVendor": "ABB", "chargePointModel": "Terra AC", "firmwareVersion": "1.2.3"}
        frame = call("BootNotification", body)
        return frame, self.tracker.station_frame(frame)

    def test_boot_v16(self):
        """A 1.6 BootNotification raises station_boot with vendor, model and firmware."""
        _, [event] = self.boot16()
        self.assertEqual(event.key, "station_boot")
        self.assertEqual(dict(event.details), {"vendor": "ABB", "model": "Terra AC", "firmware": "1.2.3"})

    def test_boot_v201(self):
        """A 2.0.1 BootNotification raises station_boot with the chargingStation fields and the reason."""
        body = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M", "firmwareVersion": "F"}}
        [event] = self.tracker.station_frame(call("BootNotification", body))
        self.assertEqual(dict(event.details), {"vendor": "V", "model": "M", "firmware": "F", "reason": "PowerUp"})

    def test_heartbeat_interval_from_primary(self):
        """The primary's accepted answer sets heartbeat_interval."""
        frame, _ = self.boot16()
        self.assertIsNone(self.tracker.heartbeat_interval)
        answer = {"status": "Accepted", "interval": 300, "currentTime": "2024-05-01T10:00:00Z"}
        self.tracker.upstream_frame("primary", result(frame.message_id, answer))
        self.assertEqual(self.tracker.heartbeat_interval, 300)

    def test_heartbeat_interval_not_from_secondary(self):
        """The secondary's answer sets no heartbeat_interval."""
        frame, _ = self.boot16()
        self.tracker.upstream_frame("secondary", result(frame.message_id, {"status": "Accepted", "interval": 60}))
        self.assertIsNone(self.tracker.heartbeat_interval)

    def test_rejected_boot(self):
        """A rejected boot's interval is a retry delay, not a heartbeat: the interval is cleared."""
        frame, _ = self.boot16()
        self.tracker.upstream_frame("primary", result(frame.message_id, {"status": "Accepted", "interval": 300}))
        frame, _ = self.boot16()
        self.tracker.upstream_frame("primary", result(frame.message_id, {"status": "Rejected", "interval": 60}))
        self.assertIsNone(self.tracker.heartbeat_interval)


class OddPayloadTests(SynchronousTestCase):
    """Whatever a station or upstream sends, the tracker never raises."""

    def setUp(self):
        self.tracker = StationTracker("CP_1")

    def test_irrelevant_frames(self):
        """Heartbeats, MeterValues, answers and errors from the station raise nothing."""
        frames = [
            call("Heartbeat", {}),
            call("MeterValues", {"connectorId": 1, "meterValue": []}),
            result("m1", {"status": "Accepted"}),
            Frame(CALLERROR, "m2", None, ["GenericError", "", {}]),
        ]
        for frame in frames:
            self.assertEqual(self.tracker.station_frame(frame), [])

    def test_wrong_types(self):
        """Fields of the wrong type are ignored rather than trusted."""
        odd = [
            call("StatusNotification", []),
            call("StatusNotification", {"connectorId": "1", "status": "Faulted", "errorCode": "NoError"}),
            call("StatusNotification", {"connectorId": True, "status": "Faulted", "errorCode": "NoError"}),
            call("StatusNotification", {"connectorStatus": 3, "evseId": 1}),
            call("TransactionEvent", {"eventType": "Started", "evse": "1", "transactionInfo": None}),
            call("TransactionEvent", {"eventType": "Ended", "meterValue": [{"sampledValue": "x"}, 1, None]}),
        ]
        for frame in odd:
            for event in self.tracker.station_frame(frame):
                self.assertNotIn("status", event.details)

    def test_not_a_number_meter(self):
        """NaN, infinite and huge meter values (all valid in Python's JSON) give no energy."""
        for value in (float("nan"), float("inf"), 10**400):
            frame = call("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": value, "timestamp": "x"})
            self.tracker.station_frame(frame)
            self.tracker.upstream_frame("primary", result(frame.message_id, {"transactionId": 1}))
            stop = {"transactionId": 1, "meterStop": 5, "timestamp": "y"}
            [event] = self.tracker.station_frame(call("StopTransaction", stop))
            self.assertNotIn("energy_wh", event.details)

    def test_connectors_bounded(self):
        """Only CONNECTORS_LIMIT connector statuses are remembered: the oldest is forgotten."""
        for connector in range(1, CONNECTORS_LIMIT + 2):
            self.tracker.station_frame(status16(connector, "Available"))
        self.assertEqual(keys(self.tracker.station_frame(status16(1, "Available"))), ["con_status_available"])
        self.assertEqual(self.tracker.station_frame(status16(CONNECTORS_LIMIT + 1, "Available")), [])


# Valid messages to start from: the fuzz keeps, drops or replaces each field, so that
# generated frames reach the deep paths (a stop matching a start, a meter value with a
# unit) and not only the type checks.
_START_METER = [
    {"timestamp": "2024-05-01T10:00:00Z", "sampledValue": [{"value": 10.5, "unitOfMeasure": {"unit": "kWh"}}]}
]
_EXCHANGES = {
    "status 1.6": (
        "StatusNotification",
        {"connectorId": 1, "status": "Faulted", "errorCode": "GroundFailure", "timestamp": "2024-05-01T10:00:00Z"},
        {},
    ),
    "status 2.0.1": (
        "StatusNotification",
        {"timestamp": "2024-05-01T10:00:00Z", "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        {},
    ),
    "start": (
        "StartTransaction",
        {"connectorId": 1, "idTag": "T", "meterStart": 10, "timestamp": "2024-05-01T10:00:00Z"},
        {"transactionId": 1, "idTagInfo": {"status": "Accepted"}},
    ),
    "stop": (
        "StopTransaction",
        {"transactionId": 1, "meterStop": 20, "timestamp": "2024-05-01T11:00:00+01:00", "reason": "Local"},
        {"idTagInfo": {"status": "Accepted"}},
    ),
    "started": (
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": "2024-05-01T10:00:00Z",
            "transactionInfo": {"transactionId": "t1"},
            "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "T", "type": "Central"},
            "meterValue": _START_METER,
        },
        {},
    ),
    "ended": (
        "TransactionEvent",
        {
            "eventType": "Ended",
            "timestamp": "2024-05-01T10:30:00",
            "transactionInfo": {"transactionId": "t1", "stoppedReason": "Local"},
            "meterValue": [{"timestamp": "x", "sampledValue": [{"value": 20000, "unitOfMeasure": {"multiplier": 1}}]}],
        },
        {},
    ),
    "boot 1.6": (
        "BootNotification",
        {"chargePointVendor": "V", "chargePointModel": "M"},
        {"status": "Accepted", "interval": 300},
    ),
    "boot 2.0.1": (
        "BootNotification",
        {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}},
        {"status": "Accepted", "interval": 300},
    ),
}
_scalars = (
    st.integers(-1, 3)
    | st.sampled_from(["Faulted", "NoError", "Started", "Ended", "Accepted", "kWh", "not a time", "2024-05-01"])
    | st.none()
    | st.booleans()
    | st.floats()
    | st.integers()
    | st.text(max_size=4)
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)


@st.composite
def _mutated(draw, value):
    """C{value} with any part of it kept, dropped (from a mapping) or replaced by any JSON."""
    if draw(st.integers(0, 9)) == 0:
        return draw(_json)
    if isinstance(value, dict):
        return {key: draw(_mutated(item)) for key, item in value.items() if draw(st.integers(0, 9))}
    if isinstance(value, list):
        return [draw(_mutated(item)) for item in value]
    return value


@st.composite
def _exchange(draw, name):
    """The station CALL of C{_EXCHANGES[name]} and an upstream's answer to it, both mutated."""
    action, body, answer = _EXCHANGES[name]
    upstream = draw(st.sampled_from(["primary", "secondary"]))
    return action, draw(st.sampled_from(["a", "b"])), draw(_mutated(body)), upstream, draw(_mutated(answer))


# Every exchange once, in an order where answers and stops can meet their starts, then more.
_stories = st.tuples(
    *(_exchange(name) for name in _EXCHANGES),
    st.lists(st.sampled_from(sorted(_EXCHANGES)).flatmap(_exchange), max_size=6),
)


class FuzzTests(SynchronousTestCase):
    """Mutated messages under the actions the tracker reads."""

    @settings(derandomize=True, database=None, max_examples=300, deadline=None)
    @given(_stories)
    def test_never_raises(self, story):
        """No body, and no answer to it, makes the tracker raise."""
        tracker = StationTracker("CP_1")
        for action, message_id, body, upstream, answer in [*story[:-1], *story[-1]]:
            for event in tracker.station_frame(call(action, body, message_id)):
                self.assertEqual(event.station_id, "CP_1")
            tracker.upstream_frame(upstream, result(message_id, answer))


class RedactionTests(SynchronousTestCase):
    """What an alert quotes of a frame: the operator's redact keys and quoted credentials masked."""

    def test_redact_key_masked_in_details(self):
        """With redact: [idTag], a start's id tag is *** in the event; the stop still finds its connector."""
        tracker = StationTracker("CP_1", redactor=Redactor(["idTag"]))
        start = call("StartTransaction", {"connectorId": 2, "idTag": "TAG1", "meterStart": 0, "timestamp": "x"})
        [event] = tracker.station_frame(start)
        self.assertEqual(event.details["id_tag"], "***")
        tracker.upstream_frame("primary", result(start.message_id, {"transactionId": 7}))
        [stop] = tracker.station_frame(call("StopTransaction", {"transactionId": 7, "idTag": "TAG1", "meterStop": 5}))
        self.assertEqual((stop.details["connector"], stop.details["id_tag"]), (2, "***"))

    def test_ocpp201_id_token_masked_whole(self):
        """redact: [idToken] masks the 2.0.1 idToken object whole: the event names no id tag."""
        tracker = StationTracker("CS_1", redactor=Redactor(["idToken"]))
        body = {
            "eventType": "Started",
            "timestamp": "x",
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "T1"},
            "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": "TAG1", "type": "ISO14443"},
        }
        [event] = tracker.station_frame(call("TransactionEvent", body))
        self.assertNotIn("TAG1", repr(event))

    def test_quoted_credential_masked(self):
        """A text detail quoting a masked key (a station echoing a frame) is masked, even without redact keys."""
        tracker = StationTracker("CP_1", redactor=Redactor())
        info = 'set {"key":"AuthorizationKey","value":"s3cret"}'
        events = tracker.station_frame(status16(1, "Faulted", "OtherError", info=info))
        self.assertTrue(events)
        self.assertEqual({event.details["info"] for event in events}, {"***"})

    def test_without_redactor_unchanged(self):
        """Without a redactor (and with no keys) the details are as the station sent them."""
        for tracker in (StationTracker("CP_1"), StationTracker("CP_1", redactor=Redactor())):
            start = call("StartTransaction", {"connectorId": 2, "idTag": "TAG1", "meterStart": 0, "timestamp": "x"})
            [event] = tracker.station_frame(start)
            self.assertEqual(event.details["id_tag"], "TAG1")
