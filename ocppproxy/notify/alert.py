"""The values that flow through the notifier: detected events, formatted alerts, delivery errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StationEvent:
    """
    Something an operator may want to hear about, as detected from frames or connections.

    C{key} is one of L{ocppproxy.notify.keys.EVENT_KEYS}; C{details} holds what the
    message names: connector, evse, status, error_code, vendor_error_code, info,
    id_tag, energy_wh, duration_s, reason, vendor, model, firmware, upstream, url,
    station_timestamp, ... (only those that apply).
    """

    key: str
    station_id: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Alert:
    """
    A message ready for any channel: a short subject (fits a phone notification) and a
    text body, plus the facts behind them for channels that send data (the webhook):
    the station's human name (None without one), the proxy's time (ISO 8601 UTC) and
    the event's details.
    """

    key: str
    station_id: str
    subject: str
    text: str
    name: str | None = None
    time: str = ""
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)


class DeliveryError(Exception):
    """A channel could not deliver an alert; C{transient} says whether retrying may help."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient
