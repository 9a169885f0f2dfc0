"""
The proxy's state as plain data, taken on the reactor thread: a station as C{/stations}
and C{/} show it, and the numbers C{/metrics} exposes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..notify.delivery import DeliveryQueue
from ..notify.names import StationNames
from ..wire.upstream import UpstreamLink
from .activity import StationActivity, StationRecord

CONNECTED = "connected"
RECONNECTING = "reconnecting"
GIVEN_UP = "given_up"
LINK_STATES = (CONNECTED, RECONNECTING, GIVEN_UP)


def iso_time(seconds: float | None) -> str | None:
    """A POSIX time as ISO 8601 UTC with milliseconds (C{2026-11-25T12:00:00.000Z}); None stays None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def link_state(link: UpstreamLink) -> str:
    """connected, reconnecting (also before the first connection) or given_up."""
    if link.connected:
        return CONNECTED
    if link.gave_up:
        return GIVEN_UP
    return RECONNECTING


def station_entry(station_id: str, session, record: StationRecord | None, names: StationNames) -> dict:
    """
    One station as a JSON-ready mapping: C{session} is its open session, or None for a
    station that is not connected (then C{record} is what is remembered of it, if anything).
    """
    name = names.name(station_id)
    return {
        "id": station_id,
        "name": name if name != station_id else None,
        "remote": session.protocol.peer if session else None,
        "subprotocol": session.subprotocol if session else None,
        "connected_since": iso_time(session.connected_since if session else None),
        "left": iso_time(record.left if record else None),
        "last_message": iso_time(record.last_message if record else None),
        "upstreams": {
            upstream: {
                "state": link_state(link),
                "failed_attempts": link.failed_attempts,
                "queued": len(link.queue),
            }
            for upstream, link in (session.links.items() if session else ())
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
    links: dict[tuple[str, str], int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
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
    stalled_links: dict[str, int] = field(default_factory=dict)
    stalls: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    shed: int = 0


def metrics_snapshot(
    proxy, activity: StationActivity, alert_queues: Mapping[str, DeliveryQueue], traffic_log=None
) -> MetricsSnapshot:
    """The numbers for /metrics; gauges are counted from the proxy's sessions now."""
    upstreams = tuple(proxy.config.upstream_urls())
    snapshot = MetricsSnapshot(upstreams, handshakes_refused=proxy.handshakes_refused)
    snapshot.links = {(upstream, state): 0 for upstream in upstreams for state in LINK_STATES}
    snapshot.queued = dict.fromkeys(upstreams, 0)
    snapshot.stalled_links = dict.fromkeys(upstreams, 0)
    for session in proxy.sessions.values():
        if session.connected_since is None:
            continue
        snapshot.stations_connected += 1
        snapshot.stalled_stations += session.stalled
        for upstream, link in session.links.items():
            snapshot.links[(upstream, link_state(link))] += 1
            snapshot.queued[upstream] += len(link.queue)
            snapshot.stalled_links[upstream] += link.stalled
    snapshot.stalls = dict(proxy.write_limits.stalls)
    snapshot.frames = dict(activity.frames)
    snapshot.dropped = dict(activity.dropped)
    snapshot.connects = dict(activity.connects)
    snapshot.latency_counts = list(activity.latency.counts)
    snapshot.latency_sum = activity.latency.sum
    snapshot.refused = dict(proxy.limits.refused)
    snapshot.shed = proxy.limits.shed
    for channel, queue in alert_queues.items():
        snapshot.alerts[(channel, "sent")] = queue.sent
        snapshot.alerts[(channel, "failed")] = queue.failed
        snapshot.alerts[(channel, "dropped")] = queue.dropped
    ownership = getattr(proxy, "ownership", None)
    if ownership is not None:
        snapshot.instance, snapshot.cluster_redis_up = ownership.instance, ownership.redis_up
    if traffic_log is not None:
        snapshot.traffic_log = {
            "written": traffic_log.written,
            "dropped": traffic_log.dropped,
            "failed": traffic_log.failed,
        }
    return snapshot
