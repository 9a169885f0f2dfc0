"""
The fleet as C{/} and C{/stations} show it: the connected stations and the ones known
to be offline (seen since start-up, or named in C{client_names}), each with a state;
counted, searched, filtered, ordered (offline, then faulted, first) and cut into pages.
Pure: reads the proxy's snapshot, the activity and the names, and returns JSON-ready data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..notify.names import StationNames
from ..relay.snapshot import LINK_STATES, ProxySnapshot
from .activity import StationActivity
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
    proxy: ProxySnapshot, activity: StationActivity, names: StationNames, query: StationQuery, now: float
) -> dict:
    """
    The /stations document (C{proxy} is the proxy's snapshot): C{counts} of the whole fleet by state, each upstream's links
    by state, C{total} stations matching C{query}, and the page of them it asks for.
    Every station has a C{state}: offline, faulted, charging or connected, in that
    order of precedence; offline stations come first (the last to leave first, then
    those never seen), then faulted ones, then the others, each by id.
    """
    counts = dict.fromkeys(STATES, 0)
    upstreams: dict[str, dict[str, int]] = {}
    for (upstream, state), count in proxy.links.items():
        upstreams.setdefault(upstream, dict.fromkeys(LINK_STATES, 0))[state] = count
    needle = query.q.casefold()
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
            matching.append(((1 if faulted else 2, 0.0, station_id), station_id, state, station, record))
    offline = {station_id: activity.departed.get(station_id) for station_id in activity.departed}
    offline.update((station_id, None) for station_id in names.station_ids() if station_id not in offline)
    for station_id, record in offline.items():
        if station_id in connected:
            continue
        counts[OFFLINE] += 1
        if query.state in ("", OFFLINE) and _found(needle, station_id, names):
            left = record.left if record else None
            key = (0, -left if left is not None else float("inf"), station_id)
            matching.append((key, station_id, OFFLINE, None, record))
    matching.sort(key=lambda row: row[0])
    page = matching[query.offset : query.offset + query.limit]
    stations = []
    for _, station_id, state, station, record in page:
        entry = station_entry(station_id, station, record, names)
        entry["state"] = state
        stations.append(entry)
    return {
        "time": iso_time(now),
        "counts": counts,
        "upstreams": upstreams,
        "total": len(matching),
        "offset": query.offset,
        "limit": query.limit,
        "stations": stations,
    }


def _found(needle: str, station_id: str, names: StationNames) -> bool:
    return not needle or needle in station_id.casefold() or needle in names.name(station_id).casefold()
