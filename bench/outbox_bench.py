"""
The durable outbox's rows of ``bench/run.py`` (issue 25), the whole daemon measured.

Phase ``outbox``: three closed-loop rows beside plain ocppproxy in the interleaved rounds
(features.py's switches ``outbox``, ``mirror-down``, ``outbox-mirror-down``): CPU per
relayed CALL of the proxy process (its writer thread included) with the outbox on and
the mirror connected over plain ocppproxy (target at most 1.15 times), and with the
mirror down, the outbox on over the outbox off (at most 1.3 times), round by round and
their medians. A closed loop runs each row as fast as it goes, and on a small machine a
proxy that costs more per call also gets fewer calls per wake-up, which costs more per
call again; so the same four rows then also get the same offered load (``--rate``
Heartbeats a second over ``--open-stations``, interleaved rounds, as the phase
open-loop), and their ratios at equal load are printed beside.

Phase ``outbox-drain``: a backlog of ``--drain-backlog`` frames (default 100,000)
built with the mirror down (``--drain-stations`` stations sending MeterValues, each with
up to 64 unanswered), then the mirror started: the frames a second it receives until the
outbox is empty, and meanwhile the latency of live Heartbeats from other stations (each
of ``--drain-live`` stations one every 50 ms, p50 and p99). Bounded: the backlog must be
built within 300 s and drained within 300 s, or the phase says how far it got.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.request

from fleet import source_address
from measures import latency_summary, paired_ratios, ratio_verdict
from websockets.asyncio.client import connect

OUTBOX_FEATURES = "outbox,mirror-down,outbox-mirror-down"
# (numerator row, denominator row, the issue's target for the median of the rounds' ratios)
OUTBOX_RATIOS = (
    ("ocppproxy +outbox", "ocppproxy", 1.15),
    ("ocppproxy +outbox-mirror-down", "ocppproxy +mirror-down", 1.3),
)
BUILD_TIMEOUT = 300.0
DRAIN_TIMEOUT = 300.0
LIVE_PERIOD = 0.05
WINDOW = 64
METER_VALUES = (
    '[2,"{id}","MeterValues",{{"connectorId":1,"meterValue":[{{"timestamp":"2026-12-07T08:00:00Z",'
    '"sampledValue":[{{"value":"{value}","measurand":"Energy.Active.Import.Register","unit":"Wh"}}]}}]}}]'
)


def outbox_verdicts(cpu_by_row: dict[str, list[float | None]]) -> dict[str, dict]:
    """The outbox's ratios by round (CPU per call of each row, in round order), their medians and targets."""
    verdicts = {}
    for top, bottom, target in OUTBOX_RATIOS:
        ratios = paired_ratios(cpu_by_row.get(top, []), cpu_by_row.get(bottom, []))
        if ratios:
            verdicts[f"{top}/{bottom}"] = {**ratio_verdict(ratios, target, float("inf")), "target": target}
    return verdicts


def outbox_targets(targets: dict) -> list:
    """The phase's four rows among run.py's loop targets (by phase name), plain ocppproxy first."""
    names = ("proxy", *(f"feature-{name}" for name in OUTBOX_FEATURES.split(",")))
    return [targets[name] for name in names if name in targets]


def open_cpu_by_row(result: dict) -> dict[str, list[float | None]]:
    """CPU per call of each row of an open loop's rounds (versus_node.open_loop_rounds's result)."""
    return {name: [row["cpu_us_per_call"] for row in rows] for name, rows in result["rounds"].items()}


def round_line(cpu_by_row: dict[str, list[float | None]], number: int) -> str:
    """This round's outbox ratios, for the round's progress line ('' when the phase did not run)."""
    parts = []
    for top, bottom, _ in OUTBOX_RATIOS:
        ratios = paired_ratios(cpu_by_row.get(top, []), cpu_by_row.get(bottom, []))
        if len(ratios) == number:
            below = bottom.removeprefix("ocppproxy").strip() or "plain"
            parts.append(f"{top.removeprefix('ocppproxy ')}/{below} {ratios[-1]:.3f}")
    return ", ".join(parts)


