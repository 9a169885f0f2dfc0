"""
What the status page and the metrics need beyond the proxy's own state: each station's
last StatusNotification per connector and last message, the stations that left (for a
while, and how many, bounded), and the relaying counters.
Observes the proxy; every call on the relaying path is a few dictionary updates.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..core.observer import FROM_STATION, FROM_UPSTREAM
from ..core.ocppj import ANSWERS, CALL, Frame
from ..core.redact import Redactor
from ..core.routes import Route
from ..relay.snapshot import PRIMARY_ROLE, role_of

CALLS_LIMIT = 100
CONNECTORS_LIMIT = 64
DEPARTED_LIMIT = 10_000
"""Stations remembered after they left; beyond, the one gone longest is forgotten."""
FORGET_AFTER = 86_400.0
"""Seconds after which a station that left is forgotten, unless it is named in C{client_names}."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    """A connector's last StatusNotification: status, errorCode (1.6 only), the station's timestamp, when received."""

    status: str
    error_code: str | None
    timestamp: str | None
    received: float


class StationRecord:
    """One station's activity; C{left} is when its last connection ended, None while connected."""

    __slots__ = ("calls", "connections", "connectors", "last_message", "left")

    def __init__(self) -> None:
        self.connections = 0
        self.left: float | None = None
        self.last_message: float | None = None
        self.connectors: dict[str, ConnectorStatus] = {}
        self.calls: OrderedDict[str, float] = OrderedDict()

    def status_notification(self, body, now: float) -> None:
        """Remember a StatusNotification (OCPP 1.6 connectorId, or 2.x evseId/connectorId)."""
        if not isinstance(body, dict):
            return
        if "connectorStatus" in body:
            place = f"{body.get('evseId')}/{body.get('connectorId')}"
            status, error_code = body.get("connectorStatus"), None
        else:
            place = str(body.get("connectorId"))
            status, error_code = body.get("status"), body.get("errorCode")
        if not isinstance(status, str):
            return
        timestamp = body.get("timestamp")
        connectors = self.connectors
        connectors.pop(place, None)
        connectors[place] = ConnectorStatus(
            status,
            error_code if isinstance(error_code, str) else None,
            timestamp if isinstance(timestamp, str) else None,
            now,
        )
        if len(connectors) > CONNECTORS_LIMIT:
            del connectors[next(iter(connectors))]


class LatencyHistogram:
    """Counts per bucket (upper bounds L{LATENCY_BUCKETS}, then +Inf) and the sum, in seconds."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class FleetRecord(Protocol):
    """Cluster mode's record of the stations seen (L{ocppproxy.cluster.fleet.ClusterFleet})."""

    def station_connected(self, station_id: str) -> None:
        """C{station_id}'s first connection here opened."""

    def station_left(self, station_id: str) -> None:
        """C{station_id}'s last connection here ended."""


