"""
Alerts in words: a L{StationEvent} becomes a subject short enough for a phone
notification and a plain-text body with every detail known. Pure.

Station-provided text (ids, error info, vendor strings) is stripped of control
characters and bounded here; escaping for HTML is the e-mail channel's concern.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .alert import Alert, StationEvent
from .names import StationNames

SUBJECT_LIMIT = 100
"""Subjects are cut to this many characters, so they fit a phone notification."""
_VALUE_LIMIT = 200
_LABEL_MINIMUM = 30
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def format_alert(event: StationEvent, names: StationNames, proxy_time: datetime) -> Alert:
    """
    The alert for C{event}: subject and text naming the station by its human name and id.

    C{proxy_time} is when the proxy saw the event (UTC; a naive time is taken as UTC).
    An event without a station id (C{upstream_down}, which covers all stations) is
    named by its upstream alone. Station-provided texts among the details are cleaned
    and bounded as in the message.
    """
    words = _WORDS[event.key](event.details)
    if event.details.get("more"):
        # A burst's summary: the same event for several more stations.
        count = event.details.get("stations")
        words = f"{count} more station{'' if count == 1 else 's'}: {words}"
    subject = _subject(event.station_id, names, words)
    human = names.name(event.station_id)
    return Alert(
        event.key,
        event.station_id,
        subject,
        _text(event, names, words, proxy_time),
        name=_clean(human) if event.station_id and human != event.station_id else None,
        time=_utc(proxy_time, "milliseconds"),
        details={key: _clean(value) if isinstance(value, str) else value for key, value in event.details.items()},
    )


def _subject(station_id: str, names: StationNames, words: str) -> str:
    """C{"label: words"} within L{SUBJECT_LIMIT}; a long label is cut first, so the event stays."""
    if not _clean(station_id):
        return _cut(words, SUBJECT_LIMIT)
    label = _clean(names.label(station_id))
    room = max(_LABEL_MINIMUM, SUBJECT_LIMIT - len(words) - 2)
    return _cut(f"{_cut(label, room)}: {words}", SUBJECT_LIMIT)


def _text(event: StationEvent, names: StationNames, words: str, proxy_time: datetime) -> str:
    lines = []
    station_id = _clean(event.station_id)
    if station_id:
        name = _clean(names.name(event.station_id))
        if name != station_id:
            lines.append(f"Station: {name}")
        lines.append(f"Station id: {station_id}")
    lines.append(f"Event: {_sentence(words)}")
    for key, title, show in _DETAIL_LINES:
        value = event.details.get(key)
        if value is not None and (key, value) != ("error_code", "NoError"):
            lines.append(f"{title}: {show(value)}")
    lines.append(f"Proxy time: {_utc(proxy_time)}")
    lines.append(f"Alert: {event.key}")
    return "\n".join(lines) + "\n"


# --- the event in words (the subject after the station's label)


def _place(details: Mapping[str, Any]) -> str:
    """Where on the station: C{"connector 2"}, C{"EVSE 1 connector 2"}, or C{"station"} for 0."""
    evse, connector = details.get("evse"), details.get("connector")
    if evse == 0 or (evse is None and connector == 0):
        return "station"
    parts = []
    if evse is not None:
        parts.append(f"EVSE {_clean(evse)}")
    if connector is not None:
        parts.append(f"connector {_clean(connector)}")
    return " ".join(parts)


def _status(default: str, where: str = "connector") -> Callable[[Mapping[str, Any]], str]:
    def words(details: Mapping[str, Any]) -> str:
        return f"{_place(details) or where} {_clean(details.get('status', default))}"

    return words


def _status_error(details: Mapping[str, Any]) -> str:
    place = _place(details) or "station"
    return f"{place} error {_clean(details.get('error_code', 'unknown'))} ({_clean(details.get('status', '?'))})"


def _started(details: Mapping[str, Any]) -> str:
    place = _place(details)
    return f"charging started on {place}" if place else "charging started"


def _stopped(details: Mapping[str, Any]) -> str:
    place = _place(details)
    words = f"charging stopped on {place}" if place else "charging stopped"
    if details.get("energy_wh") is not None:
        words += f", {_kwh(details['energy_wh'])}"
    return words


def _boot(details: Mapping[str, Any]) -> str:
    what = " ".join(_clean(details[key]) for key in ("vendor", "model") if details.get(key))
    if details.get("firmware"):
        what += f" firmware {_clean(details['firmware'])}"
    return f"booted ({what.strip()})" if what.strip() else "booted"


def _silent(details: Mapping[str, Any]) -> str:
    words = f"no message for {_about(details.get('silent_for_s'))}"
    if details.get("heartbeat_interval"):
        words += f" (heartbeat every {_about(details['heartbeat_interval'])})"
    return words


def _upstream(details: Mapping[str, Any]) -> str:
    return f"{_clean(details.get('upstream', 'an upstream'))} central system"


def _upstream_down(details: Mapping[str, Any]) -> str:
    stations = details.get("stations")
    count = f" ({stations} station{'' if stations == 1 else 's'})" if stations is not None else ""
    url = f" {_public_url(details['url'])}" if details.get("url") else ""
    return f"{_upstream(details)}{url} unreachable for {_about(details.get('down_for_s'))}{count}"


def _failover(started: bool) -> Callable[[Mapping[str, Any]], str]:
    def words(details: Mapping[str, Any]) -> str:
        stations = details.get("stations")
        what = "failover: its failover mirror answers, the primary is away" if started else "failover ended"
        if stations:
            what = f"{what} ({stations} stations)"
        if not started and details.get("duration_s") is not None:
            what += f" after {_about(details['duration_s'])}"
        return what

    return words


_ROLES = {"station": "station", "client": "client", "ca": "CA"}


def _certificate(expired: bool) -> Callable[[Mapping[str, Any]], str]:
    def words(details: Mapping[str, Any]) -> str:
        what = f"{_ROLES.get(details.get('role'), 'TLS')} certificate {_clean(details.get('subject', ''))}".rstrip()
        if expired:
            return f"{what} has expired"
        days = details.get("days_left")
        if days is None:
            return f"{what} expires soon"
        return f"{what} expires in {_clean(days)} day{'' if days == 1 else 's'}"

    return words


_WORDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "connected_to_proxy": lambda details: "connected to proxy",
    "disconnected_from_proxy": lambda details: "disconnected from proxy",
    "connected_to_upstream": lambda details: f"connected to {_upstream(details)}",
    "disconnected_from_upstream": lambda details: f"{_upstream(details)} disconnected",
    "cp_status_available": _status("Available", "station"),
    "cp_status_unavailable": _status("Unavailable", "station"),
    "cp_status_faulted": _status("Faulted", "station"),
    "con_status_available": _status("Available"),
    "con_status_preparing": _status("Preparing"),
    "con_status_charging": _status("Charging"),
    "con_status_suspended_evse": _status("SuspendedEVSE"),
    "con_status_suspended_ev": _status("SuspendedEV"),
    "con_status_finishing": _status("Finishing"),
    "con_status_reserved": _status("Reserved"),
    "con_status_unavailable": _status("Unavailable"),
    "con_status_faulted": _status("Faulted"),
    "con_status_occupied": _status("Occupied"),
    "con_start_transaction": _started,
    "con_stop_transaction": _stopped,
    "station_boot": _boot,
    "station_silent": _silent,
    "upstream_down": _upstream_down,
    "status_error": _status_error,
    "failover_started": _failover(True),
    "failover_ended": _failover(False),
    "certificate_expiring": _certificate(False),
    "certificate_expired": _certificate(True),
    "outbox_dropped": lambda details: (
        f"outbox entries for {_upstream(details)} dropped ({_clean(details.get('count', '?'))} so far):"
        " outbox.max_bytes or outbox.max_age reached"
    ),
}


# --- text hygiene


def _clean(value: Any) -> str:
    """One bounded line of text: control characters (CR, LF, ...) become a space."""
    return _cut(_CONTROL.sub(" ", str(value)).strip(), _VALUE_LIMIT)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sentence(words: str) -> str:
    return words[:1].upper() + words[1:]


def _public_url(url: Any) -> str:
    """The URL without any user name and password it may carry."""
    text = _clean(url)
    try:
        parts = urlsplit(text)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(unreadable URL)"


def _utc(moment: datetime, timespec: str = "seconds") -> str:
    """ISO 8601 in UTC, to the second by default: C{"2024-05-01T10:00:00Z"}."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


