"""
The cluster row of ``bench/run.py``: C stations (3,000 by default) through HAProxy over
three ocppproxy instances in cluster mode sharing one redis-server; one instance is
killed (SIGKILL). Measured: the time from the kill until every station it held is
connected again and has its BootNotification answered, and, for the stations of the
other instances, the Heartbeats sent and answered meanwhile (none may be lost) and how
many of them had to reconnect (none should).

Every station connects from a loopback address of its own, boots, sends a Heartbeat
every 5 to 15 s and, whenever its connection fails or closes, tries again 0.5 to 1.5 s
later, as real ones do. Needs ``redis-server`` and ``haproxy``; without them the phase
says so and is skipped. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

from fleet import OPEN_TIMEOUT, RETRY_DELAY, source_address, station_connection
from websockets.exceptions import WebSocketException

HERE = os.path.dirname(os.path.abspath(__file__))
HAPROXY_EXAMPLE = os.path.join(os.path.dirname(HERE), "etc", "haproxy.cfg")
INSTANCES = ("proxy-a", "proxy-b", "proxy-c")
HEARTBEAT_EVERY = (5.0, 15.0)
START_TIMEOUT = 20.0


class HeartbeatingStation:
    """One station: connect, boot, a Heartbeat every 5 to 15 s; retry after a failure or a close."""

    def __init__(self, url: str, index: int, rng: random.Random) -> None:
        self.station_id = f"CLUSTER-{index:05d}"
        self.url = url + self.station_id
        self.source = source_address(index)
        self._rng = rng
        self.connections = 0
        self.booted_at: float | None = None
        """monotonic time of the last BootNotification answer."""
        self.sent: list[float] = []
        """monotonic times of the Heartbeats sent."""
        self.answered = 0

    async def run(self, stop: asyncio.Event, deadline: float, max_attempts: int) -> None:
        for attempt in range(max_attempts):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                await self._connect_once(stop, attempt)
            except (OSError, TimeoutError, WebSocketException):
                pass
            try:
                await asyncio.wait_for(stop.wait(), self._rng.uniform(*RETRY_DELAY))
            except TimeoutError:
                pass

    async def _call(self, ws, message_id: str, action: str, body: str) -> bool:
        await ws.send(f'[2,"{message_id}","{action}",{body}]')
        answer = await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT)
        return message_id in answer

    async def _connect_once(self, stop: asyncio.Event, attempt: int) -> None:
        async with station_connection(self.url, self.source) as ws:
            self.connections += 1
            if await self._call(
                ws, f"boot-{attempt}", "BootNotification", '{"chargePointVendor":"V","chargePointModel":"M"}'
            ):
                self.booted_at = time.monotonic()
            beat = 0
            stopping = asyncio.ensure_future(stop.wait())
            closing = asyncio.ensure_future(ws.wait_closed())
            try:
                while True:
                    # A closed connection is noticed at once, as a real station notices it.
                    await asyncio.wait(
                        [stopping, closing],
                        timeout=self._rng.uniform(*HEARTBEAT_EVERY),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if stop.is_set():
                        ws.transport.abort()
                        return
                    if closing.done():
                        return
                    beat += 1
                    self.sent.append(time.monotonic())
                    if await self._call(ws, f"beat-{attempt}-{beat}", "Heartbeat", "{}"):
                        self.answered += 1
            finally:
                stopping.cancel()
                closing.cancel()


async def _until(check, timeout: float, interval: float = 0.2) -> float | None:
    """Seconds until C{check()} (a coroutine function) is true; None after C{timeout}."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    return None


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


