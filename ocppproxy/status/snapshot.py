"""
What the status shows of a L{ocppproxy.relay.snapshot.ProxySnapshot}: a station as
C{/stations} and C{/} show it, and the numbers C{/metrics} exposes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..notify.delivery import DeliveryQueue
from ..notify.names import StationNames
from ..relay.snapshot import ProxySnapshot, StationSnapshot
from .activity import StationActivity, StationRecord


def iso_time(seconds: float | None) -> str | None:
    """A POSIX time as ISO 8601 UTC with milliseconds (C{2026-11-25T12:00:00.000Z}); None stays None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def station_entry(
    station_id: str, station: StationSnapshot | None, record: StationRecord | None, names: StationNames
) -> dict:
    """
    One station as a JSON-ready mapping: C{station} is its snapshot while connected, or
    None for a station that is not (then C{record} is what is remembered of it, if anything).
    """
    name = names.name(station_id)
    return {
        "id": station_id,
        "name": name if name != station_id else None,
        "remote": station.peer if station else None,
        "subprotocol": station.subprotocol if station else None,
        "connected_since": iso_time(station.connected_since if station else None),
        "left": iso_time(record.left if record else None),
        "last_message": iso_time(record.last_message if record else None),
        "upstreams": {
            upstream: {
                "role": link.role,
                "state": link.state,
                "failed_attempts": link.failed_attempts,
                "queued": link.queued,
            }
            for upstream, link in (station.links.items() if station else ())
        },
        "connectors": {
            place: {
                "status": status.status,
                "errorCode": status.error_code,
                "timestamp": status.timestamp,
                "received": iso_time(status.received),
            }
            for place, status in (record.connectors.items() if record else ())
        },
    }


@dataclass
class MetricsSnapshot:
    """Copies of every number /metrics shows, so that they can be formatted off the reactor thread."""

    upstreams: tuple[str, ...]
    stations_connected: int = 0
    handshakes_refused: int = 0
    links: dict[tuple[str, str, str], int] = field(default_factory=dict)
    queued: dict[tuple[str, str], int] = field(default_factory=dict)
    frames: dict[tuple[str, int, str], int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    connects: dict[tuple[str, str], int] = field(default_factory=dict)
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)
    # Cluster mode only: this instance's name and whether it reaches Redis.
    instance: str | None = None
    cluster_redis_up: bool | None = None
    latency_counts: list[int] = field(default_factory=list)
    latency_sum: float = 0.0
    traffic_log: dict[str, int] | None = None
    stalled_stations: int = 0
    throttled_stations: int = 0
    stalled_links: dict[tuple[str, str], int] = field(default_factory=dict)
    stalls: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    shed: int = 0
    # (role, file, subject, expiry time) of every certificate presented or trusted.
    certificates: list[tuple[str, str, str, float]] = field(default_factory=list)
    # With an outbox: per upstream entries, bytes, oldest_age, replayed, dropped; the file's state.
    outbox: dict[str, dict] | None = None
    outbox_healthy: bool = True
    outbox_faults: int = 0


def metrics_snapshot(
    proxy: ProxySnapshot, activity: StationActivity, alert_queues: Mapping[str, DeliveryQueue], traffic_log=None
) -> MetricsSnapshot:
    """The numbers for /metrics; the gauges are the counts of the proxy's snapshot C{proxy} (stations not needed)."""
    snapshot = MetricsSnapshot(proxy.upstreams, proxy.stations_connected, proxy.handshakes_refused)
    snapshot.links = dict(proxy.links)
    snapshot.queued = dict(proxy.queued)
    snapshot.stalled_stations = proxy.stalled_stations
    snapshot.throttled_stations = proxy.throttled_stations
    snapshot.stalled_links = dict(proxy.stalled_links)
    snapshot.stalls = dict(proxy.stalls)
    snapshot.frames = dict(activity.frames)
    snapshot.dropped = dict(activity.dropped)
    snapshot.connects = dict(activity.connects)
    snapshot.latency_counts = list(activity.latency.counts)
    snapshot.latency_sum = activity.latency.sum
    snapshot.refused = dict(proxy.refused)
    snapshot.shed = proxy.shed
    for channel, queue in alert_queues.items():
        snapshot.alerts[(channel, "sent")] = queue.sent
        snapshot.alerts[(channel, "failed")] = queue.failed
        snapshot.alerts[(channel, "dropped")] = queue.dropped
    snapshot.instance, snapshot.cluster_redis_up = proxy.instance, proxy.cluster_redis_up
    snapshot.certificates = [(info.role, info.file, info.subject, info.not_after) for info in proxy.certificates]
    if proxy.outbox is not None:
        snapshot.outbox = {upstream: dict(row) for upstream, row in proxy.outbox.items()}
        snapshot.outbox_healthy, snapshot.outbox_faults = bool(proxy.outbox_healthy), proxy.outbox_faults
    if traffic_log is not None:
        snapshot.traffic_log = {
            "written": traffic_log.written,
            "dropped": traffic_log.dropped,
            "failed": traffic_log.failed,
        }
    return snapshot


def nearest_certificate(certificates, now: float) -> dict | None:
    """
    The certificate that expires first among C{certificates} (as L{ProxySnapshot} holds
    them), as the status page shows it; None without any.
    """
    if not certificates:
        return None
    first = min(certificates, key=lambda info: info.not_after)
    return {
        "role": first.role,
        "file": first.file,
        "subject": first.subject,
        "expires": iso_time(first.not_after),
        "days_left": int((first.not_after - now) // 86400),
    }
