"""
The routing in force: the route table (which upstreams each station talks to), the
named upstreams with their settings and the rules the core applies per upstream, and the
pace of a live migration. Built from a L{Config} in one go, in the reload's thread for a
reload (a table of 50,000 routes takes a fraction of a second), and swapped in whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..config.model import Config, RouteEntry, Upstream
from ..core.routes import Route, RouteRule, RouteTable, RouteTableBuilder, UpstreamRules


@dataclass(frozen=True, eq=False)
class Routing:
    """
    One configuration's routing: C{table} finds a station's L{Route}; C{upstreams} are the
    named upstreams' settings (URL, credentials, TLS, station id), C{rules} what the core
    needs of each; C{migration_rate} how many connected stations a change reaches per second.
    """

    table: RouteTable
    upstreams: Mapping[str, Upstream]
    rules: Mapping[str, UpstreamRules]
    migration_rate: float

    def route(self, station_id: str) -> Route | None:
        """The route C{station_id} takes, or None when no route admits it."""
        return self.table.match(station_id)


def _rules_of(entries: tuple[RouteEntry, ...]) -> Iterator[RouteRule]:
    for entry in entries:
        yield RouteRule(entry.stations, Route(entry.primary, entry.mirrors, entry.failover))


def routing_for(config: Config) -> Routing:
    """The routing of C{config} (the legacy keys: upstreams primary and secondary, the one route C{*})."""
    builder = RouteTableBuilder()
    builder.add(_rules_of(config.route_entries))
    upstreams = config.named_upstreams
    rules = {
        name: UpstreamRules(upstream.url, upstream.calls, upstream.receives) for name, upstream in upstreams.items()
    }
    return Routing(builder.build(), upstreams, rules, config.migration_rate)