def print_outbox(verdicts: dict[str, dict], drain: dict | None, equal_load: dict[str, dict], rate: float) -> None:
    """Each ratio by round with its median against the target (closed loop, then equal load); the drain."""
    for label, rows in (("closed loop", verdicts), (f"equal load, {rate:.0f}/s", equal_load)):
        for name, verdict in rows.items():
            rounds = " ".join(f"{value:.3f}" for value in verdict["rounds"])
            print(
                f"CPU per call {name} ({label}), by round: {rounds}; median {verdict['median']:.3f} "
                f"(target <= {verdict['target']}: {'met' if verdict['median_target_met'] else 'MISSED'})"
            )
    if drain:
        if "skipped" in drain:
            print(f"outbox drain: {drain['skipped']}")
            return
        print(
            f"outbox drain: {drain['backlog']} frames built up in {drain['build_seconds']} s "
            f"({drain['stations']} stations, mirror down); mirror started: first frame after "
            f"{drain['first_frame_seconds']} s, {drain['drained']} frames drained in {drain['drain_seconds']} s: "
            f"{drain['frames_per_second']} frames/s (the proxy busy {drain['proxy_cpu_share']:.0%} of the time, "
            f"{drain['proxy_cpu_us_per_frame']} us CPU per frame); live Heartbeats meanwhile ({drain['live']['sent']} from "
            f"{drain['live_stations']} stations): p50 {drain['live']['p50_ms']} ms, p99 {drain['live']['p99_ms']} ms"
            f"{'' if drain['complete'] else ' (NOT COMPLETE: ' + drain['note'] + ')'}"
        )


def drain_config(workdir: str, port: int, status_port: int, primary_port: int, mirror_port: int) -> str:
    """The drain phase's proxy: outbox on, the mirror's link retried every second at most, limits far off."""
    directory = os.path.join(workdir, "outbox-drain")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(workdir, "ocppproxy-outbox-drain.yaml")
    with open(path, "w") as stream:
        stream.write(
            f'listen: "tcp:port={port}:interface=127.0.0.1:backlog=1024"\n'
            f'primary_url: "ws://127.0.0.1:{primary_port}/"\n'
            f'secondary_url: "ws://127.0.0.1:{mirror_port}/"\n'
            f'status: {{listen: "tcp:port={status_port}:interface=127.0.0.1"}}\n'
            f'outbox: {{directory: "{directory}"}}\n'
            "log_level: warn\n"
            "reconnect: {initial_delay: 0.5, factor: 1.5, max_delay: 1.0, max_attempts: 100000}\n"
            "limits: {max_handshakes: 100000, max_handshakes_per_address: 100000,"
            " max_frames_per_second: 1000000, frame_burst: 1000000}\n"
        )
    return path


