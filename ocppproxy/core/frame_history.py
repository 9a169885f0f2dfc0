"""
The last frames of each station, for the control-plane API (C{/api/stations/{id}/frames}):
a bounded number per station, kept as the bytes that crossed the wire (shown redacted),
and for L{KEEP_AFTER_LEAVING} seconds after the station left. Each frame has a number,
increasing per station, that a Server-Sent Events reader resumes from (C{Last-Event-ID}).
Pure: time is passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

KEEP_AFTER_LEAVING = 3600.0
"""Seconds a departed station's frames stay readable."""


@dataclass(slots=True, frozen=True)
class HistoryFrame:
    """One frame: its number (per station), when, which way, which upstream (None on the station's side), its bytes."""

    number: int
    time: float
    direction: str
    upstream: str | None
    payload: bytes


class _Station:
    __slots__ = ("frames", "left", "next_number")

    def __init__(self, limit: int) -> None:
        self.frames: deque[HistoryFrame] = deque(maxlen=limit)
        self.next_number = 1
        self.left: float | None = None


class FrameHistory:
    """
    At most C{limit} frames per station (the oldest dropped first). A station that left
    is forgotten L{KEEP_AFTER_LEAVING} seconds later (by L{forget}); memory is then bounded
    by the stations connected and those that left within the hour, times C{limit}.
    """

    def __init__(self, limit: int, keep_after_leaving: float = KEEP_AFTER_LEAVING) -> None:
        self.limit = limit
        self._keep = keep_after_leaving
        self._stations: dict[str, _Station] = {}

    def add(self, station_id: str, direction: str, upstream: str | None, payload: bytes, now: float) -> HistoryFrame:
        """Record a frame crossing the wire; returns it (numbered)."""
        station = self._stations.get(station_id)
        if station is None:
            station = self._stations[station_id] = _Station(self.limit)
        station.left = None
        frame = HistoryFrame(station.next_number, now, direction, upstream, payload)
        station.next_number += 1
        if self.limit:
            station.frames.append(frame)
        return frame

    def left(self, station_id: str, now: float) -> None:
        """The station disconnected: its frames are kept L{KEEP_AFTER_LEAVING} seconds more."""
        station = self._stations.get(station_id)
        if station is not None:
            station.left = now

    def known(self, station_id: str) -> bool:
        """Whether frames of C{station_id} are (or were, within the hour) recorded."""
        return station_id in self._stations

    def frames(self, station_id: str, after: int = 0) -> list[HistoryFrame]:
        """The frames kept of C{station_id} numbered above C{after}, oldest first."""
        station = self._stations.get(station_id)
        if station is None:
            return []
        return [frame for frame in station.frames if frame.number > after]

    def forget(self, now: float) -> int:
        """Forget the stations that left more than L{KEEP_AFTER_LEAVING} seconds ago; how many were."""
        gone = [sid for sid, station in self._stations.items() if station.left is not None and station.left + self._keep <= now]
        for station_id in gone:
            del self._stations[station_id]
        return len(gone)

    def __len__(self) -> int:
        return len(self._stations)
