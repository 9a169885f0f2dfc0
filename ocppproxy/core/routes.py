"""
Which central systems a station talks to: the C{routes} table, first match wins. Pure:
built from plain values, no I/O; a large table is built in slices (L{RouteTableBuilder})
so a reload never holds the reactor long.

An entry without C{*}, C{?} or C{[} is an exact station id; one with them is a shell-style
pattern, matched as C{fnmatch.fnmatchcase} does (case-sensitive on every OS), and also
matching itself (station ids may contain C{*}). The result of L{RouteTable.match} is
always that of trying the routes in order (L{first_match}); the index is only speed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

_PATTERN_CHARACTERS = frozenset("*?[")
# Patterns per compiled alternation: the regular expression engine tries alternatives in
# order, so one search finds the first matching pattern of a chunk.
_CHUNK = 64
# How much of a pattern's literal start (or end) keys its group: few distinct lengths
# keep a lookup to a few dict probes.
_KEY_LIMIT = 6
# A pattern with literal text only inside (*x*) is keyed by a piece of it this long at
# most: a lookup probes every piece of the station id of each length in use.
_INNER_KEY_LIMIT = 3


@dataclass(frozen=True, slots=True)
class Route:
    """
    A station's central systems: the C{primary} (whose answers reach the station), the
    C{mirrors} in order (which get copies), and the optional C{failover} mirror (whose
    answers reach the station while the primary is away).
    """

    primary: str
    mirrors: tuple[str, ...] = ()
    failover: str | None = None

    @property
    def upstreams(self) -> tuple[str, ...]:
        """The primary, then the mirrors."""
        return (self.primary, *self.mirrors)


@dataclass(frozen=True, slots=True)
class UpstreamRules:
    """
    What the core needs of one named upstream: its C{url} (for events), the actions of the
    CALLs it may send to stations (C{calls}; None: all, empty: none; others are answered
    with SecurityError) and of the station CALLs and SENDs it gets (C{receives}; None:
    all). Answers to its own CALLs always reach it.
    """

    url: str
    calls: frozenset[str] | None = None
    receives: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One entry of C{routes}: the station ids and patterns it holds, and its route."""

    stations: tuple[str, ...]
    route: Route


def is_pattern(entry: str) -> bool:
    """Whether a C{stations} entry is a pattern (it holds C{*}, C{?} or C{[}) rather than an exact id."""
    return not _PATTERN_CHARACTERS.isdisjoint(entry)


def entry_matches(entry: str, station_id: str) -> bool:
    """Whether one C{stations} entry admits C{station_id}: the specification L{RouteTable} follows."""
    if not is_pattern(entry):
        return entry == station_id
    return entry == station_id or fnmatch.fnmatchcase(station_id, entry)


def first_match(rules: Sequence[RouteRule], station_id: str) -> int | None:
    """The index of the first rule with an entry admitting C{station_id} (None: no route), tried in order."""
    for index, rule in enumerate(rules):
        if any(entry_matches(entry, station_id) for entry in rule.stations):
            return index
    return None


def _own_groups(translated: str, number: int) -> str:
    """A translated pattern whose group names (older Pythons name them) cannot clash with another's."""
    return re.sub(r"\(\?P([<=])(\w+)", lambda m: f"(?P{m.group(1)}p{number}_{m.group(2)}", translated)


def _literal_parts(entry: str) -> tuple[str, str, str]:
    """
    What every id a pattern admits starts with, ends with and holds: the text before its
    first special character and (without a C{[} class) the text after its last one and
    its longest literal run.
    """
    cut = min(entry.index(character) for character in _PATTERN_CHARACTERS if character in entry)
    if "[" in entry:
        return entry[:cut], "", ""
    last = max(entry.rindex(character) for character in "*?" if character in entry)
    inner = max(re.split(r"[*?]", entry), key=len)
    return entry[:cut], entry[last + 1 :], inner


class _PatternGroup:
    """Patterns that share what an id must start or end with, in route order, compiled in chunks."""

    __slots__ = ("chunks", "entries")

    def __init__(self) -> None:
        self.entries: list[tuple[int, str]] = []
        self.chunks: list[tuple[int, Callable[[str], re.Match | None], dict[str, int]]] = []

    def compile(self) -> int:
        """Compile the patterns added since the last call; returns how many."""
        entries, self.entries = self.entries, []
        for start in range(0, len(entries), _CHUNK):
            chunk = entries[start : start + _CHUNK]
            # Named outer groups: lastgroup names the alternative that matched.
            alternation = "|".join(
                f"(?P<r{number}>{_own_groups(fnmatch.translate(entry), number)})"
                for number, (_, entry) in enumerate(chunk)
            )
            indexes = {f"r{number}": index for number, (index, _) in enumerate(chunk)}
            self.chunks.append((chunk[0][0], re.compile(alternation).match, indexes))
        return len(entries)

    def first(self, station_id: str, found: int | None) -> int | None:
        """The lower of C{found} and the index of this group's first pattern admitting C{station_id}."""
        for first, match, indexes in self.chunks:
            if found is not None and first >= found:
                break
            matched = match(station_id)
            if matched is not None:
                index = indexes[matched.lastgroup]
                return index if found is None or index < found else found
        return found


