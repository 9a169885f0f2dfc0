"""
Station events read from OCPP 1.6 and 2.0.1 frames: status changes, errors,
transactions and boots. Pure: no I/O, no reactor.

The OCPP version is told by the shape of each message, so one tracker serves any
station. A station's payload is never trusted: whatever cannot be read is ignored,
and every map a station can grow is bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from ..core.ocppj import ANSWERS, CALL, CALLRESULT, Frame
from ..core.redact import Redactor
from .alert import StationEvent

PRIMARY = "primary"

AWAITED_ANSWERS_LIMIT = 100
"""At most this many station CALLs (StartTransaction, BootNotification) wait for the primary's answer."""
OPEN_TRANSACTIONS_LIMIT = 100
"""At most this many transactions are remembered per station, so a stop can name its connector."""
CONNECTORS_LIMIT = 100
"""At most this many connectors have their last status remembered per station."""

# OCPP 1.6 ChargePointStatus on a connector (connectorId > 0).
_V16_CONNECTOR_KEYS = {
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
# OCPP 2.0.1 ConnectorStatusEnumType.
_V201_CONNECTOR_KEYS = {
    "Available": "con_status_available",
    "Occupied": "con_status_occupied",
    "Reserved": "con_status_reserved",
    "Unavailable": "con_status_unavailable",
    "Faulted": "con_status_faulted",
}
# The station itself: connectorId 0 (1.6) or evseId 0 (2.0.1).
_STATION_KEYS = {
    "Available": "cp_status_available",
    "Unavailable": "cp_status_unavailable",
    "Faulted": "cp_status_faulted",
}
_ENERGY_REGISTER = "Energy.Active.Import.Register"
_METER_LIMIT = 1e15


@dataclass(frozen=True, slots=True)
class _Mark:
    """What a transaction's start or stop message said: where, who, meter reading (Wh) and when."""

    evse: int | None
    connector: int | None
    id_tag: str | None
    meter: float | None
    timestamp: str | None


class StationTracker:
    """
    Turns the frames of one station into L{StationEvent}s.

    Keep one per station id for the life of the daemon, not per connection: a station
    that repeats its statuses after reconnecting has changed nothing. Events come from
    what the station sends, so they fire whether or not an upstream answers; the
    primary's answers only complete them (the transaction id a 1.6 stop refers to,
    the heartbeat interval).

    @ivar heartbeat_interval: seconds, from the primary's last answer to a
        BootNotification; None until it accepts one, and again once it rejects one.
    """

    def __init__(
        self,
        station_id: str,
        remember: Callable[[tuple, tuple], None] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        """
        C{remember}, if given, hears C{(place, status)} each time a connector's remembered
        status changes; C{redactor}, if given, masks the operator's C{redact} keys in the
        payloads read (an alert then says C{***}) and any text of an event that quotes a
        masked key (a station echoing a frame).
        """
        self.station_id = station_id
        self._remember = remember
        self._redactor = redactor
        # Masking a payload costs a walk through it: only when the operator named keys.
        self._redact = redactor.value if redactor is not None and redactor.keys else None
        self.heartbeat_interval: int | None = None
        self._awaited: OrderedDict[str, Callable[[Any], None]] = OrderedDict()
        self._transactions: OrderedDict[int | str, _Mark] = OrderedDict()
        self._statuses: OrderedDict[tuple[int | None, int | None], tuple[str, Any, Any]] = OrderedDict()

    def station_frame(self, frame: Frame) -> list[StationEvent]:
        """The events a frame sent by the station raises (usually none)."""
        if frame.kind != CALL:
            return []
        read = self._READERS.get(frame.action)
        if read is None or not isinstance(frame.body, dict):
            return []
        events = read(self, frame.message_id, frame.body if self._redact is None else self._redact(frame.body))
        if events and self._redactor is not None:
            events = [self._masked(event) for event in events]
        return events

    def _masked(self, event: StationEvent) -> StationEvent:
        """C{event} with each text detail that quotes a masked key replaced by C{***} (rare: events are)."""
        details = {name: self._redactor.value(value) for name, value in event.details.items()}
        if all(details[name] is value for name, value in event.details.items()):
            return event
        return StationEvent(event.key, event.station_id, details)

    @property
    def awaiting(self) -> bool:
        """Whether it waits for an upstream's answer: only then does L{upstream_frame} learn anything."""
        return bool(self._awaited)

    def upstream_frame(self, upstream: str, frame: Frame, primary: str = PRIMARY) -> list[StationEvent]:
        """
        Learn from an upstream's answer to a CALL the tracker waits for; raises no event.

        Only the answers of the station's C{primary} count: its transaction ids are the
        ones the station uses. An error answer just ends the wait.
        """
        if upstream != primary or frame.kind not in ANSWERS or not self._awaited:
            return []
        learn = self._awaited.pop(frame.message_id, None)
        if learn is not None and frame.kind == CALLRESULT and isinstance(frame.body, dict):
            learn(frame.body)
        return []

    # --- StatusNotification

    def _status_notification(self, message_id: str, body: dict) -> list[StationEvent]:
        if "connectorStatus" in body:
            return self._status_v201(body)
        return self._status_v16(body)

    def _status_v16(self, body: dict) -> list[StationEvent]:
        connector, status = _int(body, "connectorId"), _text(body, "status")
        if connector is None or status is None:
            return []
        error_code = _text(body, "errorCode")
        vendor_error_code, info = _text(body, "vendorErrorCode"), _text(body, "info")
        previous = self._remember_status((None, connector), (status, error_code, vendor_error_code))
        details = _present(
            connector=connector,
            status=status,
            error_code=error_code,
            vendor_error_code=vendor_error_code,
            info=info,
            station_timestamp=_text(body, "timestamp"),
        )
        keys = _STATION_KEYS if connector == 0 else _V16_CONNECTOR_KEYS
        events = []
        if status in keys and (previous is None or previous[0] != status):
            events.append(StationEvent(keys[status], self.station_id, details))
        if error_code not in (None, "NoError") and previous != (status, error_code, vendor_error_code):
            events.append(StationEvent("status_error", self.station_id, dict(details)))
        return events

    def _status_v201(self, body: dict) -> list[StationEvent]:
        evse, connector, status = _int(body, "evseId"), _int(body, "connectorId"), _text(body, "connectorStatus")
        if evse is None or status is None:
            return []
        previous = self._remember_status((evse, connector), (status, None, None))
        keys = _STATION_KEYS if evse == 0 else _V201_CONNECTOR_KEYS
        if status not in keys or (previous is not None and previous[0] == status):
            return []
        details = _present(evse=evse, connector=connector, status=status, station_timestamp=_text(body, "timestamp"))
        return [StationEvent(keys[status], self.station_id, details)]

    def _remember_status(self, place: tuple, status: tuple) -> tuple | None:
        """Store a connector's status; returns the one it had before, if known."""
        previous = self._statuses.pop(place, None)
        _bounded_put(self._statuses, place, status, CONNECTORS_LIMIT)
        if self._remember is not None and previous != status:
            self._remember(place, status)
        return previous

    def restore_statuses(self, statuses: Mapping[tuple, tuple]) -> None:
        """
        Take C{statuses} (place -> status, as kept elsewhere: another instance saw the
        station last) as the connectors' last statuses, before the station's next ones are judged.
        """
        for place, status in statuses.items():
            self._statuses.pop(place, None)
            _bounded_put(self._statuses, place, status, CONNECTORS_LIMIT)

    # --- transactions, OCPP 1.6

    def _start_transaction(self, message_id: str, body: dict) -> list[StationEvent]:
        start = _Mark(
            evse=None,
            connector=_int(body, "connectorId"),
            id_tag=_text(body, "idTag"),
            meter=_number(body, "meterStart"),
            timestamp=_text(body, "timestamp"),
        )

        def learn(answer: dict) -> None:
            transaction_id = _int(answer, "transactionId")
            if transaction_id is not None:
                _bounded_put(self._transactions, transaction_id, start, OPEN_TRANSACTIONS_LIMIT)

        self._await(message_id, learn)
        return [self._started(start, None)]

    def _stop_transaction(self, message_id: str, body: dict) -> list[StationEvent]:
        transaction_id = _int(body, "transactionId")
        start = self._transactions.pop(transaction_id, None) if transaction_id is not None else None
        stop = _Mark(None, None, _text(body, "idTag"), _number(body, "meterStop"), _text(body, "timestamp"))
        return [self._stopped(start, stop, transaction_id, _text(body, "reason"))]

    # --- transactions, OCPP 2.0.1

    def _transaction_event(self, message_id: str, body: dict) -> list[StationEvent]:
        event_type = body.get("eventType")
        if event_type not in ("Started", "Ended"):
            return []
        info = _dict(body, "transactionInfo")
        transaction_id = _text(info, "transactionId")
        evse = _dict(body, "evse")
        id_tag = _text(_dict(body, "idToken"), "idToken")
        meter = _energy_register(body.get("meterValue"))
        timestamp = _text(body, "timestamp")
        if event_type == "Started":
            start = _Mark(_int(evse, "id"), _int(evse, "connectorId"), id_tag, meter, timestamp)
            if transaction_id is not None:
                _bounded_put(self._transactions, transaction_id, start, OPEN_TRANSACTIONS_LIMIT)
            return [self._started(start, transaction_id)]
        start = self._transactions.pop(transaction_id, None) if transaction_id is not None else None
        # The evse is only required in a transaction's first TransactionEvent: the start's is the fallback.
        stop = _Mark(_int(evse, "id"), _int(evse, "connectorId"), id_tag, meter, timestamp)
        return [self._stopped(start, stop, transaction_id, _text(info, "stoppedReason"))]

    # --- transactions, both versions

    def _started(self, start: _Mark, transaction_id: int | str | None) -> StationEvent:
        details = _present(
            evse=start.evse,
            connector=start.connector,
            transaction_id=transaction_id,
            id_tag=start.id_tag,
            meter_start=start.meter,
            station_timestamp=start.timestamp,
        )
        return StationEvent("con_start_transaction", self.station_id, details)

    def _stopped(
        self, start: _Mark | None, stop: _Mark, transaction_id: int | str | None, reason: str | None
    ) -> StationEvent:
        """A stop event: C{stop} holds what the stop message said, C{start} (if known) fills the gaps."""
        evse, connector, id_tag = stop.evse, stop.connector, stop.id_tag
        energy_wh = duration_s = None
        if start is not None:
            evse = evse if evse is not None else start.evse
            connector = connector if connector is not None else start.connector
            id_tag = id_tag if id_tag is not None else start.id_tag
            if start.meter is not None and stop.meter is not None:
                energy_wh = stop.meter - start.meter
            duration_s = _seconds_between(start.timestamp, stop.timestamp)
        details = _present(
            evse=evse,
            transaction_id=transaction_id,
            id_tag=id_tag,
            energy_wh=energy_wh,
            duration_s=duration_s,
            reason=reason or "unknown",
            station_timestamp=stop.timestamp,
        )
        details["connector"] = connector
        return StationEvent("con_stop_transaction", self.station_id, details)

    # --- BootNotification

    def _boot_notification(self, message_id: str, body: dict) -> list[StationEvent]:
        if "chargingStation" in body:
            station = _dict(body, "chargingStation")
            details = _present(
                vendor=_text(station, "vendorName"),
                model=_text(station, "model"),
                firmware=_text(station, "firmwareVersion"),
                serial=_text(station, "serialNumber"),
                reason=_text(body, "reason"),
            )
        else:
            details = _present(
                vendor=_text(body, "chargePointVendor"),
                model=_text(body, "chargePointModel"),
                firmware=_text(body, "firmwareVersion"),
                serial=_text(body, "chargePointSerialNumber"),
            )
        self._await(message_id, self._boot_answered)
        return [StationEvent("station_boot", self.station_id, details)]

    def _boot_answered(self, answer: dict) -> None:
        # Only an accepted station heartbeats; otherwise the interval is the wait before its next boot.
        interval = _int(answer, "interval")
        accepted = answer.get("status") == "Accepted" and interval is not None and interval > 0
        self.heartbeat_interval = interval if accepted else None

    def _await(self, message_id: str, learn: Callable[[dict], None]) -> None:
        self._awaited.pop(message_id, None)
        _bounded_put(self._awaited, message_id, learn, AWAITED_ANSWERS_LIMIT)

    _READERS: ClassVar[dict[str | None, Callable[[StationTracker, str, dict], list[StationEvent]]]] = {
        "StatusNotification": _status_notification,
        "StartTransaction": _start_transaction,
        "StopTransaction": _stop_transaction,
        "TransactionEvent": _transaction_event,
        "BootNotification": _boot_notification,
    }


def _bounded_put(mapping: OrderedDict, key: Hashable, value: Any, limit: int) -> None:
    """Insert as newest, dropping the oldest entries beyond C{limit}."""
    mapping[key] = value
    while len(mapping) > limit:
        mapping.popitem(last=False)


def _present(**values: Any) -> dict[str, Any]:
    """The details that are known (not None)."""
    return {name: value for name, value in values.items() if value is not None}


def _dict(body: dict, key: str) -> dict:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def _text(body: dict, key: str) -> str | None:
    value = body.get(key)
    return value if isinstance(value, str) else None


def _int(body: dict, key: str) -> int | None:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(body: dict, key: str) -> float | None:
    """A finite meter reading; JSON allows NaN, Infinity and integers too large for a float."""
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= _METER_LIMIT:
        return None
    return value


def _energy_register(meter_values: Any) -> float | None:
    """The total imported energy in Wh from a 2.0.1 meterValue list, if it has one."""
    if not isinstance(meter_values, list):
        return None
    for meter_value in meter_values:
        samples = meter_value.get("sampledValue") if isinstance(meter_value, dict) else None
        for sample in samples if isinstance(samples, list) else ():
            if not isinstance(sample, dict) or "phase" in sample:
                continue
            if sample.get("measurand", _ENERGY_REGISTER) != _ENERGY_REGISTER:
                continue
            value = _number(sample, "value")
            if value is not None:
                return value * _wh_per_unit(_dict(sample, "unitOfMeasure"))
    return None


def _wh_per_unit(unit: dict) -> float:
    multiplier = _int(unit, "multiplier") or 0
    scale = 1000 if unit.get("unit") == "kWh" else 1
    return scale * 10.0 ** max(-9, min(9, multiplier))


def _seconds_between(start: str | None, end: str | None) -> int | None:
    """Whole seconds from one station timestamp to another; None if unreadable or negative."""
    began, ended = _timestamp(start), _timestamp(end)
    if began is None or ended is None:
        return None
    seconds = round((ended - began).total_seconds())
    # A station whose clock was reset mid-transaction gives a negative span: unknown, not wrong.
    return seconds if seconds >= 0 else None


def _timestamp(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    # OCPP timestamps are UTC; one without an offset is read as such rather than refused.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