def _redis_cli(cli: str, port: int, *args: str) -> list[str]:
    done = subprocess.run(
        [cli, "-p", str(port), "--raw", *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout.split("\n")[: -1 or None]


def _holders(cli: str, port: int, station_ids: list[str]) -> dict[str, str]:
    """Which instance holds each station's claim ("<order> <instance> <serial>"), or ''."""
    holders = {}
    for start in range(0, len(station_ids), 500):
        chunk = station_ids[start : start + 500]
        values = _redis_cli(cli, port, "MGET", *(f"ocppproxy:station:{sid}" for sid in chunk))
        for station_id, value in zip(chunk, values, strict=False):
            fields = value.split(" ")
            holders[station_id] = fields[1] if len(fields) == 3 else ""
    return holders


def _instance_config(workdir, name, port, status_port, redis_port, primary_port, secondary_port) -> str:
    path = os.path.join(workdir, f"ocppproxy-{name}.yaml")
    with open(path, "w") as stream:
        stream.write(
            f'listen: "tcp:port={port}:interface=127.0.0.1:backlog=4096"\n'
            f'primary_url: "ws://127.0.0.1:{primary_port}/"\n'
            f'secondary_url: "ws://127.0.0.1:{secondary_port}/"\n'
            f'status: {{listen: "tcp:port={status_port}:interface=127.0.0.1"}}\n'
            "log_level: warn\n"
            # Every station comes through HAProxy, from its address.
            "trusted_proxies: [127.0.0.1]\n"
            "reconnect: {initial_delay: 1.0, factor: 2.0, max_delay: 10.0, max_attempts: 1000}\n"
            f'cluster: {{redis_url: "redis://127.0.0.1:{redis_port}/0", instance: "{name}"}}\n'
        )
    return path


def _haproxy_config(workdir: str, port: int, servers, stations: int) -> str:
    with open(HAPROXY_EXAMPLE) as stream:
        text = stream.read()
    text = re.sub(r"(?m)^    (log /dev/log|stats socket) .*\n", "", text)
    # HAProxy wants two descriptors per connection, within this machine's hard limit.
    text = re.sub(r"(?m)^    maxconn \d+$", f"    maxconn {stations + 1000}", text)
    text = re.sub(r"(?m)^    bind :9000$", f"    bind 127.0.0.1:{port}", text)
    text = re.sub(r"(?m)^    server .*\n", "", text)
    text += "".join(f"    server {name} 127.0.0.1:{p} port {status}\n" for name, p, status in servers)
    path = os.path.join(workdir, "haproxy.cfg")
    with open(path, "w") as stream:
        stream.write(text)
    return path


def _logged(workdir: str, text: str) -> int:
    """How many lines of the instances' logs contain C{text}."""
    count = 0
    for name in INSTANCES:
        with open(os.path.join(workdir, f"{name}.log"), errors="replace") as stream:
            count += sum(1 for line in stream if text in line)
    return count


def _spawn(argv: list[str], log_path: str) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=HERE)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def cluster_phase(args, workdir: str, twistd: str, free_port, primary_port: int, secondary_port: int) -> dict:
    """Run the phase (see the module docstring); its results, or C{{"skipped": reason}}."""
    binaries = {name: shutil.which(name) for name in ("redis-server", "redis-cli", "haproxy")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        return {"skipped": f"{', '.join(missing)} not installed (Debian: apt-get install redis-server haproxy)"}
    processes: list[subprocess.Popen] = []
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    try:
        redis_port = free_port()
        processes.append(
            _spawn(
                [binaries["redis-server"], "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
                + ["--appendonly", "no", "--dir", workdir],
                os.path.join(workdir, "redis.log"),
            )
        )
        if await _until(lambda: _port_open(redis_port), START_TIMEOUT) is None:
            raise RuntimeError("redis-server did not start")
        servers, instances = [], {}
        for name in INSTANCES:
            port, status_port = free_port(), free_port()
            config = _instance_config(workdir, name, port, status_port, redis_port, primary_port, secondary_port)
            instances[name] = _spawn([twistd, "-n", "--pidfile=", "ocppproxy", "-c", config], f"{workdir}/{name}.log")
            processes.append(instances[name])
            servers.append((name, port, status_port))
        for name, port, _ in servers:
            if await _until(lambda port=port: _port_open(port), START_TIMEOUT) is None:
                raise RuntimeError(f"{name} did not start; see {workdir}/{name}.log")
        haproxy_port = free_port()
        config = _haproxy_config(workdir, haproxy_port, servers, args.cluster)
        processes.append(_spawn([binaries["haproxy"], "-db", "-f", config], os.path.join(workdir, "haproxy.log")))
        if await _until(lambda: _port_open(haproxy_port), START_TIMEOUT) is None:
            raise RuntimeError(f"haproxy did not start; see {workdir}/haproxy.log")

        rng = random.Random(17)
        stations = [HeartbeatingStation(f"ws://127.0.0.1:{haproxy_port}/", i, rng) for i in range(args.cluster)]
        started = time.monotonic()
        deadline = started + 3 * args.restart_timeout
        tasks = [asyncio.ensure_future(station.run(stop, deadline, 1000)) for station in stations]

        async def all_booted() -> bool:
            return all(station.booted_at is not None for station in stations)

        booted = await _until(all_booted, args.restart_timeout)
        if booted is None:
            raise RuntimeError(f"not every station booted within {args.restart_timeout:g} s")
        print(f"  cluster: {args.cluster} stations booted through HAProxy in {booted:.1f} s", file=sys.stderr)
        ids = [station.station_id for station in stations]
        holders: dict[str, str] = {}

        async def all_claimed() -> bool:
            # Claims are sent and forgotten: under a burst they may reach Redis after the boot.
            holders.update(await asyncio.to_thread(_holders, binaries["redis-cli"], redis_port, ids))
            return all(holders.values())

        if await _until(all_claimed, args.restart_timeout, interval=1.0) is None:
            raise RuntimeError("not every station is claimed in Redis")
        # Heartbeats are under way on every connection before the kill.
        await asyncio.sleep(HEARTBEAT_EVERY[1])
        victim = "proxy-a"
        moving = [station for station in stations if holders[station.station_id] == victim]
        staying = [station for station in stations if holders[station.station_id] != victim]
        connections_before = {station.station_id: station.connections for station in staying}
        killed = time.monotonic()
        instances[victim].send_signal(signal.SIGKILL)
        instances[victim].wait(timeout=10)

        async def all_back() -> bool:
            return all(station.booted_at is not None and station.booted_at > killed for station in moving)

        back = await _until(all_back, args.restart_timeout, interval=0.1)
        back_seconds = None if back is None else round(max(s.booted_at for s in moving) - killed, 2)
        after: dict[str, str] = {}

        async def all_moved() -> bool:
            moved = [s.station_id for s in moving]
            after.update(await asyncio.to_thread(_holders, binaries["redis-cli"], redis_port, moved))
            return all(holder not in ("", victim) for holder in after.values())

        # Read while the stations are still connected: a station that leaves releases its claim.
        claimed = await _until(all_moved, 30, interval=0.5)
        claimed_seconds = None if claimed is None else round(time.monotonic() - killed, 1)
        # The others go on beating for a whole period after the move.
        await asyncio.sleep(HEARTBEAT_EVERY[1])
        stop.set()
        await asyncio.wait(tasks, timeout=30)
        window = [beat for station in staying for beat in station.sent if beat > killed]
        return {
            "stations": args.cluster,
            "instances": len(INSTANCES),
            "first_boot_seconds": round(booted, 2),
            "killed": victim,
            "killed_stations": len(moving),
            "back_seconds": back_seconds,
            "back": sum(1 for station in moving if station.booted_at and station.booted_at > killed),
            "claimed_elsewhere": sum(1 for holder in after.values() if holder not in ("", victim)),
            "claimed_elsewhere_seconds": claimed_seconds,
            "other_stations": len(staying),
            "other_heartbeats_sent": sum(len(station.sent) for station in staying),
            "other_heartbeats_after_kill": len(window),
            "other_heartbeats_lost": sum(len(station.sent) - station.answered for station in staying),
            "other_stations_reconnected": sum(
                1 for station in staying if station.connections != connections_before[station.station_id]
            ),
            # Redis answering later than the 5 s reply timeout counts as an outage (claims written back after).
            "redis_outages_logged": _logged(workdir, "is unreachable"),
            "redis_replies_late": _logged(workdir, "Not received Redis response"),
        }
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for process in reversed(processes):
            _stop(process)


def print_cluster(result: dict) -> None:
    if "skipped" in result:
        print(f"\ncluster: skipped: {result['skipped']}")
        return
    print(
        f"\ncluster: {result['stations']} stations over {result['instances']} instances behind HAProxy (booted in"
        f" {result['first_boot_seconds']} s); {result['killed']} killed (SIGKILL) holding {result['killed_stations']}:"
        f" {result['back']} of them back and answered {result['back_seconds']} s after the kill"
        f" ({result['claimed_elsewhere']} claimed by the others in Redis within {result['claimed_elsewhere_seconds']} s);"
        f" the other {result['other_stations']} stations:"
        f" {result['other_heartbeats_lost']} of {result['other_heartbeats_sent']} Heartbeats lost"
        f" ({result['other_heartbeats_after_kill']} sent after the kill), {result['other_stations_reconnected']}"
        f" reconnected; Redis outages logged {result['redis_outages_logged']}, commands unanswered within 5 s"
        f" {result['redis_replies_late']}"
    )