class RouteTable:
    """
    The routes, looked up by station id in a few microseconds whatever the table's size:
    exact ids in a dict (the first rule holding each); patterns grouped by the literal
    text every id they admit starts (or ends) with, each group one compiled alternation
    per chunk, searched only while it could hold an earlier route; patterns with neither
    (C{*x*}) by a piece of the text they hold. Only patterns with no literal text at all
    outside classes (C{*}, C{*[0-9]*}) are all searched.
    """

    def __init__(
        self,
        routes: Sequence[Route],
        exact: dict[str, int],
        prefixes: dict[int, dict[str, _PatternGroup]],
        suffixes: dict[int, dict[str, _PatternGroup]],
        inner: dict[int, dict[str, _PatternGroup]],
        rest: _PatternGroup,
    ) -> None:
        self.routes = tuple(routes)
        self._exact = exact
        self._prefixes = tuple(sorted(prefixes.items()))
        self._suffixes = tuple(sorted(suffixes.items()))
        self._inner = tuple(sorted(inner.items()))
        self._rest = rest if rest.chunks else None

    def __len__(self) -> int:
        return len(self.routes)

    def index(self, station_id: str) -> int | None:
        """The index of the route C{station_id} takes, or None when no route admits it."""
        found = self._exact.get(station_id)
        for length, groups in self._prefixes:
            group = groups.get(station_id[:length])
            if group is not None:
                found = group.first(station_id, found)
        for length, groups in self._suffixes:
            group = groups.get(station_id[-length:])
            if group is not None:
                found = group.first(station_id, found)
        if self._inner:
            found = self._search_inner(station_id, found)
        if self._rest is not None:
            found = self._rest.first(station_id, found)
        return found

    def _search_inner(self, station_id: str, found: int | None) -> int | None:
        """The patterns keyed by a piece of text the id must hold (C{*x*}): each piece of the id looked up."""
        searched = set()
        for length, groups in self._inner:
            for start in range(len(station_id) - length + 1):
                group = groups.get(station_id[start : start + length])
                if group is not None and id(group) not in searched:
                    searched.add(id(group))
                    found = group.first(station_id, found)
        return found

    def match(self, station_id: str) -> Route | None:
        """The route C{station_id} takes, or None when no route admits it."""
        index = self.index(station_id)
        return None if index is None else self.routes[index]


class RouteTableBuilder:
    """
    Builds a L{RouteTable} in slices: L{add} takes some rules at a time (each call costs
    time in proportion to its slice), L{compile_some} compiles some patterns, L{build}
    the rest. The caller decides how much work happens per turn of the reactor.
    """

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._exact: dict[str, int] = {}
        self._prefixes: dict[int, dict[str, _PatternGroup]] = {}
        self._suffixes: dict[int, dict[str, _PatternGroup]] = {}
        self._inner: dict[int, dict[str, _PatternGroup]] = {}
        self._rest = _PatternGroup()
        self._uncompiled: list[_PatternGroup] = []

    def add(self, rules: Iterable[RouteRule]) -> None:
        """Append C{rules} (in route order) to the table."""
        routes, exact = self._routes, self._exact
        for rule in rules:
            index = len(routes)
            routes.append(rule.route)
            for entry in rule.stations:
                # A pattern also matches itself: it joins the exact ids too.
                exact.setdefault(entry, index)
                if is_pattern(entry):
                    self._group_for(entry).entries.append((index, entry))

    def _group_for(self, entry: str) -> _PatternGroup:
        prefix, suffix, inner = _literal_parts(entry)
        if prefix:
            key = prefix[:_KEY_LIMIT]
            groups = self._prefixes.setdefault(len(key), {})
        elif suffix:
            key = suffix[-_KEY_LIMIT:]
            groups = self._suffixes.setdefault(len(key), {})
        elif inner:
            key = inner[:_INNER_KEY_LIMIT]
            groups = self._inner.setdefault(len(key), {})
        else:
            group = self._rest
            key = groups = None
        if groups is not None:
            group = groups.get(key)
            if group is None:
                group = groups[key] = _PatternGroup()
        if not group.entries:
            self._uncompiled.append(group)
        return group

    def compile_some(self, limit: int = 4 * _CHUNK) -> bool:
        """Compile about C{limit} pending patterns (whole groups); returns True once none is left."""
        done = 0
        while self._uncompiled and done < limit:
            done += self._uncompiled.pop().compile()
        return not self._uncompiled

    def build(self) -> RouteTable:
        """The table: every pattern still pending is compiled now."""
        while not self.compile_some():
            pass
        return RouteTable(self._routes, self._exact, self._prefixes, self._suffixes, self._inner, self._rest)


def route_table(rules: Iterable[RouteRule]) -> RouteTable:
    """A L{RouteTable} built in one go (small tables, tests)."""
    builder = RouteTableBuilder()
    builder.add(rules)
    return builder.build()
