"""
The alerts the status page lists: the last L{RECENT_LIMIT} the notifier sent, with what
each channel made of them, and how many were sent in the last hour. Fed by the notifier
(L{ocppproxy.notify.service.NotifierService.alert_observer}); it only takes note.
"""

from __future__ import annotations

from collections import deque

from ..notify.alert import Alert
from ..notify.names import StationNames
from .snapshot import iso_time

RECENT_LIMIT = 100
PENDING = "pending"
_MINUTE = 60.0
_HOUR_MINUTES = 60


class SentAlert:
    """One alert as sent: when, and each channel's outcome (pending, then sent, failed or dropped)."""

    __slots__ = ("alert", "channels", "time")

    def __init__(self, alert: Alert, time: float, channels: list[str]) -> None:
        self.alert = alert
        self.time = time
        self.channels = dict.fromkeys(channels, PENDING)


class RecentAlerts:
    """
    The last L{RECENT_LIMIT} alerts, newest last, and per-minute counts of the last hour
    (so the hour's count stays exact to the minute whatever the number of alerts).
    """

    def __init__(self, clock) -> None:
        self._clock = clock
        self.recent: deque[SentAlert] = deque()
        self._by_alert: dict[int, SentAlert] = {}
        self._minutes: deque[list[int]] = deque()  # [minute number, alerts in it], oldest first

    def alert_sent(self, alert: Alert, channels: list[str]) -> None:
        """The notifier handed C{alert} to C{channels}."""
        now = self._clock.seconds()
        entry = SentAlert(alert, now, channels)
        self.recent.append(entry)
        self._by_alert[id(alert)] = entry
        if len(self.recent) > RECENT_LIMIT:
            del self._by_alert[id(self.recent.popleft().alert)]
        minute = int(now // _MINUTE)
        if self._minutes and self._minutes[-1][0] == minute:
            self._minutes[-1][1] += 1
        else:
            self._minutes.append([minute, 1])
            self._drop_old_minutes(minute)

    def alert_outcome(self, alert: Alert, channel: str, outcome: str) -> None:
        """C{channel} is done with C{alert}: C{outcome} is sent, failed or dropped."""
        entry = self._by_alert.get(id(alert))
        if entry is not None and entry.alert is alert:
            entry.channels[channel] = outcome

    def last_hour(self) -> int:
        """Alerts sent in the last hour (to the minute)."""
        self._drop_old_minutes(int(self._clock.seconds() // _MINUTE))
        return sum(count for _, count in self._minutes)

    def _drop_old_minutes(self, minute: int) -> None:
        while self._minutes and self._minutes[0][0] <= minute - _HOUR_MINUTES:
            self._minutes.popleft()


def alerts_document(alerts: RecentAlerts, names: StationNames, now: float) -> dict:
    """The /alerts document: the hour's count and the recent alerts, newest first."""
    return {
        "time": iso_time(now),
        "last_hour": alerts.last_hour(),
        "alerts": [
            {
                "time": iso_time(entry.time),
                "station": entry.alert.station_id or None,
                "name": _name(names, entry.alert.station_id),
                "kind": entry.alert.key,
                "subject": entry.alert.subject,
                "channels": dict(entry.channels),
            }
            for entry in reversed(alerts.recent)
        ],
    }


def _name(names: StationNames, station_id: str) -> str | None:
    name = names.name(station_id) if station_id else station_id
    return name if name != station_id else None
