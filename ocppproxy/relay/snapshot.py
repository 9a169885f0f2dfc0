"""
The proxy's state as plain, read-only data (L{ProxySnapshot}), taken on the reactor
thread: what the status page and the metrics show, without reaching into sessions
and links.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

CONNECTED = "connected"
RECONNECTING = "reconnecting"
GIVEN_UP = "given_up"
LINK_STATES = (CONNECTED, RECONNECTING, GIVEN_UP)
PRIMARY_ROLE = "primary"
MIRROR_ROLE = "mirror"
ROLES = (PRIMARY_ROLE, MIRROR_ROLE)
"""An upstream's role for one station: the primary (its answers reach the station) or a mirror."""


def role_of(route, upstream: str) -> str:
    """
    C{upstream}'s role on a station's C{route} in force (a L{ocppproxy.core.routes.Route},
    or None before it has one): primary or mirror (also a link that is leaving the route,
    or a new primary whose link is not live yet: the route in force answers).
    """
    return PRIMARY_ROLE if route is not None and route.primary == upstream else MIRROR_ROLE


class LinkSnapshot(NamedTuple):
    """
    One station's link to one upstream: C{state} one of L{LINK_STATES}, frames C{queued}
    for it, and the upstream's C{role} for this station (one of L{ROLES}).
    """

    state: str
    failed_attempts: int
    queued: int
    stalled: bool
    role: str = MIRROR_ROLE


class StationSnapshot(NamedTuple):
    """A station whose handshake is complete: its peer address, subprotocol, since when, and its links by upstream."""

    station_id: str
    peer: str
    subprotocol: str | None
    connected_since: float
    stalled: bool
    links: dict[str, LinkSnapshot]


@dataclass(frozen=True, slots=True)
class ProxySnapshot:
    """
    The proxy at one moment: its C{upstreams} by name (as configured), the connected
    C{stations} by id (empty when taken without them), whether it is C{accepting}, the
    links of the connected stations counted by (upstream, role, state) with every role
    and state of every upstream present (the role is the upstream's for that station:
    see L{role_of}), the frames C{queued} and the C{stalled_links} by (upstream, role),
    and its counters (handshakes refused, write stall episodes by side, connections
    refused by reason, handshakes shed); in cluster mode, its C{instance} name and whether
    it reaches Redis (C{cluster_redis_up}); the C{throttled_stations} (reading paused
    over their frame rate). The mappings are copies: changing them changes
    nothing in the proxy. (Stations and links are named tuples: cheap to take by the thousand.)
    """

    upstreams: tuple[str, ...]
    stations: dict[str, StationSnapshot]
    stations_connected: int
    stalled_stations: int
    links: dict[tuple[str, str, str], int]
    queued: dict[tuple[str, str], int]
    stalled_links: dict[tuple[str, str], int]
    accepting: bool
    handshakes_refused: int
    stalls: dict[str, int]
    refused: dict[str, int]
    shed: int
    # Cluster mode only: this instance's name, and whether it reaches Redis now.
    instance: str | None = None
    cluster_redis_up: bool | None = None
    # Stations whose reading is paused now: over limits.max_frames_per_second.
    throttled_stations: int = 0
    # Every certificate the proxy presents or trusts (wire.certificates.CertificateInfo).
    certificates: tuple = ()
    # With an outbox: per upstream its totals (see relay.outbox.Outbox.totals), whether its
    # file is written, its fault episodes, and (with stations) each station's backlog per upstream.
    outbox: dict | None = None
    outbox_healthy: bool | None = None
    outbox_faults: int = 0
    outbox_backlogs: dict | None = None


def link_state(link) -> str:
    """connected, reconnecting (also before the first connection) or given_up."""
    if link.connected:
        return CONNECTED
    if link.gave_up:
        return GIVEN_UP
    return RECONNECTING


def proxy_snapshot(proxy, with_stations: bool = True) -> ProxySnapshot:
    """
    A L{ProxySnapshot} of a L{ocppproxy.relay.proxy.ProxyService}; a station still in its
    WebSocket handshake is left out. Without C{with_stations} only the counts are taken
    (what /metrics needs, five times quicker for a large fleet).
    """
    upstreams = tuple(proxy.routing.upstreams)  # as of the last reload (upstreams are live)
    stations = {}
    connected = stalled = throttled = 0
    links = {(upstream, role, state): 0 for upstream in upstreams for role in ROLES for state in LINK_STATES}
    queued = {(upstream, role): 0 for upstream in upstreams for role in ROLES}
    stalled_links = dict(queued)
    for station_id, session in proxy.sessions.items():
        if session.connected_since is None:
            continue
        connected += 1
        stalled += session.stalled
        throttled += session.throttled
        relay = session.relay
        route = relay.route if relay is not None else None
        link_snapshots = {}
        for upstream, link in session.links.items():
            state, waiting, role = link_state(link), len(link.queue), role_of(route, upstream)
            key = (upstream, role)
            links[(upstream, role, state)] = links.get((upstream, role, state), 0) + 1
            queued[key] = queued.get(key, 0) + waiting
            stalled_links[key] = stalled_links.get(key, 0) + link.stalled
            if with_stations:
                link_snapshots[upstream] = LinkSnapshot(state, link.failed_attempts, waiting, link.stalled, role)
        if with_stations:
            stations[station_id] = StationSnapshot(
                station_id,
                session.protocol.peer,
                session.subprotocol,
                session.connected_since,
                session.stalled,
                link_snapshots,
            )
    ownership = proxy.ownership
    return ProxySnapshot(
        upstreams,
        stations,
        connected,
        stalled,
        links,
        queued,
        stalled_links,
        proxy.accepting,
        proxy.handshakes_refused,
        dict(proxy.write_limits.stalls),
        dict(proxy.limits.refused),
        proxy.limits.shed,
        None if ownership is None else ownership.instance,
        None if ownership is None else ownership.redis_up,
        throttled,
        certificates=proxy.tls.certificates,
        **_outbox(getattr(proxy, "outbox", None), with_stations),
    )


def _outbox(outbox, with_stations: bool) -> dict:
    """The outbox's part of a snapshot (nothing without an outbox)."""
    if outbox is None:
        return {}
    backlogs = None
    if with_stations:
        backlogs = {}
        for station, upstream, entries, size, oldest in outbox.backlogs():
            backlogs.setdefault(station, {})[upstream] = (entries, size, oldest)
    return {
        "outbox": outbox.totals(),
        "outbox_healthy": outbox.store.healthy,
        "outbox_faults": outbox.store.fault_episodes,
        "outbox_backlogs": backlogs,
    }
