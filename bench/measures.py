"""
The benchmark's arithmetic, pure (no sockets, no clock): percentiles of latencies,
ratios of one row over another round by round, and the send times of an open loop.
Unit-tested in ``tests/unit/test_bench_measures.py``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """
    The nearest-rank C{fraction} percentile (0 < fraction <= 1) of C{values}, sorted or
    not: the smallest value with at least that share of C{values} at or below it. NaN for
    no values.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of latencies given in seconds, in milliseconds rounded to the microsecond."""
    return {
        "p50_ms": round(1000 * percentile(seconds, 0.5), 3),
        "p99_ms": round(1000 * percentile(seconds, 0.99), 3),
    }


def ratio(top: float | None, bottom: float | None) -> float | None:
    """C{top} / C{bottom} rounded to 3 places; None when either is missing or C{bottom} is 0 or NaN."""
    if top is None or bottom is None or not bottom or math.isnan(bottom) or math.isnan(top):
        return None
    return round(top / bottom, 3)


def paired_ratios(tops: Sequence[float | None], bottoms: Sequence[float | None]) -> list[float]:
    """Round by round C{tops[i] / bottoms[i]}, rounds where either is missing left out."""
    return [value for top, bottom in zip(tops, bottoms) if (value := ratio(top, bottom)) is not None]


def ratio_verdict(ratios: Sequence[float], median_target: float, round_target: float) -> dict:
    """Ratios by round, their median and highest, and whether the median and every round are within target."""
    median = round(statistics.median(ratios), 3)
    return {
        "rounds": list(ratios),
        "median": median,
        "highest": max(ratios),
        "median_target_met": median <= median_target,
        "every_round_target_met": max(ratios) <= round_target,
    }


def open_loop_schedule(rate: float, seconds: float, senders: int) -> list[tuple[float, int]]:
    """
    When each call of an open loop is due and which sender sends it: C{rate} calls a
    second for C{seconds}, evenly spaced, the senders taking turns (call i by sender
    i mod C{senders}). Offsets in seconds from the start; the load does not depend on
    how fast answers come, which is what makes the loop open.
    """
    if rate <= 0 or seconds <= 0 or senders <= 0:
        raise ValueError("rate, seconds and senders must be positive")
    count = int(rate * seconds)
    return [(index / rate, index % senders) for index in range(count)]


def lateness(due: Sequence[float], sent: Sequence[float]) -> float:
    """How far behind schedule the latest send went (seconds, 0 if never): the generator's own lag."""
    return max((actual - planned for planned, actual in zip(due, sent)), default=0.0)


def node_cpu_verdict(ratios: Sequence[float]) -> dict:
    """
    CPU per call of ocppproxy over the Node tool by round, against issue 27's targets for
    one run: median <= 0.8, the run's median <= 0.9 in any case, and at most one round in
    five above 0.95 (none in fewer than five rounds). Across runs the lead takes the
    median of the runs' medians.
    """
    median = round(statistics.median(ratios), 3)
    above = sum(1 for value in ratios if value > 0.95)
    return {
        "rounds": list(ratios),
        "median": median,
        "highest": max(ratios),
        "median_target_met": median <= 0.8,
        "run_median_bound_met": median <= 0.9,
        "rounds_above_0.95": above,
        "rounds_above_0.95_target_met": above <= len(ratios) // 5,
    }