def outbox_entries(status_port: int) -> int:
    """Entries in the outbox, all upstreams, from the proxy's /metrics (blocking: run it in a thread)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/metrics", timeout=30) as response:
        text = response.read().decode()
    lines = (line for line in text.splitlines() if line.startswith("ocppproxy_outbox_entries{"))
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in lines))


async def _stations(url: str, prefix: str, count: int, first_source: int) -> list:
    return list(
        await asyncio.gather(
            *(
                connect(
                    f"{url}{prefix}-{index:04d}",
                    subprotocols=["ocpp1.6"],
                    compression=None,
                    open_timeout=60,
                    ping_interval=None,
                    max_queue=None,
                    local_addr=(source_address(first_source + index), 0),
                )
                for index in range(count)
            )
        )
    )


async def _fill(ws, station: int, frames: int) -> int:
    """C{frames} MeterValues from one station, at most L{WINDOW} unanswered; how many were answered."""
    window = asyncio.Semaphore(WINDOW)
    answered = 0

    async def read() -> None:
        nonlocal answered
        async for _ in ws:
            answered += 1
            window.release()
            if answered == frames:
                return

    reader = asyncio.ensure_future(read())
    for number in range(frames):
        await window.acquire()
        await ws.send(METER_VALUES.format(id=f"{station}-{number}", value=number))
    await asyncio.wait_for(reader, BUILD_TIMEOUT)
    return answered


async def _live(ws, station: int, stop: asyncio.Event, latencies: list[float]) -> int:
    """A Heartbeat every L{LIVE_PERIOD} s until C{stop}; the latencies recorded; how many were sent."""
    sent = 0
    next_at = time.perf_counter()
    while not stop.is_set():
        sent += 1
        started = time.perf_counter()
        await ws.send(f'[2,"live-{station}-{sent}","Heartbeat",{{}}]')
        await asyncio.wait_for(ws.recv(), 30)
        latencies.append(time.perf_counter() - started)
        next_at += LIVE_PERIOD
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return sent


async def drain_phase(
    args, workdir: str, free_port, make_proxy, make_central, primary_port: int, cpu_seconds
) -> dict:
    """
    Run phase ``outbox-drain`` (see the module's doc); C{make_proxy(name, config)} and
    C{make_central(name, port)} give run.py's processes, not yet started;
    C{cpu_seconds(processes)} is their CPU so far.
    """
    port, status_port, mirror_port = free_port(), free_port(), free_port()
    proxy = make_proxy("ocppproxy-outbox-drain", drain_config(workdir, port, status_port, primary_port, mirror_port))
    mirror = make_central("mirror-drain", mirror_port)
    url = f"ws://127.0.0.1:{port}/"
    connections: list = []
    result: dict = {"backlog": args.drain_backlog, "stations": args.drain_stations, "live_stations": args.drain_live}
    try:
        await proxy.start()
        fillers = await _stations(url, "FILL", args.drain_stations, 0)
        connections += fillers
        per_station = -(-args.drain_backlog // len(fillers))
        started = time.monotonic()
        await asyncio.gather(*(_fill(ws, index, per_station) for index, ws in enumerate(fillers)))
        backlog = per_station * len(fillers)
        while await asyncio.to_thread(outbox_entries, status_port) < backlog:
            if time.monotonic() - started > BUILD_TIMEOUT:
                return {**result, "skipped": "the backlog was not built in time"}
            await asyncio.sleep(0.2)
        result.update(backlog=backlog, build_seconds=round(time.monotonic() - started, 1))
        print(f"  outbox drain: {backlog} frames waiting", file=sys.stderr)
        live = await _stations(url, "LIVE", args.drain_live, args.drain_stations)
        connections += live
        stop = asyncio.Event()
        latencies: list[float] = []
        live_tasks = [asyncio.ensure_future(_live(ws, index, stop, latencies)) for index, ws in enumerate(live)]
        await asyncio.sleep(1.0)  # the live stations' mirror links give up their first attempts
        waiting = await asyncio.to_thread(outbox_entries, status_port)  # with the live stations' first Heartbeats
        cpu_before = cpu_seconds([proxy])
        await mirror.start()
        mirror_started = time.monotonic()
        first = done = None
        left = waiting
        while time.monotonic() - mirror_started < DRAIN_TIMEOUT:
            left = await asyncio.to_thread(outbox_entries, status_port)
            now = time.monotonic()
            if first is None and left < waiting:
                first = now
            if left == 0:
                done = now
                break
            await asyncio.sleep(0.1)
        cpu = cpu_seconds([proxy]) - cpu_before
        stop.set()
        sent = sum(await asyncio.gather(*live_tasks))
        summary = latency_summary(latencies)
        first = first or time.monotonic()
        end = done or time.monotonic()
        result.update(
            first_frame_seconds=round(first - mirror_started, 2),
            drain_seconds=round(end - first, 2),
            drained=waiting - left,
            proxy_cpu_share=round(cpu / max(time.monotonic() - mirror_started, 1e-6), 2),
            proxy_cpu_us_per_frame=round(1e6 * cpu / max(waiting - left, 1), 1),
            frames_per_second=round((waiting - left) / max(end - first, 1e-6)),
            live={"sent": sent, **summary},
            complete=done is not None,
            note="" if done is not None else f"{left} entries left after {DRAIN_TIMEOUT:.0f} s",
        )
        return result
    finally:
        for ws in connections:
            ws.transport.abort()
        proxy.stop()
        mirror.stop()