# --- the body's detail lines, in this order


def _hms(seconds: Any) -> str:
    """C{3723} -> C{"1:02:03"}."""
    if not _finite(seconds):
        return _clean(seconds)
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _about(seconds: Any) -> str:
    """A rough duration for a subject: C{"45 s"}, C{"5 min"}, C{"2 h 05 min"}."""
    if not _finite(seconds):
        return "a while"
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _kwh(energy_wh: Any) -> str:
    if not _finite(energy_wh):
        return _clean(energy_wh)
    return f"{energy_wh / 1000:.3f} kWh"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _seconds(seconds: Any) -> str:
    return f"{_clean(seconds)} s"


_DETAIL_LINES: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("evse", "EVSE", _clean),
    ("connector", "Connector", _clean),
    ("status", "Status", _clean),
    ("error_code", "Error code", _clean),
    ("vendor_error_code", "Vendor error code", _clean),
    ("info", "Info", _clean),
    ("transaction_id", "Transaction", _clean),
    ("id_tag", "Id tag", _clean),
    ("meter_start", "Meter at start", _kwh),
    ("energy_wh", "Energy", _kwh),
    ("duration_s", "Duration", _hms),
    ("reason", "Reason", _clean),
    ("vendor", "Vendor", _clean),
    ("model", "Model", _clean),
    ("firmware", "Firmware", _clean),
    ("serial", "Serial number", _clean),
    ("upstream", "Central system", _clean),
    ("url", "URL", _public_url),
    ("code", "Close code", _clean),
    ("peer", "Peer address", _clean),
    ("silent_for_s", "Silent for", _hms),
    ("heartbeat_interval", "Heartbeat interval", _seconds),
    ("down_for_s", "Unreachable for", _hms),
    ("stations", "Stations", _clean),
    ("station_ids", "Station ids", _clean),
    ("station_timestamp", "Station time", _clean),
    ("file", "Certificate file", _clean),
    ("expires", "Expires", _clean),
    ("fingerprint", "SHA-256 fingerprint", _clean),
)