class StationActivity:
    """
    A L{ocppproxy.core.observer.ProxyObserver} keeping, per connected station, the last
    status of each connector and the time of its last frame; the same of the stations
    that left (C{departed}, oldest departure first, at most L{DEPARTED_LIMIT}; see
    L{forget_departed}, which the status service calls periodically), telling
    C{fleet_record} (cluster mode) of arrivals and departures; and, for the metrics:
    frames by direction, message type and upstream (C{frames}, keyed by
    C{(direction, kind, upstream)} with the numeric OCPP message type), frames dropped
    from full queues by (upstream, role), connection attempts by (upstream, role,
    outcome), and C{latency}: seconds from relaying a station's CALL to handling its
    primary's answer. C{route_of(station id)} gives a connected station's route in force
    (None if unknown): whose role an upstream has for it (asked on those events only,
    and for an upstream's answer to a station CALL still waiting for one).
    """

    def __init__(
        self,
        clock,
        redactor: Redactor | None = None,
        fleet_record: FleetRecord | None = None,
        route_of: Callable[[str], Route | None] = lambda station_id: None,
    ) -> None:
        self._clock = clock
        self._route_of = route_of
        # The operator's redact keys, masked in the statuses the page shows (a walk: only if named).
        self._redact = redactor.value if redactor is not None and redactor.keys else None
        # Cluster mode: the cluster's fleet record (ocppproxy.cluster.fleet.ClusterFleet), told when a
        # station is first connected here and when its last connection here ends.
        self.fleet_record = fleet_record
        self.stations: dict[str, StationRecord] = {}
        self.departed: OrderedDict[str, StationRecord] = OrderedDict()
        self.frames: dict[tuple[str, int, str], int] = {}
        self.dropped: dict[tuple[str, str], int] = {}
        self.connects: dict[tuple[str, str, str], int] = {}
        self.latency = LatencyHistogram()

    def station_connected(self, station_id: str, peer: str) -> None:
        record = self.stations.get(station_id)
        if record is None:
            self.departed.pop(station_id, None)  # back: its new connection starts a new record
            record = self.stations[station_id] = StationRecord()
            if self.fleet_record is not None:
                self.fleet_record.station_connected(station_id)
        record.connections += 1

    def station_disconnected(self, station_id: str, code, reason) -> None:
        record = self.stations.get(station_id)
        if record is not None:
            record.connections -= 1
            if record.connections <= 0:
                del self.stations[station_id]
                record.left = self._clock.seconds()
                record.calls.clear()
                self.departed[station_id] = record
                if len(self.departed) > DEPARTED_LIMIT:
                    self.departed.popitem(last=False)
                if self.fleet_record is not None:
                    self.fleet_record.station_left(station_id)

    def forget_departed(self, keep: Callable[[str], bool]) -> None:
        """
        Forget the stations that left more than L{FORGET_AFTER} seconds ago, except those
        C{keep} names (the ones in C{client_names}). Called periodically, neither when the
        list is read nor on the relaying path; costs one look at each station kept beyond that age.
        """
        cutoff = self._clock.seconds() - FORGET_AFTER
        forgotten = []
        for station_id, record in self.departed.items():
            if record.left > cutoff:
                break
            if not keep(station_id):
                forgotten.append(station_id)
        for station_id in forgotten:
            del self.departed[station_id]

    def station_frame(self, station_id: str, frame: Frame, payload: bytes = b"") -> None:
        key = (FROM_STATION, frame.kind, "")
        frames = self.frames
        frames[key] = frames.get(key, 0) + 1
        record = self.stations.get(station_id)
        if record is None:
            return
        now = record.last_message = self._clock.seconds()
        if frame.kind == CALL:
            calls = record.calls
            calls[frame.message_id] = now
            if len(calls) > CALLS_LIMIT:
                calls.popitem(last=False)
            if frame.action == "StatusNotification":
                record.status_notification(frame.body if self._redact is None else self._redact(frame.body), now)

    def upstream_frame(self, station_id: str, upstream: str, frame: Frame, payload: bytes = b"") -> None:
        key = (FROM_UPSTREAM, frame.kind, upstream)
        frames = self.frames
        frames[key] = frames.get(key, 0) + 1
        if frame.kind in ANSWERS:
            record = self.stations.get(station_id)
            if (
                record is not None
                and frame.message_id in record.calls
                and role_of(self._route_of(station_id), upstream) is PRIMARY_ROLE
            ):
                sent = record.calls.pop(frame.message_id)
                self.latency.observe(self._clock.seconds() - sent)

    def upstream_connected(self, station_id: str, upstream: str, url: str) -> None:
        self._count_connect(station_id, upstream, "ok")

    def upstream_attempt_failed(self, station_id: str, upstream: str, url: str, reason: str) -> None:
        self._count_connect(station_id, upstream, "failed")

    def _count_connect(self, station_id: str, upstream: str, outcome: str) -> None:
        key = (upstream, role_of(self._route_of(station_id), upstream), outcome)
        self.connects[key] = self.connects.get(key, 0) + 1

    def upstream_disconnected(self, station_id: str, upstream: str, url: str, reason: str) -> None:
        pass

    def frame_dropped(self, station_id: str, upstream: str) -> None:
        key = (upstream, role_of(self._route_of(station_id), upstream))
        self.dropped[key] = self.dropped.get(key, 0) + 1

    def failover_started(self, station_id: str) -> None:
        pass

    def failover_ended(self, station_id: str, duration: float) -> None:
        pass
