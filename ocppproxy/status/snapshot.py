"""
The proxy's state as plain data, taken on the reactor thread: the station list that
C{/stations} and C{/} show, and the numbers C{/metrics} exposes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..notify.delivery import DeliveryQueue
from ..notify.names import StationNames
from ..upstream import UpstreamLink
from .activity import StationActivity

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


def station_list(proxy, activity: StationActivity, names: StationNames) -> list[dict]:
    """Every station whose handshake is complete, by id, as JSON-ready mappings."""
    stations = []
    for station_id, session in sorted(proxy.sessions.items()):
        if session.connected_since is None:
            continue
        record = activity.stations.get(station_id)
        name = names.name(station_id)
        stations.append(
            {
                "id": station_id,
                "name": name if name != station_id else None,
                "remote": session.protocol.peer,
                "subprotocol": session.subprotocol,
                "connected_since": iso_time(session.connected_since),
                "last_message": iso_time(record.last_message if record else None),
                "upstreams": {
                    upstream: {
                        "state": link_state(link),
                        "failed_attempts": link.failed_attempts,
                        "queued": len(link.queue),
                    }
                    for upstream, link in session.links.items()
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
        )
    return stations


@dataclass
class MetricsSnapshot:
    """Copies of every number /metrics shows, so that they can be formatted off the reactor thread."""

    upstreams: tuple[str, ...]
    stations_connected: int = 0
    links: dict[tuple[str, str], int] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
    frames: dict[tuple[str, int, str], int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    connects: dict[tuple[str, str], int] = field(default_factory=dict)
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=list)
    latency_sum: float = 0.0
    traffic_log: dict[str, int] | None = None
    refused: dict[str, int] = field(default_factory=dict)
    shed: int = 0


def metrics_snapshot(
    proxy, activity: StationActivity, alert_queues: Mapping[str, DeliveryQueue], traffic_log=None
) -> MetricsSnapshot:
    """The numbers for /metrics; gauges are counted from the proxy's sessions now."""
    upstreams = tuple(proxy.config.upstream_urls())
    snapshot = MetricsSnapshot(upstreams)
    snapshot.links = {(upstream, state): 0 for upstream in upstreams for state in LINK_STATES}
    snapshot.queued = dict.fromkeys(upstreams, 0)
    for session in proxy.sessions.values():
        if session.connected_since is None:
            continue
        snapshot.stations_connected += 1
        for upstream, link in session.links.items():
            snapshot.links[(upstream, link_state(link))] += 1
            snapshot.queued[upstream] += len(link.queue)
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
    if traffic_log is not None:
        snapshot.traffic_log = {
            "written": traffic_log.written,
            "dropped": traffic_log.dropped,
            "failed": traffic_log.failed,
        }
    return snapshot
