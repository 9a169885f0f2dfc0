"""
An open loop for ``bench/run.py``: a fixed number of Heartbeats a second spread over
connected stations, each sent when due whether or not earlier ones were answered, so
every proxy gets the same offered load (a closed loop's load follows each proxy's
latency). Latency is from the send to the answer with the same message id.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from fleet import source_address
from measures import lateness, latency_summary, open_loop_schedule
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

DRAIN_SECONDS = 10.0
# Between the stations' handshakes and their first call: time for every proxy to open both
# upstream links (the Node tool sends a station's frame only to the links already open, and
# one sent before the primary's is never answered).
SETTLE_SECONDS = 1.0


@dataclass
class OpenLoopResult:
    """What an open loop measured at one offered rate."""

    name: str
    stations: int
    offered_per_second: float
    seconds: float
    sent: int
    answered: int
    p50_ms: float
    p99_ms: float
    generator_lag_ms: float
    """How far behind schedule the bench itself sent its latest call: large, and the rate was not offered."""
    cpu_us_per_call: float | None = None


async def connect_stations(url: str, stations: int, prefix: str, first_source: int = 0) -> list:
    """
    C{stations} OCPP 1.6 connections to C{url}, station i from loopback address
    C{first_source} + i, returned L{SETTLE_SECONDS} after the last handshake.
    """
    connections = list(
        await asyncio.gather(
            *(
                connect(
                    url + f"{prefix}-{index:05d}",
                    subprotocols=["ocpp1.6"],
                    compression=None,
                    open_timeout=60,
                    ping_interval=None,
                    local_addr=(source_address(first_source + index), 0),
                )
                for index in range(stations)
            )
        )
    )
    await asyncio.sleep(SETTLE_SECONDS)
    return connections


async def open_loop(name: str, connections: list, rate: float, seconds: float, prefix: str) -> OpenLoopResult:
    """C{rate} Heartbeats a second for C{seconds} over C{connections}, turn by turn; answers awaited after."""
    schedule = open_loop_schedule(rate, seconds, len(connections))
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    due: list[float] = []
    actual: list[float] = []
    outstanding = asyncio.Event()

    async def read(ws) -> None:
        try:
            await read_answers(ws)
        except ConnectionClosed:
            pass

    async def read_answers(ws) -> None:
        async for message in ws:
            message_id = message.split('"', 2)[1]
            started = sent_at.pop(message_id, None)
            if started is not None:
                latencies.append(time.perf_counter() - started)
                if not sent_at and len(actual) == len(schedule):
                    outstanding.set()

    async def send(sender: int, ws, offsets: list[float], start: float) -> None:
        for number, offset in enumerate(offsets):
            delay = start + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            message_id = f"{prefix}-{sender}-{number}"
            due.append(offset)
            actual.append(time.perf_counter() - start)
            sent_at[message_id] = time.perf_counter()
            try:
                await ws.send(f'[2,"{message_id}","Heartbeat",{{}}]')
            except ConnectionClosed:
                return  # this call counts as sent and not answered; the station sends no more

    by_sender: dict[int, list[float]] = {}
    for offset, sender in schedule:
        by_sender.setdefault(sender, []).append(offset)
    readers = [asyncio.ensure_future(read(ws)) for ws in connections]
    start = time.perf_counter() + 0.1
    try:
        await asyncio.gather(
            *(send(sender, connections[sender], offsets, start) for sender, offsets in by_sender.items())
        )
        try:
            await asyncio.wait_for(outstanding.wait(), DRAIN_SECONDS)
        except TimeoutError:
            pass
    finally:
        for reader in readers:
            reader.cancel()
    summary = latency_summary(latencies)
    return OpenLoopResult(
        name=name,
        stations=len(connections),
        offered_per_second=rate,
        seconds=seconds,
        sent=len(actual),
        answered=len(latencies),
        p50_ms=summary["p50_ms"],
        p99_ms=summary["p99_ms"],
        generator_lag_ms=round(1000 * lateness(due, actual), 3),
    )
