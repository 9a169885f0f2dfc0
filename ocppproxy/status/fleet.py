"""
The fleet as C{/} and C{/stations} show it: the connected stations and the ones known
to be offline (seen since start-up, or named in C{client_names}), each with a state;
counted, searched, filtered, ordered (offline, then faulted, first) and cut into pages.
In cluster mode, the fleet of every instance, from the cluster's record in Redis
(L{ocppproxy.cluster.fleet.ClusterFleetView}), when it could be read.
Pure: reads the proxy's snapshot, the activity and the names, and returns JSON-ready data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..cluster.fleet import CONNECTED as SEEN_CONNECTED
from ..cluster.fleet import LEFT as SEEN_LEFT
from ..cluster.fleet import ClusterFleetView
from ..notify.names import StationNames
from ..relay.snapshot import LINK_STATES, ROLES, ProxySnapshot
from .activity import StationActivity, StationRecord
from .snapshot import iso_time, station_entry

CONNECTED = "connected"
OFFLINE = "offline"
FAULTED = "faulted"
CHARGING = "charging"
STATES = (CONNECTED, OFFLINE, FAULTED, CHARGING)
"""The filters: C{connected} is every connected station, C{faulted} and C{charging} those of them
with a connector in that status (a station may be both), C{offline} every known station not connected."""

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class QueryError(ValueError):
    """A /stations parameter that makes no sense; the message names it and says what is allowed."""


@dataclass(frozen=True)
class StationQuery:
    """Which stations to list: C{q} found in the id or the human name (any case), C{state} one of L{STATES} or ''."""

    q: str = ""
    state: str = ""
    offset: int = 0
    limit: int = DEFAULT_LIMIT


def parse_query(args: Mapping[bytes, list[bytes]]) -> StationQuery:
    """A L{StationQuery} from a request's C{args}; raises L{QueryError} on a bad value."""

    def text(name: str) -> str:
        values = args.get(name.encode(), [b""])
        try:
            return values[0].decode("utf-8").strip()
        except UnicodeDecodeError:
            raise QueryError(f"{name}: not UTF-8") from None

    def number(name: str, default: int, low: int, high: int) -> int:
        value = text(name)
        if not value:
            return default
        if not value.isdecimal() or not low <= int(value) <= high:
            raise QueryError(f"{name}: a whole number from {low} to {high}, not {value[:40]!r}")
        return int(value)

    state = text("state")
    if state in ("", "all"):
        state = ""
    elif state not in STATES:
        raise QueryError(f"state: one of all, {', '.join(STATES)}, not {state[:40]!r}")
    return StationQuery(
        text("q")[:200], state, number("offset", 0, 0, 10**9), number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    )


def _states(record) -> tuple[bool, bool]:
    """(faulted, charging) from a record's connectors."""
    if record is None:
        return False, False
    statuses = {status.status for status in record.connectors.values()}
    return "Faulted" in statuses, "Charging" in statuses


def fleet_listing(
    proxy: ProxySnapshot,
    activity: StationActivity,
    names: StationNames,
    query: StationQuery,
    now: float,
    cluster: ClusterFleetView | None = None,
) -> dict:
    """
    The /stations document (C{proxy} is the proxy's snapshot): C{counts} of the whole
    fleet by state, each upstream's links by state (see L{upstream_counts}), C{total}
    stations matching C{query}, and the page of them it asks for.
    Every station has a C{state}: offline, faulted, charging or connected, in that
    order of precedence; offline stations come first (the last to leave first, then
    those never seen), then faulted ones, then the others, each by id.

    With C{cluster} (cluster mode, the cluster's record read), the fleet is the cluster's:
    a station another instance holds is connected (C{instance} names it), one that left
    any instance and is held by none is offline (its last C{left}, and C{instance}, the
    one it left); C{faulted} and C{charging} stay this instance's (only it hears the
    statuses of its stations), and the document's C{cluster} counts the connected
    stations by instance.
    """
    counts = dict.fromkeys(STATES, 0)
    upstreams = upstream_counts(proxy)
    needle = query.q.casefold()
    here = {"instance": proxy.instance} if cluster is not None else {}
    matching = []
    connected = set()
    for station_id, station in proxy.stations.items():
        connected.add(station_id)
        record = activity.stations.get(station_id)
        faulted, charging = _states(record)
        counts[CONNECTED] += 1
        counts[FAULTED] += faulted
        counts[CHARGING] += charging
        wanted = query.state in ("", CONNECTED) or (query.state == FAULTED and faulted)
        wanted = wanted or (query.state == CHARGING and charging)
        if wanted and _found(needle, station_id, names):
            state = FAULTED if faulted else CHARGING if charging else CONNECTED
            matching.append(((1 if faulted else 2, 0.0, station_id), station_id, state, station, record, here))
    offline = _offline(activity, names, cluster, proxy.instance)
    if cluster is not None:
        elsewhere = _connected_elsewhere(cluster, connected, proxy.instance)
        for station_id, extra in elsewhere.items():
            counts[CONNECTED] += 1
            offline.pop(station_id, None)
            if query.state in ("", CONNECTED) and _found(needle, station_id, names):
                matching.append(((2, 0.0, station_id), station_id, CONNECTED, None, None, extra))
    for station_id, (record, left, extra) in offline.items():
        if station_id in connected:
            continue
        counts[OFFLINE] += 1
        if query.state in ("", OFFLINE) and _found(needle, station_id, names):
            key = (0, -left if left is not None else float("inf"), station_id)
            matching.append((key, station_id, OFFLINE, None, record, extra))
    matching.sort(key=lambda row: row[0])
    page = matching[query.offset : query.offset + query.limit]
    stations = []
    for _, station_id, state, station, record, extra in page:
        entry = station_entry(station_id, station, record, names)
        entry["state"] = state
        if proxy.outbox_backlogs is not None:
            entry["outbox"] = {
                upstream: {"entries": entries, "bytes": size, "oldest": iso_time(oldest)}
                for upstream, (entries, size, oldest) in proxy.outbox_backlogs.get(station_id, {}).items()
            }
        entry.update(extra)
        stations.append(entry)
    document = {
        "time": iso_time(now),
        "counts": counts,
        "upstreams": upstreams,
        "total": len(matching),
        "offset": query.offset,
        "limit": query.limit,
        "stations": stations,
    }
    if cluster is not None:
        by_instance = {proxy.instance: len(connected)}
        for extra in elsewhere.values():
            by_instance[extra["instance"]] = by_instance.get(extra["instance"], 0) + 1
        document["cluster"] = {"view": "cluster", "connected": by_instance}
    return document


