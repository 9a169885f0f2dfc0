"""
/metrics: a Prometheus collector that reads the proxy at scrape time, in a private
registry served by C{prometheus_client.twisted.MetricsResource}.

That resource runs the scrape in the reactor's thread pool; the collector therefore
takes its snapshot on the reactor thread (L{blockingCallFromThread}) and formats it in
the pool's thread. Relaying itself only ever increments plain counters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from twisted.internet.threads import blockingCallFromThread

from ..core.ocppj import Frame
from ..relay.snapshot import ROLES
from .activity import LATENCY_BUCKETS
from .snapshot import MetricsSnapshot

_KIND_NAMES = {kind: Frame(kind, "", None, None).kind_name for kind in (2, 3, 4, 5, 6)}


class ProxyCollector:
    """
    Yields every ocppproxy metric from a L{MetricsSnapshot} taken by C{take_snapshot} on
    the reactor thread, which must be the thread that creates the collector.
    """

    def __init__(self, reactor, take_snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._reactor = reactor
        self._take_snapshot = take_snapshot
        self._reactor_thread = threading.get_ident()

    def snapshot(self) -> MetricsSnapshot:
        if threading.get_ident() == self._reactor_thread:
            return self._take_snapshot()
        return blockingCallFromThread(self._reactor, self._take_snapshot)

    def collect(self):
        snapshot = self.snapshot()
        yield from families(snapshot)


def families(snapshot: MetricsSnapshot):
    """The metric families for one snapshot."""
    stations = GaugeMetricFamily("ocppproxy_stations_connected", "Stations with an open WebSocket connection.")
    stations.add_metric([], snapshot.stations_connected)
    yield stations

    refused = CounterMetricFamily(
        "ocppproxy_station_handshakes_refused",
        "Station handshakes answered with an HTTP error (bad path or subprotocol, too many stations, primary refused).",
    )
    refused.add_metric([], snapshot.handshakes_refused)
    yield refused

    links = GaugeMetricFamily(
        "ocppproxy_upstream_links",
        "Connected stations' links to each upstream, by the upstream's role for the station (primary, mirror)"
        " and state.",
        labels=["upstream", "role", "state"],
    )
    for (upstream, role, state), count in sorted(snapshot.links.items()):
        links.add_metric([upstream, role, state], count)
    yield links

    queued = GaugeMetricFamily(
        "ocppproxy_upstream_queued_frames",
        "Frames waiting for an upstream link to connect, by upstream and its role.",
        labels=["upstream", "role"],
    )
    for (upstream, role), count in sorted(snapshot.queued.items()):
        queued.add_metric([upstream, role], count)
    yield queued

    stalled_links = GaugeMetricFamily(
        "ocppproxy_upstream_stalled_links",
        "Links whose upstream does not take frames as fast as they come (over limits.max_write_buffer unsent),"
        " by upstream and its role.",
        labels=["upstream", "role"],
    )
    for (upstream, role), count in sorted(snapshot.stalled_links.items()):
        stalled_links.add_metric([upstream, role], count)
    yield stalled_links

    stalled_stations = GaugeMetricFamily(
        "ocppproxy_stations_stalled",
        "Stations that do not take frames as fast as they come (over limits.max_write_buffer unsent): read paused.",
    )
    stalled_stations.add_metric([], snapshot.stalled_stations)
    yield stalled_stations

    throttled = GaugeMetricFamily(
        "ocppproxy_stations_throttled",
        "Stations sending over limits.max_frames_per_second: reading from them paused until their rate is back.",
    )
    throttled.add_metric([], snapshot.throttled_stations)
    yield throttled

    stalls = CounterMetricFamily(
        "ocppproxy_write_stalls",
        "Times a connection's unsent frames went over limits.max_write_buffer, by connection (station or upstream).",
        labels=["connection"],
    )
    for connection in ("station", *snapshot.upstreams):
        stalls.add_metric([connection], snapshot.stalls.get(connection, 0))
    yield stalls

    frames = CounterMetricFamily(
        "ocppproxy_frames",
        "Well-formed OCPP frames received, by direction (from_station, from_upstream), message type and upstream.",
        labels=["direction", "type", "upstream"],
    )
    for (direction, kind, upstream), count in sorted(snapshot.frames.items()):
        frames.add_metric([direction, _KIND_NAMES.get(kind, str(kind)), upstream], count)
    yield frames

    dropped = CounterMetricFamily(
        "ocppproxy_frames_dropped",
        "Frames dropped because an upstream's queue was full, by upstream and its role for the station.",
        labels=["upstream", "role"],
    )
    for upstream in snapshot.upstreams:
        for role in ROLES:
            dropped.add_metric([upstream, role], snapshot.dropped.get((upstream, role), 0))
    yield dropped

    connects = CounterMetricFamily(
        "ocppproxy_upstream_connect_attempts",
        "Connection attempts to an upstream, by its role for the station and outcome (ok: handshake done, failed).",
        labels=["upstream", "role", "outcome"],
    )
    for upstream in snapshot.upstreams:
        for role in ROLES:
            for outcome in ("ok", "failed"):
                connects.add_metric([upstream, role, outcome], snapshot.connects.get((upstream, role, outcome), 0))
    yield connects

    refused = CounterMetricFamily(
        "ocppproxy_connections_refused",
        "Station connections refused by a limit (max_handshakes, max_handshakes_per_address, max_stations,"
        " max_connects_per_minute).",
        labels=["limit"],
    )
    for limit, count in sorted(snapshot.refused.items()):
        refused.add_metric([limit], count)
    yield refused

    shed = CounterMetricFamily(
        "ocppproxy_handshakes_shed",
        "Unfinished station handshakes closed to make room for a newer connection (limits.max_handshakes).",
    )
    shed.add_metric([], snapshot.shed)
    yield shed

    alerts = CounterMetricFamily(
        "ocppproxy_alerts", "Alerts by channel and outcome (sent, failed, dropped).", labels=["channel", "outcome"]
    )
    for (channel, outcome), count in sorted(snapshot.alerts.items()):
        alerts.add_metric([channel, outcome], count)
    yield alerts

    latency = HistogramMetricFamily(
        "ocppproxy_primary_answer_seconds",
        "Seconds from relaying a station's CALL to handling the primary's answer to it.",
    )
    cumulative, buckets = 0, []
    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), snapshot.latency_counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    latency.add_metric([], buckets, snapshot.latency_sum)
    yield latency

    expiry = GaugeMetricFamily(
        "ocppproxy_certificate_expiry_timestamp_seconds",
        "When each certificate the proxy presents or trusts expires (Unix time), by role"
        " (station: towards stations, client: towards an upstream, ca: trusted), file and subject.",
        labels=["role", "file", "subject"],
    )
    for role, file, subject, not_after in snapshot.certificates:
        expiry.add_metric([role, file, subject], not_after)
    yield expiry

    if snapshot.traffic_log is not None:
        traffic = CounterMetricFamily(
            "ocppproxy_traffic_log_lines",
            "Traffic log lines by outcome (written, dropped: writer overloaded, failed: write error).",
            labels=["outcome"],
        )
        for outcome, count in snapshot.traffic_log.items():
            traffic.add_metric([outcome], count)
        yield traffic

    if snapshot.outbox is not None:
        yield from outbox_families(snapshot)

    if snapshot.cluster_redis_up is not None:
        redis_up = GaugeMetricFamily(
            "ocppproxy_cluster_redis_up",
            "Cluster mode: 1 while this instance reaches Redis, 0 while it relays on local state.",
            labels=["instance"],
        )
        redis_up.add_metric([snapshot.instance], int(snapshot.cluster_redis_up))
        yield redis_up


_OUTBOX_FAMILIES = (
    ("ocppproxy_outbox_entries", "entries", GaugeMetricFamily, "Durable outbox: entries waiting for each upstream (all stations)."),
    ("ocppproxy_outbox_bytes", "bytes", GaugeMetricFamily, "Durable outbox: bytes of the entries waiting for each upstream."),
    ("ocppproxy_outbox_oldest_age_seconds", "oldest_age", GaugeMetricFamily, "Durable outbox: age in seconds of the oldest entry waiting for each upstream."),
    ("ocppproxy_outbox_replayed", "replayed", CounterMetricFamily, "Durable outbox: entries sent to each upstream after waiting in the outbox."),
    ("ocppproxy_outbox_dropped", "dropped", CounterMetricFamily, "Durable outbox: entries dropped for each upstream (outbox.max_bytes, max_age)."),
)


def outbox_families(snapshot: MetricsSnapshot):
    """The outbox's families (with an C{outbox} section only)."""
    for name, key, kind, text in _OUTBOX_FAMILIES:
        family = kind(name, text, labels=["upstream"])
        for upstream, row in sorted(snapshot.outbox.items()):
            family.add_metric([upstream], row.get(key, 0))
        yield family
    up = GaugeMetricFamily(
        "ocppproxy_outbox_store_up", "Durable outbox: 1 while its file is written, 0 while only memory queues hold it."
    )
    up.add_metric([], int(snapshot.outbox_healthy))
    yield up
    faults = CounterMetricFamily(
        "ocppproxy_outbox_store_faults", "Durable outbox: episodes of its file not being writable (disk full, removed)."
    )
    faults.add_metric([], snapshot.outbox_faults)
    yield faults


def metrics_registry(collector: ProxyCollector) -> CollectorRegistry:
    """A registry of our own (not prometheus_client's global one) holding only C{collector}."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
