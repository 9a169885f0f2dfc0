"""
Route lookup and table build, in process: the cost of finding a station's route in a
table of 50,000 exact ids beside 500 patterns (the issue's bound: 10 us), and the time to
build that table, in total and for the longest slice when built a slice at a time as a
reload would (bound: 100 ms per slice).

    .venv/bin/python bench/route_lookup.py [--exact N] [--patterns P] [--lookups L]
"""

from __future__ import annotations

import argparse
import time

from ocppproxy.core.routes import Route, RouteRule, RouteTableBuilder

RULES_PER_SLICE = 2000
PATTERNS_PER_SLICE = 256


def make_rules(exact: int, patterns: int) -> list[RouteRule]:
    """Owners' patterns (prefixes, and a few suffixes and classes) first, then the exact ids, then the catch-all."""
    rules = []
    for n in range(patterns):
        if n % 10 == 0:
            entry = f"*-OWNER{n}"
        elif n % 10 == 1:
            entry = f"OWN{n}-[0-9]*"
        else:
            entry = f"OWN{n}-*"
        rules.append(RouteRule((entry,), Route(f"csms-{n}", ("analytics",))))
    rules += [RouteRule((f"CP_{n:06d}",), Route("csms-b", ("csms-a",))) for n in range(exact)]
    rules.append(RouteRule(("*",), Route("csms-a")))
    return rules


def build_in_slices(rules: list[RouteRule]):
    """The table, built a slice at a time; returns it, the total time and the longest slice (seconds)."""
    builder = RouteTableBuilder()
    longest = total = 0.0
    for start in range(0, len(rules), RULES_PER_SLICE):
        began = time.perf_counter()
        builder.add(rules[start : start + RULES_PER_SLICE])
        spent = time.perf_counter() - began
        longest, total = max(longest, spent), total + spent
    done = False
    while not done:
        began = time.perf_counter()
        done = builder.compile_some(PATTERNS_PER_SLICE)
        spent = time.perf_counter() - began
        longest, total = max(longest, spent), total + spent
    began = time.perf_counter()
    table = builder.build()
    total += time.perf_counter() - began
    return table, total, longest


def per_lookup(table, station_id: str, lookups: int) -> float:
    index = table.index
    began = time.perf_counter()
    for _ in range(lookups):
        index(station_id)
    return (time.perf_counter() - began) / lookups * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exact", type=int, default=50_000, help="exact station ids (default 50,000)")
    parser.add_argument("--patterns", type=int, default=500, help="patterns (default 500)")
    parser.add_argument("--lookups", type=int, default=100_000, help="lookups per station id (default 100,000)")
    options = parser.parse_args()
    rules = make_rules(options.exact, options.patterns)
    table, total, longest = build_in_slices(rules)
    print(
        f"build {len(rules):,} routes: {total * 1e3:.1f} ms in all, longest slice {longest * 1e3:.1f} ms"
        f" ({RULES_PER_SLICE} rules or {PATTERNS_PER_SLICE} patterns per slice)"
    )
    last = options.patterns - 1
    for label, station_id in (
        ("exact id after every pattern", f"CP_{options.exact - 1:06d}"),
        ("last prefix pattern", f"OWN{last - (last % 10 < 2) * 2}-X"),
        ("suffix pattern", "CP-OWNER0"),
        ("class pattern", "OWN1-7"),
        ("no pattern: the catch-all", "ZZ_unrouted"),
    ):
        best = min(per_lookup(table, station_id, options.lookups) for _ in range(3))
        print(f"lookup {label:30s} -> route {table.index(station_id):>6}  {best:5.2f} us")


if __name__ == "__main__":
    main()