def upstream_counts(proxy: ProxySnapshot) -> dict[str, dict]:
    """
    Each upstream's links from this instance's connected stations: by state, all roles
    together (C{connected}, C{reconnecting}, C{given_up}), and the same by role
    (C{roles}: C{primary} for the stations it answers, C{mirror} for those it mirrors).
    """
    upstreams: dict[str, dict] = {}
    for (upstream, role, state), count in proxy.links.items():
        entry = upstreams.get(upstream)
        if entry is None:
            entry = upstreams[upstream] = dict.fromkeys(LINK_STATES, 0)
            entry["roles"] = {each: dict.fromkeys(LINK_STATES, 0) for each in ROLES}
        entry[state] += count
        entry["roles"].setdefault(role, dict.fromkeys(LINK_STATES, 0))[state] += count
    return upstreams


def _connected_elsewhere(cluster: ClusterFleetView, here: set[str], instance: str | None) -> dict[str, dict]:
    """The stations another instance holds (not connected here), with what their entries add: instance, since when."""
    elsewhere = {}
    for station_id, holder in cluster.holders.items():
        if station_id in here or holder == instance:
            continue
        seen = cluster.seen.get(station_id)
        since = seen.time if seen is not None and seen.event == SEEN_CONNECTED and seen.instance == holder else None
        elsewhere[station_id] = {"instance": holder, "connected_since": iso_time(since)}
    return elsewhere


def _offline(
    activity: StationActivity, names: StationNames, cluster: ClusterFleetView | None, instance: str | None
) -> dict[str, tuple[StationRecord | None, float | None, dict]]:
    """
    The stations known and maybe offline (the caller leaves out the connected ones): id ->
    (what this instance remembers of it, when it left, what its entry adds). Alone, they are
    the stations that left here and those named; in the cluster's view, also those any
    instance saw, each with the latest departure any instance recorded and its instance.
    """
    offline: dict[str, tuple[StationRecord | None, float | None, dict]] = {}
    for station_id, record in activity.departed.items():
        offline[station_id] = (record, record.left, {})
    for station_id in names.station_ids():
        offline.setdefault(station_id, (None, None, {}))
    if cluster is None:
        return offline
    for station_id, (record, left, _) in offline.items():
        offline[station_id] = (record, left, {"instance": instance if record else None, "left": iso_time(left)})
    for station_id, seen in cluster.seen.items():
        record, left, _ = offline.get(station_id, (None, None, {}))
        if (record is not None and seen.instance == instance) or (left is not None and seen.time <= left):
            continue  # what this instance remembers is as new, and has more
        # Newer elsewhere: what this instance remembers of the station is older than its last connection.
        if seen.event == SEEN_LEFT:
            offline[station_id] = (None, seen.time, {"instance": seen.instance, "left": iso_time(seen.time)})
        else:
            # Connected there, held by nobody now: that instance stopped without a word; when it left is unknown.
            offline[station_id] = (None, None, {"instance": seen.instance, "left": None})
    return offline


def _found(needle: str, station_id: str, names: StationNames) -> bool:
    return not needle or needle in station_id.casefold() or needle in names.name(station_id).casefold()
