"""
Stations that behave as real ones do across a proxy restart, for ``bench/run.py``: each
connects from a loopback address of its own (as stations come from addresses of their
own), sends a BootNotification, stays connected, and whenever its connection fails or is
closed tries again 0.5 to 1.5 s later. Every loop is bounded in attempts and time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

MAX_STATIONS = 250 * 250
OPEN_TIMEOUT = 30.0
RETRY_DELAY = (0.5, 1.5)


def station_connection(url: str, source: str):
    """An OCPP 1.6 WebSocket to C{url} from the loopback address C{source}, as a retrying station opens it."""
    return connect(
        url,
        subprotocols=["ocpp1.6"],
        compression=None,
        open_timeout=OPEN_TIMEOUT,
        ping_interval=None,
        close_timeout=2,
        local_addr=(source, 0),
    )


def source_address(index: int) -> str:
    """The loopback address station C{index} connects from: 127.1.0.1, 127.1.0.2, ..."""
    if not 0 <= index < MAX_STATIONS:
        raise ValueError(f"at most {MAX_STATIONS} stations")
    return f"127.1.{index // 250}.{index % 250 + 1}"


class RetryingStation:
    """One station: connect, boot, stay; retry after a failure or a close. See the module docstring."""

    def __init__(self, url: str, index: int, rng: random.Random) -> None:
        self.station_id = f"RESTART-{index:05d}"
        self.url = url + self.station_id
        self.source = source_address(index)
        self._rng = rng
        self.answered_at: float | None = None
        """monotonic time of the last BootNotification answer."""
        self.refused_at_tcp: list[float] = []
        """monotonic times of attempts that found no one listening."""
        self.failed: list[float] = []
        """monotonic times of attempts closed, refused or timed out by the proxy."""
        self.failure_kinds: Counter[str] = Counter()
        """Those failures by exception class."""

    async def run(self, stop: asyncio.Event, deadline: float, max_attempts: int) -> None:
        """Keep the station connected until C{stop} is set, C{deadline} passes or C{max_attempts} were made."""
        for attempt in range(max_attempts):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                await self._connect_once(stop, attempt)
            except ConnectionRefusedError:
                self.refused_at_tcp.append(time.monotonic())
            except (OSError, TimeoutError, WebSocketException) as error:
                self.failed.append(time.monotonic())
                self.failure_kinds[type(error).__name__] += 1
            try:
                await asyncio.wait_for(stop.wait(), self._rng.uniform(*RETRY_DELAY))
            except TimeoutError:
                pass

    async def _connect_once(self, stop: asyncio.Event, attempt: int) -> None:
        async with station_connection(self.url, self.source) as ws:
            message_id = f"boot-{attempt}"
            await ws.send(f'[2,"{message_id}","BootNotification",{{"chargePointVendor":"V","chargePointModel":"M"}}]')
            answer = await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT)
            if message_id in answer:
                self.answered_at = time.monotonic()
            stopping = asyncio.ensure_future(stop.wait())
            closing = asyncio.ensure_future(ws.wait_closed())
            await asyncio.wait([stopping, closing], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            closing.cancel()
            if stop.is_set():
                ws.transport.abort()


class Fleet:
    """C{count} L{RetryingStation}s run as tasks until L{stop}."""

    def __init__(self, url: str, count: int, seed: int = 13) -> None:
        rng = random.Random(seed)
        self.stations = [RetryingStation(url, index, rng) for index in range(count)]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self, deadline: float, max_attempts: int) -> None:
        self._tasks = [
            asyncio.ensure_future(station.run(self._stop, deadline, max_attempts)) for station in self.stations
        ]

    def answered_since(self, moment: float) -> int:
        """How many stations had a BootNotification answered after C{moment} (monotonic)."""
        return sum(1 for station in self.stations if station.answered_at is not None and station.answered_at > moment)

    def last_answer(self) -> float:
        return max(station.answered_at or 0.0 for station in self.stations)

    def failures_since(self, moment: float) -> tuple[int, int]:
        """Attempts after C{moment}: (no one listening, closed or refused by the proxy)."""
        refused = sum(1 for station in self.stations for when in station.refused_at_tcp if when > moment)
        failed = sum(1 for station in self.stations for when in station.failed if when > moment)
        return refused, failed

    def failure_kinds(self) -> dict[str, int]:
        """Every station's failures by exception class, most frequent first."""
        total: Counter[str] = Counter()
        for station in self.stations:
            total.update(station.failure_kinds)
        return dict(total.most_common())

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop every station (connections aborted), waiting at most C{timeout} seconds."""
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
