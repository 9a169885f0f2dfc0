"""
ocppproxy beside the Node tool it replaces, for ``bench/run.py``: the closed loops'
ratios round by round (CPU per relayed call, p50, p99), the open loop at one fixed
offered rate through each, and RSS per idle station. Issue 27's targets: CPU per call
<= 0.8 x the Node tool's, p99 at the same offered rate <= 1.0 x, RSS per idle station
<= 0.8 x.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import asdict

from measures import node_cpu_verdict, paired_ratios, ratio
from open_loop import OpenLoopResult, connect_stations, open_loop

NODE = "Node tool"
PROXY = "ocppproxy"
P99_TARGET = 1.0
RSS_TARGET = 0.8


def closed_loop_comparison(rounds: dict[str, list]) -> dict | None:
    """CPU per call, p50 and p99 of ocppproxy over the Node tool, round by round, with medians; None without both."""
    tops, bottoms = rounds.get(PROXY, []), rounds.get(NODE, [])
    cpu = paired_ratios([r.cpu_us_per_call for r in tops], [r.cpu_us_per_call for r in bottoms])
    if not cpu:
        return None
    comparison = {"cpu_per_call": node_cpu_verdict(cpu)}
    for name in ("p50_ms", "p99_ms"):
        ratios = paired_ratios([getattr(r, name) for r in tops], [getattr(r, name) for r in bottoms])
        if ratios:
            comparison[name] = {"rounds": ratios, "median": round(statistics.median(ratios), 3)}
    return comparison


def print_closed_loop_comparison(comparison: dict) -> None:
    """The closed loops' ratios against the Node tool, one line each."""
    cpu = comparison["cpu_per_call"]
    rounds = " ".join(f"{value:.3f}" for value in cpu["rounds"])
    print(
        f"CPU per call ocppproxy/{NODE}, by round: {rounds}; median {cpu['median']:.3f} "
        f"(target <= 0.8: {'met' if cpu['median_target_met'] else 'MISSED'}; "
        f"<= 0.9: {'met' if cpu['run_median_bound_met'] else 'MISSED'}), "
        f"{cpu['rounds_above_0.95']} round(s) above 0.95 "
        f"(at most one in five: {'met' if cpu['rounds_above_0.95_target_met'] else 'MISSED'})"
    )
    for name in ("p50_ms", "p99_ms"):
        if name in comparison:
            rounds = " ".join(f"{value:.3f}" for value in comparison[name]["rounds"])
            median = comparison[name]["median"]
            print(f"{name[:3]} closed loop ocppproxy/{NODE}, by round: {rounds}; median {median:.3f}")


async def open_loop_rounds(args, targets: dict[str, tuple[str, list]], cpu_seconds) -> dict:
    """
    C{args.rate} Heartbeats a second over C{args.open_stations} stations for
    C{args.seconds}, through each of C{targets} (name: (url, processes)) in turn, for
    C{args.rounds} interleaved rounds; C{cpu_seconds(processes)} is their CPU so far.
    The rounds by name, each row's medians, and ocppproxy's p50/p99 over the Node tool's.
    """
    rounds: dict[str, list[OpenLoopResult]] = {}
    for number in range(args.rounds):
        for name, (url, processes) in targets.items():
            connections = await connect_stations(url, args.open_stations, f"OPEN{number}")
            before = cpu_seconds(processes)
            result = await open_loop(name, connections, args.rate, args.seconds, f"o{number}")
            result.cpu_us_per_call = ratio(1e6 * (cpu_seconds(processes) - before), max(1, result.answered))
            for ws in connections:
                ws.transport.abort()
            rounds.setdefault(name, []).append(result)
        print(f"  open loop round {number + 1} of {args.rounds} done", file=sys.stderr)
    medians = {
        name: {
            key: round(statistics.median(getattr(r, key) for r in results), 3)
            for key in ("p50_ms", "p99_ms", "generator_lag_ms")
        }
        | {"sent": sum(r.sent for r in results), "answered": sum(r.answered for r in results)}
        for name, results in rounds.items()
    }
    ratios = {}
    if PROXY in rounds and NODE in rounds:
        for key in ("p50_ms", "p99_ms"):
            by_round = paired_ratios([getattr(r, key) for r in rounds[PROXY]], [getattr(r, key) for r in rounds[NODE]])
            ratios[key] = {"rounds": by_round, "median": round(statistics.median(by_round), 3)} if by_round else None
    return {
        "offered_per_second": args.rate,
        "stations": args.open_stations,
        "rounds": {name: [asdict(r) for r in results] for name, results in rounds.items()},
        "medians": medians,
        "ratios": ratios,
    }


def print_open_loop(result: dict) -> None:
    """Each row's p50/p99 at the offered rate, and the ratios against the Node tool with the p99 target."""
    print(
        f"\nopen loop: {result['offered_per_second']:.0f} Heartbeats/s offered over {result['stations']} stations "
        "(the same to each; medians over rounds)"
    )
    for name, row in result["medians"].items():
        print(
            f"  {name:24} p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  "
            f"{row['answered']}/{row['sent']} answered  generator lag {row['generator_lag_ms']:.1f} ms"
        )
    for key, value in result["ratios"].items():
        if value:
            rounds = " ".join(f"{v:.3f}" for v in value["rounds"])
            verdict = "met" if value["median"] <= P99_TARGET else "MISSED"
            target = f" (target <= {P99_TARGET}: {verdict})" if key == "p99_ms" else ""
            print(f"  {key[:3]} ocppproxy/{NODE}, by round: {rounds}; median {value['median']:.3f}{target}")


def rss_comparison(proxy_kib: float | None, node_kib: float | None) -> dict | None:
    """RSS per idle station of ocppproxy over the Node tool's, against the target; None without both."""
    value = ratio(proxy_kib, node_kib)
    if value is None:
        return None
    return {"ocppproxy_kib": proxy_kib, "node_kib": node_kib, "ratio": value, "target_met": value <= RSS_TARGET}


def print_rss_comparison(comparison: dict) -> None:
    """One line: KiB per idle station each, their ratio and the target."""
    print(
        f"RSS per idle station ocppproxy/{NODE}: {comparison['ocppproxy_kib']} / {comparison['node_kib']} KiB = "
        f"{comparison['ratio']:.3f} (target <= {RSS_TARGET}: {'met' if comparison['target_met'] else 'MISSED'})"
    )
