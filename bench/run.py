"""
ocppproxy's benchmark: what the proxy costs, side by side with no proxy at all and with
a naive ``websockets`` relay, in one run on 127.0.0.1.

    make bench                      # or: .venv/bin/python bench/run.py --help

Phases: direct, ocppproxy and naive relay (K stations in a closed Heartbeat loop for T
seconds each); the same through ocppproxy and the naive relay with TLS as deployed
(stations on wss://, both central systems wss://), and through HAProxy ending the
stations' TLS in front of ocppproxy (plain ws:// between them, wss:// upstream); idle
scale (N stations held through ocppproxy, each relaying a Heartbeat afterwards),
reconnect storm (the primary restarts under N stations), idle scale over TLS (N
stations held as in the ocppproxy TLS loop: station_tls, wss:// central systems),
proxy restart (R stations that retry as real ones do; the proxy itself restarts under
them, with its default limits), cluster (C stations through HAProxy over three instances sharing a
redis-server, one instance killed: see cluster.py), routing (in process: CPU per relayed CALL
with one primary and two mirrors against one and one, route lookup among 50,000 exact ids,
SIGHUP reload of those routes: see routing.py). Beside the Node tool ocppproxy replaces
(node_tool.py, versus_node.py; skipped, saying why, without node, npm, its directory or the
package registry): node (its closed-loop row), open-loop (the same fixed offered rate
through ocppproxy and the Node tool, open_loop.py), scale-node (its idle scale). What each
switch costs (features.py): features (a closed-loop row per switch), scale-features (RSS
per idle station per switch). The durable outbox (outbox_bench.py): outbox (CPU per call
with the outbox on, the mirror connected and down, against the same without it),
outbox-drain (a 100,000-frame backlog drained once the mirror is back, live Heartbeats'
p99 meanwhile). Every closed-loop and idle station connects from a loopback address of
its own. Prints a table and the ratios, and writes the results as JSON. Every
loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field

from autobahn.websocket import USES_NVX  # the proxy runs in this same environment
from cluster import cluster_phase, print_cluster
from features import Feature, chosen
from fleet import Fleet, source_address
from measures import latency_summary
from node_tool import DEFAULT_DIRECTORY, Unavailable, prepare, write_config
from open_loop import SETTLE_SECONDS, open_loop
from outbox_bench import (
    OUTBOX_FEATURES,
    drain_phase,
    open_cpu_by_row,
    outbox_targets,
    outbox_verdicts,
    print_outbox,
    round_line,
)
from versus_node import (
    NODE,
    closed_loop_comparison,
    open_loop_rounds,
    print_closed_loop_comparison,
    print_open_loop,
    print_rss_comparison,
    rss_comparison,
)
from websockets.asyncio.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Process:
    """A child process whose output goes to a file; started once a marker line appears in it."""

    def __init__(
        self, name: str, argv: list[str], workdir: str, ready_marker: str | None, ready_port: int | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.ready_marker = ready_marker
        """A line in its output that says it is ready; or None, and it is ready once C{ready_port} accepts."""
        self.ready_port = ready_port
        self.cwd = HERE
        self.popen: subprocess.Popen | None = None

    def _ready(self, output: str) -> bool:
        if self.ready_marker is not None:
            return self.ready_marker in output
        try:
            socket.create_connection(("127.0.0.1", self.ready_port), timeout=1).close()
        except OSError:
            return False
        return True

    async def start(self) -> None:
        log = open(self.log_path, "a")
        offset = log.tell()
        self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with open(self.log_path) as stream:
                stream.seek(offset)
                if self._ready(stream.read()):
                    return
            if self.popen.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start; see {self.log_path}")

    @property
    def pid(self) -> int:
        return self.popen.pid

    async def terminate(self, timeout: float) -> float | None:
        """SIGTERM, then wait without blocking the loop (peers here answer its close frames); seconds to exit."""
        started = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        while time.monotonic() - started < timeout:
            if self.popen.poll() is not None:
                return time.monotonic() - started
            await asyncio.sleep(0.05)
        self.stop(kill=True)
        return None

    def stop(self, kill: bool = False) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


def central(name: str, port: int, workdir: str, certs: dict[str, str] | None = None) -> Process:
    tls = ["--certificate", certs["server.pem"], "--key", certs["server-key.pem"]] if certs else []
    return Process(name, [sys.executable, "central.py", "--port", str(port), *tls], workdir, "READY")


@dataclass
class LoopResult:
    name: str
    stations: int
    seconds: float
    calls: int
    calls_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_seconds: float | None = None
    cpu_us_per_call: float | None = None
    system_cpu_share: float | None = None
    rss_mib: float | None = None


async def station_loop(
    url: str,
    tls: ssl.SSLContext | None,
    station_id: str,
    source: str,
    start: asyncio.Future,
    connected: list[str],
    latencies: list[float],
    errors: list[str],
) -> None:
    """One station of a closed loop: connect, wait for C{start} (it gives the deadline), then loop until it."""
    try:
        async with connect(
            url + station_id,
            subprotocols=["ocpp1.6"],
            compression=None,
            open_timeout=20,
            ssl=tls,
            local_addr=(source, 0),
        ) as ws:
            connected.append(station_id)
            deadline = await start
            number = 0
            while time.monotonic() < deadline:
                number += 1
                message_id = f"{station_id}-{number}"
                started = time.perf_counter()
                await ws.send(f'[2,"{message_id}","Heartbeat",{{}}]')
                answer = await asyncio.wait_for(ws.recv(), 20)
                latencies.append(time.perf_counter() - started)
                if message_id not in answer:
                    errors.append(f"{station_id}: wrong answer {answer[:80]}")
    except Exception as error:  # noqa: BLE001 - a benchmark reports, it does not stop
        errors.append(f"{station_id}: {error!r}")


@dataclass
class LoopTarget:
    """Where a closed loop's stations connect, and the processes whose CPU is its cost."""

    name: str
    url: str
    processes: list[Process]
    tls: ssl.SSLContext | None = None


def processes_cpu(processes: list[Process]) -> tuple[float, float]:
    """User and system CPU time of C{processes}, summed."""
    times = [cpu_times(process.pid) for process in processes]
    return sum(user for user, _ in times), sum(system for _, system in times)


async def run_stations(
    url: str,
    tls: ssl.SSLContext | None,
    prefix: str,
    stations: int,
    seconds: float,
    latencies: list[float],
    errors: list[str],
    on_start=None,
) -> None:
    """
    C{stations} closed-loop stations: all connected, L{SETTLE_SECONDS} later they loop for
    C{seconds}; C{on_start()}, if given, is called just before they start.
    """
    start = asyncio.get_running_loop().create_future()
    connected: list[str] = []
    failed_before = len(errors)
    tasks = [
        asyncio.ensure_future(
            station_loop(url, tls, f"{prefix}-{n:04d}", source_address(n), start, connected, latencies, errors)
        )
        for n in range(stations)
    ]
    deadline = time.monotonic() + 30
    while len(connected) + len(errors) - failed_before < stations and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(SETTLE_SECONDS)
    if on_start is not None:
        on_start()
    start.set_result(time.monotonic() + seconds)
    await asyncio.gather(*tasks)


async def closed_loop(target: LoopTarget, stations: int, seconds: float) -> LoopResult:
    """
    K stations, each from a loopback address of its own, sending a Heartbeat and awaiting
    the answer for T seconds; measured from their first call (their handshakes and upstream
    links before, not counted).
    """
    name, url, tls, processes = target.name, target.url, target.tls, target.processes
    latencies: list[float] = []
    errors: list[str] = []
    await run_stations(url, tls, "WARM", stations, min(2.0, seconds / 5), [], errors)
    measured = {}

    def on_start() -> None:
        measured["cpu"] = processes_cpu(processes) if processes else None
        measured["started"] = time.monotonic()

    await run_stations(url, tls, "BENCH", stations, seconds, latencies, errors, on_start)
    cpu_before, started = measured["cpu"], measured["started"]
    elapsed = time.monotonic() - started
    result = LoopResult(
        name=name,
        stations=stations,
        seconds=round(elapsed, 2),
        calls=len(latencies),
        calls_per_second=round(len(latencies) / elapsed, 1),
        **latency_summary(latencies),
        errors=len(errors),
    )
    if processes:
        user, system = (after - before for after, before in zip(processes_cpu(processes), cpu_before))
        result.cpu_seconds = round(user + system, 2)
        result.system_cpu_share = round(system / max(0.01, user + system), 2)
        result.cpu_us_per_call = round(1e6 * result.cpu_seconds / max(1, len(latencies)), 1)
        result.rss_mib = round(sum(rss_bytes(process.pid) for process in processes) / 2**20, 1)
    for error in errors[:5]:
        print(f"  {name}: {error}", file=sys.stderr)
    return result


async def central_stats(port: int) -> dict:
    async with connect(f"ws://127.0.0.1:{port}/_stats", subprotocols=["ocpp1.6"], open_timeout=10) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


@dataclass
class ScaleResult:
    stations: int
    connected: int
    connect_seconds: float
    rss_before_mib: float
    rss_after_mib: float
    kib_per_station: float
    answered_after: int
    storm: dict = field(default_factory=dict)
    heartbeats: dict = field(default_factory=dict)
    """A Heartbeat every --heartbeat-interval seconds from each station held, for --scale-hold seconds."""


async def heartbeat_load(args, connections: list, name: str) -> dict:
    """Every held station sends a Heartbeat every C{args.heartbeat_interval} s (an open loop); {} if --scale-hold 0."""
    if args.scale_hold <= 0 or not connections:
        return {}
    rate = len(connections) / args.heartbeat_interval
    # The thousands of connections held are out of this generator's collections meanwhile:
    # a full one would stall it for 0.1 to 0.3 s, counted as the proxy's latency.
    gc.collect()
    gc.freeze()
    try:
        return asdict(await open_loop(name, connections, rate, args.scale_hold, "beat"))
    finally:
        gc.unfreeze()


async def idle_scale_of(
    args,
    name: str,
    process: Process,
    url: str,
    links: dict[int, int],
    stations: int,
    heartbeats: bool,
    tls: ssl.SSLContext | None = None,
) -> ScaleResult:
    """
    C{stations} held through C{process} (listening at C{url}) as in the idle scale phase:
    RSS per station once every upstream link is up (C{links}: links per station by
    central system port), connect time, and with C{heartbeats} the periodic Heartbeats.
    """
    baseline = {port: (await central_stats(port))["connected"] for port in links}
    rss_before = rss_bytes(process.pid)
    connections, seconds = await hold_idle_stations(url, stations, args.batch, tls)

    async def all_linked() -> bool:
        for port, per_station in links.items():
            if (await central_stats(port))["connected"] - baseline[port] < per_station * len(connections):
                return False
        return True

    if await wait_for(all_linked, link_timeout(stations)) is None:
        print(f"  idle scale ({name}): not every station got its upstream links in time", file=sys.stderr)
    rss_after = rss_bytes(process.pid)
    answered = await heartbeat_all(connections, "idle", 60)
    result = scale_result(stations, connections, seconds, rss_before, rss_after, answered)
    if heartbeats:
        result.heartbeats = await heartbeat_load(args, connections, name)
    for ws in connections:
        ws.transport.abort()
    print(f"  idle scale ({name}): {len(connections)} stations held, {answered} answered", file=sys.stderr)
    return result


def feature_target(
    workdir: str, name: str, feature: Feature | None, primary_port: int, secondary_port: int
) -> LoopTarget | None:
    """
    ocppproxy with C{feature} on (None: plain), as a target; with stations_tls its
    stations trust the test CA; with redis, a redis-server of its own comes first in its
    processes (None, saying why, without one). The proxy is the last of the processes.
    """
    port = free_port()
    certs = None
    before: list[Process] = []
    redis_port = None
    if feature is not None and feature.redis:
        binary = shutil.which("redis-server")
        if binary is None:
            print(f"  feature {feature.name}: skipped, redis-server not installed (Debian: redis-server)", file=sys.stderr)
            return None
        redis_port = free_port()
        argv = [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        before.append(Process(f"{name}-redis", argv, workdir, None, redis_port))
    if feature is not None and feature.stations_tls:
        # The tests' CA (tests/certs.py), in a directory of its own: the TLS loops have theirs.
        sys.path.insert(0, os.path.dirname(HERE))
        from tests.certs import make_ca_and_server_cert

        directory = os.path.join(workdir, f"certs-{name}")
        os.makedirs(directory, exist_ok=True)
        certs = make_ca_and_server_cert(directory)
    config = proxy_config(
        workdir, port, primary_port, secondary_port, name, feature=feature, certs=certs, redis_port=redis_port
    )
    process = ocppproxy_process(name, config, workdir, None)
    row = FEATURE_ROW.format(feature.name) if feature else "ocppproxy"
    if certs is None:
        return LoopTarget(row, f"ws://127.0.0.1:{port}/", [*before, process])
    # Wrapped in TLS, the listening factory has another name: ready once it accepts.
    process.ready_marker, process.ready_port = None, port
    return LoopTarget(
        row, f"wss://127.0.0.1:{port}/", [*before, process], ssl.create_default_context(cafile=certs["ca.pem"])
    )


async def feature_memory(args, workdir: str, features: list[Feature], primary_port: int, secondary_port: int) -> dict:
    """KiB of RSS per idle station through plain ocppproxy and through each of C{features}, C{--feature-scale} each."""
    memory = {}
    for feature in (None, *features):
        name = feature.name if feature else "plain"
        target = feature_target(workdir, f"ocppproxy-idle-{name}", feature, primary_port, secondary_port)
        if target is None:
            continue
        process = target.processes[-1]
        links = {primary_port: feature.primary_links if feature else 1}
        if feature is None or not feature.mirror_down:
            links[secondary_port] = 1
        try:
            for started in target.processes:
                await started.start()
            held = await idle_scale_of(
                args, name, process, target.url, links, args.feature_scale, heartbeats=False, tls=target.tls
            )
        finally:
            for started in reversed(target.processes):
                started.stop()
        memory[name] = held.kib_per_station
    return memory


def link_timeout(stations: int) -> float:
    """Seconds an idle phase waits for every upstream link: 60, or 10 ms per station for large N (200 s at 20,000)."""
    return max(60.0, stations / 100)


async def wait_for(predicate, timeout: float, interval: float = 0.2) -> float | None:
    """Seconds until C{predicate()} (a coroutine function) is true, or None after C{timeout}."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await predicate():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    return None


async def heartbeat_all(connections: list, prefix: str, timeout: float) -> int:
    """Every connection sends one Heartbeat; how many answers arrive within C{timeout}."""

    async def one(index: int, ws) -> bool:
        message_id = f"{prefix}-{index}"
        try:
            await ws.send(f'[2,"{message_id}","Heartbeat",{{}}]')
            return message_id in await asyncio.wait_for(ws.recv(), timeout)
        except Exception:  # noqa: BLE001
            return False

    results = await asyncio.gather(*(one(index, ws) for index, ws in enumerate(connections)))
    return sum(results)


async def hold_idle_stations(url: str, stations: int, batch: int, tls: ssl.SSLContext | None = None):
    """
    C{stations} stations connected to C{url}, C{batch} at a time, each from a loopback
    address of its own (20,000 stations from one address would use most of its ephemeral
    ports towards one destination): the open connections, the seconds it took.
    """
    connections = []
    started = time.monotonic()
    for first in range(0, stations, batch):
        opened = await asyncio.gather(
            *(
                connect(
                    url + f"IDLE-{n:05d}",
                    subprotocols=["ocpp1.6"],
                    compression=None,
                    open_timeout=60,
                    ping_interval=None,
                    ssl=tls,
                    local_addr=(source_address(n), 0),
                )
                for n in range(first, min(stations, first + batch))
            ),
            return_exceptions=True,
        )
        connections.extend(ws for ws in opened if not isinstance(ws, BaseException))
    return connections, time.monotonic() - started


async def idle_scale_tls(args, workdir: str) -> ScaleResult:
    """
    N stations held over TLS as deployed (station_tls, both central systems wss://, as in
    the ocppproxy TLS loop): the proxy's RSS per station once each has relayed a Heartbeat
    (the answer shows its primary link is up; the TLS central systems have no _stats).
    """
    processes, targets = tls_loops(args, workdir, ["proxy-tls"])
    target = targets["proxy-tls"]
    (proxy,) = target.processes
    try:
        for process in processes:
            await process.start()
        rss_before = rss_bytes(proxy.pid)
        connections, seconds = await hold_idle_stations(target.url, args.scale, args.batch, target.tls)
        answered = await heartbeat_all(connections, "idle", 60)
        result = scale_result(args.scale, connections, seconds, rss_before, rss_bytes(proxy.pid), answered)
        for ws in connections:
            ws.transport.abort()
    finally:
        for process in processes:
            process.stop()
    print(f"  idle scale over TLS: {len(connections)} stations held, {answered} answered", file=sys.stderr)
    return result


def scale_result(
    stations: int, connections: list, seconds: float, rss_before: int, rss_after: int, answered: int
) -> ScaleResult:
    """What an idle scale phase measured: the proxy's RSS before and after, per station held."""
    return ScaleResult(
        stations=stations,
        connected=len(connections),
        connect_seconds=round(seconds, 2),
        rss_before_mib=round(rss_before / 2**20, 1),
        rss_after_mib=round(rss_after / 2**20, 1),
        kib_per_station=round((rss_after - rss_before) / 1024 / max(1, len(connections)), 1),
        answered_after=answered,
    )


async def idle_scale_and_storm(
    args, proxy: Process, primary: Process, proxy_port: int, primary_port: int, secondary_port: int
) -> ScaleResult:
    """N stations connected in batches through the proxy, then the primary restarts under them."""
    rss_before = rss_bytes(proxy.pid)
    connections, connect_seconds = await hold_idle_stations(f"ws://127.0.0.1:{proxy_port}/", args.scale, args.batch)

    async def all_linked() -> bool:
        # Both links of every station: with its primary gone and no secondary yet, the
        # proxy would close a station (1013), as it must, and the storm would lose it.
        counts = [(await central_stats(port))["connected"] for port in (primary_port, secondary_port)]
        return min(counts) >= len(connections)

    if await wait_for(all_linked, link_timeout(args.scale)) is None:
        print("  idle scale: not every station got both upstream links in time", file=sys.stderr)
    rss_after = rss_bytes(proxy.pid)
    answered = await heartbeat_all(connections, "idle", 60)
    result = scale_result(args.scale, connections, connect_seconds, rss_before, rss_after, answered)
    print(f"  idle scale: {len(connections)} stations held, {answered} answered", file=sys.stderr)
    result.heartbeats = await heartbeat_load(args, connections, "ocppproxy")

    # Reconnect storm: the primary dies; every station sends a Heartbeat meanwhile (the
    # proxy queues it for the primary); the primary comes back after --outage seconds.
    crashed = time.monotonic()
    primary.stop(kill=True)
    answers = asyncio.ensure_future(heartbeat_all(connections, "storm", args.outage + 60))
    await asyncio.sleep(args.outage)
    await primary.start()
    restarted = time.monotonic()

    async def all_back() -> bool:
        return (await central_stats(primary_port))["connected"] >= len(connections)

    back_after = await wait_for(all_back, 120)
    answered_storm = await answers
    stats = await central_stats(primary_port)
    # Every link retries at most max_delay (10 s in the config below) after the primary is back.
    bound = round(restarted - crashed + 10.0, 2)
    back_after_crash = None if back_after is None else round(restarted - crashed + back_after, 2)
    result.storm = {
        "outage_seconds": round(restarted - crashed, 2),
        "all_back_seconds_after_restart": None if back_after is None else round(back_after, 2),
        "all_back_seconds_after_crash": back_after_crash,
        "policy_bound_seconds": bound,
        "within_bound": back_after_crash is not None and back_after_crash <= bound,
        "heartbeats_sent_during_outage": len(connections),
        "answered": answered_storm,
        "received_by_restarted_primary": stats["calls"],
        "frames_lost": len(connections) - min(answered_storm, stats["calls"]),
    }
    for ws in connections:
        ws.transport.abort()
    return result


def proxy_config(
    workdir: str,
    port: int,
    primary_port: int,
    secondary_port: int,
    name: str = "ocppproxy",
    tls: str = "",
    feature: Feature | None = None,
    certs: dict[str, str] | None = None,
    redis_port: int | None = None,
) -> str:
    """
    The closed loops' and idle phase's configuration; C{tls} (YAML lines) makes the
    upstreams wss://; C{feature} turns one switch on (features.py).
    """
    path = os.path.join(workdir, f"{name}.yaml")
    scheme = "wss" if tls else "ws"
    urls = (
        f'primary_url: "{scheme}://127.0.0.1:{primary_port}/"\n'
        f'secondary_url: "{scheme}://127.0.0.1:{secondary_port}/"\n'
    )
    with open(path, "w") as stream:
        stream.write(
            f'listen: "tcp:port={port}:interface=127.0.0.1:backlog=4096"\n'
            f"{urls if feature is None or feature.upstream_urls else ''}"
            f"{feature.yaml(workdir, primary_port, secondary_port, certs, redis_port) if feature else ''}"
            f"{tls}"
            f"log_level: {feature.log_level if feature else 'warn'}\n"
            "reconnect: {initial_delay: 1.0, factor: 2.0, max_delay: 10.0, max_attempts: 1000}\n"
            # The idle phase opens --batch stations at once, and unlike real ones they do not
            # retry; a closed loop sends far more than 50 frames/s per station.
            "limits: {max_handshakes: 100000, max_handshakes_per_address: 100000,"
            " max_frames_per_second: 1000000, frame_burst: 1000000}\n"
        )
    return path


def haproxy_config(workdir: str, port: int, certs: dict[str, str], proxy_port: int) -> str:
    """HAProxy ending the stations' TLS (as etc/haproxy.cfg shows it) in front of one ocppproxy on C{proxy_port}."""
    pem = os.path.join(workdir, "haproxy.pem")
    with open(pem, "w") as stream:
        for name in ("server.pem", "server-key.pem"):
            with open(certs[name]) as part:
                stream.write(part.read())
    path = os.path.join(workdir, "haproxy-tls.cfg")
    with open(path, "w") as stream:
        stream.write(
            "global\n    maxconn 4000\n"
            "defaults\n    mode http\n    option forwardfor\n    timeout connect 5s\n"
            "    timeout client 60s\n    timeout server 60s\n    timeout tunnel 1h\n"
            f"frontend ocpp\n    bind 127.0.0.1:{port} ssl crt {pem} alpn http/1.1\n    default_backend ocppproxy\n"
            f"backend ocppproxy\n    server proxy 127.0.0.1:{proxy_port}\n"
        )
    return path


def restart_config(workdir: str, port: int, status_port: int, primary_port: int, secondary_port: int) -> str:
    """The proxy restart phase's configuration: every limit and timeout at its default."""
    path = os.path.join(workdir, "ocppproxy-restart.yaml")
    with open(path, "w") as stream:
        stream.write(
            f'listen: "tcp:port={port}:interface=127.0.0.1:backlog=1024"\n'
            f'primary_url: "ws://127.0.0.1:{primary_port}/"\n'
            f'secondary_url: "ws://127.0.0.1:{secondary_port}/"\n'
            f'status: {{listen: "tcp:port={status_port}:interface=127.0.0.1"}}\n'
            "log_level: warn\n"
        )
    return path


def limit_counters(status_port: int) -> dict[str, float]:
    """The proxy's refusal and shed counters, from its /metrics (blocking: run it in a thread)."""
    url = f"http://127.0.0.1:{status_port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    counters = {}
    for line in text.splitlines():
        if line.startswith(("ocppproxy_connections_refused_total", "ocppproxy_handshakes_shed_total")):
            name, value = line.rsplit(" ", 1)
            counters[name] = float(value)
    return counters


async def all_answered_after(fleet: Fleet, moment: float, timeout: float) -> float | None:
    """Seconds from C{moment} until every station of C{fleet} had an answer after it; None after C{timeout}."""

    async def all_back() -> bool:
        return fleet.answered_since(moment) == len(fleet.stations)

    if await wait_for(all_back, timeout - (time.monotonic() - moment), interval=0.1) is None:
        return None
    return round(fleet.last_answer() - moment, 2)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def proxy_restart(args, proxy: Process, centrals: list[Process], status_port: int, proxy_port: int) -> dict:
    """
    R retrying stations connected through the proxy; the proxy is stopped (SIGTERM) and a
    new one started on the same port. Measured from the SIGTERM until every station is
    connected again and its BootNotification answered.
    """
    fleet = Fleet(f"ws://127.0.0.1:{proxy_port}/", args.restart)
    await proxy.start()
    started = time.monotonic()
    fleet.start(deadline=started + 3 * args.restart_timeout, max_attempts=1000)
    try:
        first_connect = await all_answered_after(fleet, started, args.restart_timeout)
        print(f"  proxy restart: {fleet.answered_since(started)} stations booted in {first_connect} s", file=sys.stderr)
        load = os.getloadavg()[0]
        cpu_before = [own_cpu_seconds(), *(sum(cpu_times(central.pid)) for central in centrals)]
        sigterm = time.monotonic()
        drained = await proxy.terminate(60)
        await proxy.start()
        listening = time.monotonic() - sigterm
        back = await all_answered_after(fleet, sigterm, args.restart_timeout)
        cpu_after = [own_cpu_seconds(), *(sum(cpu_times(central.pid)) for central in centrals)]
        cpu = dict(zip(("stations", *(central.name for central in centrals)), cpu_after, strict=True))
        cpu = {name: round(cpu[name] - before, 1) for name, before in zip(cpu, cpu_before, strict=True)}
        cpu["new proxy"] = round(sum(cpu_times(proxy.pid)), 1)
        counters = await asyncio.to_thread(limit_counters, status_port)
        not_listening, failed = fleet.failures_since(sigterm)
        return {
            "stations": args.restart,
            "first_boot_seconds": first_connect,
            "old_proxy_exit_seconds": None if drained is None else round(drained, 2),
            "new_proxy_listening_seconds": round(listening, 2),
            "all_back_seconds": back,
            "back": fleet.answered_since(sigterm),
            "attempts_no_listener": not_listening,
            "attempts_failed": failed,
            "failures_by_kind": fleet.failure_kinds(),
            "refused": {name.split('"')[1]: int(value) for name, value in counters.items() if name.endswith("}")},
            "shed": int(counters.get("ocppproxy_handshakes_shed_total", 0)),
            "cpu_seconds_until_back": cpu,
            "load_average_before": round(load, 2),
        }
    finally:
        await fleet.stop()
        proxy.stop()


def raise_file_limit(needed: int) -> None:
    """
    Raise this process's (and so its children's: the proxies, the central systems) open-file
    limit to C{needed}, or as far as the hard limit allows, saying what is missing.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        print(
            f"bench: needs {needed} open files, the hard limit is {hard}: raised to {hard} only; phases with more "
            "stations will lose some (raise it: `ulimit -Hn` as root, LimitNOFILE= for a systemd unit, "
            "--ulimit nofile= for a container)",
            file=sys.stderr,
        )
        needed = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


LOOP_PHASES = ("direct", "proxy", "naive", "node", "proxy-tls", "naive-tls", "haproxy-tls")
NODE_PHASES = ("node", "open-loop", "scale-node")
# CPU per call of each feature's row over plain ocppproxy's, round by round (features.py).
FEATURE_ROW = "ocppproxy +{}"
TLS_PHASES = ("proxy-tls", "naive-tls", "haproxy-tls")


def ocppproxy_process(name: str, config: str, workdir: str, profile: str | None) -> Process:
    """C{twistd -n ocppproxy -c config}, its cProfile stats written to C{profile} if given."""
    return Process(
        name,
        [
            os.path.join(BIN, "twistd"),
            "-n",
            "--pidfile=",
            *(["--profiler=cprofile", "--savestats", f"--profile={profile}"] if profile else []),
            "ocppproxy",
            "-c",
            config,
        ],
        workdir,
        "StationFactory starting on",
    )


def naive_process(name: str, port: int, primary: str, secondary: str, workdir: str, tls: list[str]) -> Process:
    """bench/naive_relay.py on C{port}; C{tls}, its TLS options (none: plain both ways)."""
    argv = [sys.executable, "naive_relay.py", "--port", str(port), "--primary", primary, "--secondary", secondary]
    return Process(name, [*argv, *tls], workdir, "READY")


def node_process(args, workdir: str, port: int, primary_port: int, secondary_port: int) -> Process | None:
    """The Node tool (see node_tool.py) on C{port} with both central systems; None, saying why, if it cannot run."""
    try:
        directory = prepare(args.node_tool, workdir)
    except Unavailable as reason:
        print(f"  node: skipped, {reason}", file=sys.stderr)
        return None
    write_config(directory, port, f"ws://127.0.0.1:{primary_port}/", f"ws://127.0.0.1:{secondary_port}/")
    # Told to log warnings only, it prints nothing when it listens: ready once it accepts.
    process = Process("node-tool", ["node", "src/index.js"], workdir, None, port)
    process.cwd = directory
    return process


def tls_loops(args, workdir: str, loop_phases: list[str]) -> tuple[list[Process], dict[str, LoopTarget]]:
    """
    The TLS closed loops' processes (in start order) and targets: central systems on
    wss://, ocppproxy and the naive relay with TLS both ways, and HAProxy ending the
    stations' TLS in front of an ocppproxy with wss:// upstreams (skipped, saying why,
    without haproxy). One CA signs every certificate; the stations trust it.
    """
    if not set(loop_phases) & set(TLS_PHASES):
        return [], {}
    # The tests' CA and certificates (tests/certs.py), from this checkout.
    sys.path.insert(0, os.path.dirname(HERE))
    from tests.certs import make_ca_and_server_cert

    certs = make_ca_and_server_cert(workdir)
    stations_tls = ssl.create_default_context(cafile=certs["ca.pem"])
    primary_port, secondary_port, proxy_port, naive_port, behind_port, haproxy_port = (free_port() for _ in range(6))
    processes = [
        central("primary-tls", primary_port, workdir, certs),
        central("secondary-tls", secondary_port, workdir, certs),
    ]
    targets = {}
    upstream_tls = f'ca_file: "{certs["ca.pem"]}"\n'
    profile = args.profile and f"{args.profile}.tls"
    if "proxy-tls" in loop_phases:
        station_tls = (
            f'station_tls: {{certificate: "{certs["server.pem"]}", private_key: "{certs["server-key.pem"]}"}}\n'
        )
        config = proxy_config(
            workdir, proxy_port, primary_port, secondary_port, "ocppproxy-tls", upstream_tls + station_tls
        )
        # Wrapped in TLS, the listening factory has another name: ready once it accepts.
        proxy = ocppproxy_process("ocppproxy-tls", config, workdir, profile)
        proxy.ready_marker, proxy.ready_port = None, proxy_port
        processes.append(proxy)
        targets["proxy-tls"] = LoopTarget("ocppproxy TLS", f"wss://127.0.0.1:{proxy_port}/", [proxy], stations_tls)
    if "naive-tls" in loop_phases:
        tls = ["--certificate", certs["server.pem"], "--key", certs["server-key.pem"], "--ca-file", certs["ca.pem"]]
        naive = naive_process(
            "naive-tls",
            naive_port,
            f"wss://127.0.0.1:{primary_port}/",
            f"wss://127.0.0.1:{secondary_port}/",
            workdir,
            tls,
        )
        processes.append(naive)
        targets["naive-tls"] = LoopTarget("naive relay TLS", f"wss://127.0.0.1:{naive_port}/", [naive], stations_tls)
    if "haproxy-tls" in loop_phases:
        if shutil.which("haproxy") is None:
            print("  haproxy-tls: skipped, haproxy not installed (Debian: apt-get install haproxy)", file=sys.stderr)
        else:
            behind = ocppproxy_process(
                "ocppproxy-behind-haproxy",
                proxy_config(
                    workdir,
                    behind_port,
                    primary_port,
                    secondary_port,
                    "ocppproxy-behind-haproxy",
                    upstream_tls + "trusted_proxies: [127.0.0.1]\n",
                ),
                workdir,
                args.profile and f"{args.profile}.behind-haproxy",
            )
            haproxy_argv = ["haproxy", "-db", "-f", haproxy_config(workdir, haproxy_port, certs, behind_port)]
            haproxy = Process("haproxy-tls", haproxy_argv, workdir, None, haproxy_port)
            processes += [behind, haproxy]
            targets["haproxy-tls"] = LoopTarget(
                "HAProxy TLS + ocppproxy", f"wss://127.0.0.1:{haproxy_port}/", [haproxy, behind], stations_tls
            )
    return processes, targets


def median_result(results: list[LoopResult]) -> LoopResult:
    """One row from several rounds: the median of each rate, latency and cost; totals summed."""

    def median(name: str):
        values = [getattr(result, name) for result in results if getattr(result, name) is not None]
        return round(statistics.median(values), 3) if values else None

    first = results[0]
    return LoopResult(
        name=first.name,
        stations=first.stations,
        seconds=round(sum(result.seconds for result in results), 2),
        calls=sum(result.calls for result in results),
        calls_per_second=median("calls_per_second"),
        p50_ms=median("p50_ms"),
        p99_ms=median("p99_ms"),
        errors=sum(result.errors for result in results),
        cpu_seconds=median("cpu_seconds"),
        cpu_us_per_call=median("cpu_us_per_call"),
        system_cpu_share=median("system_cpu_share"),
        rss_mib=median("rss_mib"),
    )


def print_restart(restart: dict) -> None:
    refused = ", ".join(f"{count} by {limit}" for limit, count in sorted(restart["refused"].items()) if count) or "none"
    print(
        f"proxy restart: {restart['back']}/{restart['stations']} stations back and answered "
        f"{restart['all_back_seconds']} s after the SIGTERM (old proxy gone after {restart['old_proxy_exit_seconds']} s, "
        f"new one listening after {restart['new_proxy_listening_seconds']} s); connections refused: {refused}; "
        f"handshakes shed: {restart['shed']}; station attempts with no proxy listening {restart['attempts_no_listener']}, "
        f"failed otherwise {restart['attempts_failed']}"
    )


# CPU per relayed CALL, (numerator, denominator) by row name, and the targets for it.
CPU_RATIOS = (("ocppproxy", "naive relay"), ("ocppproxy TLS", "naive relay TLS"))
# What TLS costs, as multiples of CPU per call (no target): each with TLS over itself
# without, and the two ways of deploying ocppproxy with TLS against each other.
TLS_COSTS = (
    ("ocppproxy TLS", "ocppproxy"),
    ("naive relay TLS", "naive relay"),
    ("HAProxy TLS + ocppproxy", "ocppproxy TLS"),
    ("HAProxy TLS + ocppproxy", "naive relay TLS"),
)
MEDIAN_TARGET = 0.8
ROUND_TARGET = 1.0


def cpu_by_row(rounds: dict[str, list[LoopResult]]) -> dict[str, list[float | None]]:
    """CPU per call of each row, round by round."""
    return {name: [result.cpu_us_per_call for result in results] for name, results in rounds.items()}


def round_ratios(rounds: dict[str, list[LoopResult]], numerator: str, denominator: str) -> list[float]:
    """CPU per call of row C{numerator} over row C{denominator}, round by round (rounds run so far)."""
    pairs = zip(rounds.get(numerator, []), rounds.get(denominator, []))
    return [round(top.cpu_us_per_call / bottom.cpu_us_per_call, 3) for top, bottom in pairs if bottom.cpu_us_per_call]


def judge_ratios(ratios: list[float]) -> dict:
    """The rounds' ratios, their median and highest, and whether each target holds."""
    median = round(statistics.median(ratios), 3)
    return {
        "rounds": ratios,
        "median": median,
        "highest": max(ratios),
        "median_target_met": median <= MEDIAN_TARGET,
        "every_round_target_met": max(ratios) <= ROUND_TARGET,
    }


def print_round_ratios(verdicts: dict[str, dict], costs: dict[str, dict]) -> None:
    for name, cost in costs.items():
        rounds = " ".join(f"{ratio:.3f}" for ratio in cost["rounds"])
        print(f"CPU per call {name}, by round: {rounds}; median {cost['median']:.3f}")
    for name, verdict in verdicts.items():
        rounds = " ".join(f"{ratio:.3f}" for ratio in verdict["rounds"])
        print(
            f"CPU per call {name}, by round: {rounds}; median {verdict['median']:.3f} "
            f"(target <= {MEDIAN_TARGET}: {'met' if verdict['median_target_met'] else 'MISSED'}), "
            f"highest {verdict['highest']:.3f} "
            f"(target <= {ROUND_TARGET} in every round: {'met' if verdict['every_round_target_met'] else 'MISSED'})"
        )


def print_idle_scale(name: str, scale: ScaleResult) -> None:
    print(
        f"{name}: {scale.connected}/{scale.stations} stations connected in {scale.connect_seconds} s, "
        f"{scale.kib_per_station} KiB RSS per station (its two upstream links included), "
        f"{scale.answered_after} answered a Heartbeat afterwards"
    )


def print_heartbeats(scale: ScaleResult) -> None:
    """The held stations' periodic Heartbeats: offered rate, answers, p50 and p99."""
    beats = scale.heartbeats
    if beats:
        print(
            f"  Heartbeats from the {beats['stations']} held stations, {beats['offered_per_second']:.0f}/s for "
            f"{beats['seconds']:.0f} s: {beats['answered']}/{beats['sent']} answered, p50 {beats['p50_ms']:.2f} ms, "
            f"p99 {beats['p99_ms']:.2f} ms (generator lag {beats['generator_lag_ms']:.1f} ms)"
        )


def print_table(
    loops: list[LoopResult], verdicts: dict[str, dict], costs: dict[str, dict], scale: ScaleResult | None
) -> dict:
    print()
    print(f"{'':28} {'calls/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU µs/call':>12} {'RSS MiB':>8}")
    for r in loops:
        cpu = "" if r.cpu_us_per_call is None else f"{r.cpu_us_per_call:.0f}"
        rss = "" if r.rss_mib is None else f"{r.rss_mib:.0f}"
        print(f"{r.name:28} {r.calls_per_second:10.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.errors:7} {cpu:>12} {rss:>8}")
    by_name = {r.name: r for r in loops}
    ratios = {}
    direct, proxied, naive = by_name.get("direct"), by_name.get("ocppproxy"), by_name.get("naive relay")
    if direct and proxied:
        ratios["throughput ocppproxy/direct"] = round(proxied.calls_per_second / direct.calls_per_second, 3)
        ratios["p50 ocppproxy/direct"] = round(proxied.p50_ms / direct.p50_ms, 3)
    if naive and proxied:
        ratios["throughput ocppproxy/naive"] = round(proxied.calls_per_second / naive.calls_per_second, 3)
        ratios["p50 ocppproxy/naive"] = round(proxied.p50_ms / naive.p50_ms, 3)
        ratios["CPU per call ocppproxy/naive"] = round(proxied.cpu_us_per_call / naive.cpu_us_per_call, 3)
    proxied_tls, naive_tls = by_name.get("ocppproxy TLS"), by_name.get("naive relay TLS")
    if proxied_tls and naive_tls:
        ratios["throughput TLS ocppproxy/naive"] = round(proxied_tls.calls_per_second / naive_tls.calls_per_second, 3)
        ratios["p50 TLS ocppproxy/naive"] = round(proxied_tls.p50_ms / naive_tls.p50_ms, 3)
        ratios["CPU per call TLS ocppproxy/naive"] = round(proxied_tls.cpu_us_per_call / naive_tls.cpu_us_per_call, 3)
    print()
    for name, value in ratios.items():
        print(f"{name:32} {value:6.3f}")
    print_round_ratios(verdicts, costs)
    if scale:
        print()
        print_idle_scale("idle scale", scale)
        print_heartbeats(scale)
        storm = scale.storm
        print(
            f"reconnect storm: primary down {storm['outage_seconds']} s; all {scale.connected} primary links back "
            f"{storm['all_back_seconds_after_restart']} s after its restart, {storm['all_back_seconds_after_crash']} s after "
            f"the crash (policy bound {storm['policy_bound_seconds']} s: {'met' if storm['within_bound'] else 'MISSED'}); "
            f"{storm['answered']} of {storm['heartbeats_sent_during_outage']} outage Heartbeats answered, "
            f"{storm['frames_lost']} lost"
        )
    return ratios


async def main(args) -> None:
    workdir = tempfile.mkdtemp(prefix="ocppproxy-bench-")
    primary_port, secondary_port, proxy_port, naive_port, status_port, node_port = (free_port() for _ in range(6))
    phases = args.phases.split(",")
    # The proxy holds three sockets per station (its own, two upstream links); this process one.
    raise_file_limit(
        3
        * max(
            args.scale if {"scale", "scale-tls", "scale-node"} & set(phases) else 0,
            # Three upstreams: four descriptors per station.
            args.feature_scale * 4 // 3 if "scale-features" in phases else 0,
            args.restart if "restart" in phases else 0,
            args.cluster if "cluster" in phases else 0,
        )
        + 1000
    )
    primary = central("primary", primary_port, workdir)
    secondary = central("secondary", secondary_port, workdir)
    proxy = ocppproxy_process(
        "ocppproxy", proxy_config(workdir, proxy_port, primary_port, secondary_port), workdir, args.profile
    )
    naive = naive_process(
        "naive", naive_port, f"ws://127.0.0.1:{primary_port}/", f"ws://127.0.0.1:{secondary_port}/", workdir, []
    )
    restarting = ocppproxy_process(
        "ocppproxy-restart",
        restart_config(workdir, proxy_port, status_port, primary_port, secondary_port),
        workdir,
        args.profile and f"{args.profile}.restart",
    )
    loop_phases = [phase for phase in phases if phase in LOOP_PHASES]
    tls_processes, tls_targets = tls_loops(args, workdir, loop_phases)
    node = None
    if set(NODE_PHASES) & set(phases):
        node = node_process(args, workdir, node_port, primary_port, secondary_port)
    open_loop_result = None
    scale_node = None
    memory_by_feature = None
    features = chosen(args.features) if {"features", "scale-features"} & set(phases) else []
    feature_processes = []
    feature_targets = {}
    looped = [*(features if "features" in phases else [])]
    if "outbox" in phases:
        # Its rows are switches too, against plain ocppproxy's row (run.py's phase proxy).
        looped += [feature for feature in chosen(OUTBOX_FEATURES) if feature not in looped]
        if "proxy" not in loop_phases:
            loop_phases.insert(0, "proxy")
    if looped:
        for feature in looped:
            target = feature_target(workdir, f"ocppproxy-{feature.name}", feature, primary_port, secondary_port)
            if target is None:
                continue
            feature_processes += target.processes
            feature_targets[f"feature-{feature.name}"] = target
        loop_phases += list(feature_targets)
    loops: list[LoopResult] = []
    rounds: dict[str, list[LoopResult]] = {}
    verdicts: dict[str, dict] = {}
    costs: dict[str, dict] = {}
    scale = None
    scale_tls = None
    restart = None
    cluster = None
    drain = None
    outbox_open = None
    try:
        await primary.start()
        await secondary.start()
        if "proxy" in loop_phases or "open-loop" in phases:
            await proxy.start()
        if "naive" in loop_phases:
            await naive.start()
        if node and ("node" in loop_phases or "open-loop" in phases):
            await node.start()
        for process in (*tls_processes, *feature_processes):
            await process.start()
        targets = {
            "direct": LoopTarget("direct", f"ws://127.0.0.1:{primary_port}/", []),
            "proxy": LoopTarget("ocppproxy", f"ws://127.0.0.1:{proxy_port}/", [proxy]),
            "naive": LoopTarget("naive relay", f"ws://127.0.0.1:{naive_port}/", [naive]),
            **({"node": LoopTarget(NODE, f"ws://127.0.0.1:{node_port}/", [node])} if node else {}),
            **tls_targets,
            **feature_targets,
        }
        loop_phases = [phase for phase in loop_phases if phase in targets]
        # Interleaved rounds, medians reported: a neighbour's burst on a shared machine
        # then spoils one round of each, not a whole column.
        for number in range(args.rounds):
            for phase in loop_phases:
                result = await closed_loop(targets[phase], args.stations, args.seconds)
                rounds.setdefault(targets[phase].name, []).append(result)
            this_round = ", ".join(
                f"{top}/{bottom} {ratios[-1]:.3f}"
                for top, bottom in (*CPU_RATIOS, ("ocppproxy", NODE))
                if (ratios := round_ratios(rounds, top, bottom)) and len(ratios) == number + 1
            )
            outbox_round = round_line(cpu_by_row(rounds), number + 1)
            this_round = ", ".join(filter(None, (this_round, outbox_round)))
            print(f"  round {number + 1} of {args.rounds} done; CPU per call {this_round or '-'}", file=sys.stderr)
        loops = [median_result(results) for results in rounds.values()]
        verdicts = {
            f"{top}/{bottom}": judge_ratios(ratios)
            for top, bottom in CPU_RATIOS
            if (ratios := round_ratios(rounds, top, bottom))
        }
        costs = {
            f"{top}/{bottom}": {"rounds": ratios, "median": round(statistics.median(ratios), 3)}
            for top, bottom in (*TLS_COSTS, *((target.name, "ocppproxy") for target in feature_targets.values()))
            if (ratios := round_ratios(rounds, top, bottom))
        }
        if "open-loop" in phases:
            open_targets = {"ocppproxy": (targets["proxy"].url, [proxy])}
            if node:
                open_targets[NODE] = (targets["node"].url, [node])
            open_loop_result = await open_loop_rounds(args, open_targets, lambda ps: sum(processes_cpu(ps)))
        if "outbox" in phases:
            # The same offered load through each row: CPU per call at equal throughput.
            rows = {target.name: (target.url, target.processes) for target in outbox_targets(targets)}
            outbox_open = await open_loop_rounds(args, rows, lambda ps: sum(processes_cpu(ps)))
        for process in (proxy, naive, *tls_processes, *feature_processes, *([node] if node else [])):
            process.stop()
        if "scale-features" in phases:
            memory_by_feature = await feature_memory(args, workdir, features, primary_port, secondary_port)
        if "scale" in phases:
            await proxy.start()
            scale = await idle_scale_and_storm(args, proxy, primary, proxy_port, primary_port, secondary_port)
            proxy.stop()
            print("  scale done", file=sys.stderr)
        if "scale-node" in phases and node:
            await node.start()
            node_url = f"ws://127.0.0.1:{node_port}/"
            links = {primary_port: 1, secondary_port: 1}
            scale_node = await idle_scale_of(args, NODE, node, node_url, links, args.scale, heartbeats=True)
            node.stop()
        if "scale-tls" in phases:
            scale_tls = await idle_scale_tls(args, workdir)
        if "restart" in phases:
            restart = await proxy_restart(args, restarting, [primary, secondary], status_port, proxy_port)
        if "cluster" in phases:
            cluster = await cluster_phase(
                args, workdir, os.path.join(BIN, "twistd"), free_port, primary_port, secondary_port
            )
        if "outbox-drain" in phases:
            drain = await drain_phase(
                args,
                workdir,
                free_port,
                lambda name, config: ocppproxy_process(name, config, workdir, args.profile and f"{args.profile}.drain"),
                lambda name, port: central(name, port, workdir),
                primary_port,
                lambda ps: sum(processes_cpu(ps)),
            )
    finally:
        for process in (
            proxy,
            naive,
            *tls_processes,
            *feature_processes,
            *([node] if node else []),
            restarting,
            primary,
            secondary,
        ):
            process.stop()
    ratios = print_table(loops, verdicts, costs, scale)
    versus_node = {"closed_loop": closed_loop_comparison(rounds), "open_loop": open_loop_result}
    if versus_node["closed_loop"]:
        print_closed_loop_comparison(versus_node["closed_loop"])
    if open_loop_result:
        print_open_loop(open_loop_result)
    if scale_node:
        print_idle_scale(f"idle scale ({NODE})", scale_node)
        print_heartbeats(scale_node)
    versus_node["idle_rss"] = rss_comparison(scale and scale.kib_per_station, scale_node and scale_node.kib_per_station)
    if versus_node["idle_rss"]:
        print_rss_comparison(versus_node["idle_rss"])
    if memory_by_feature:
        plain = memory_by_feature["plain"]
        print(f"\nRSS per idle station by feature ({args.feature_scale} stations each; plain {plain} KiB):")
        for name, kib in memory_by_feature.items():
            print(f"  {name:24} {kib:8.1f} KiB  {kib / plain if plain else float('nan'):6.3f} x plain")
    routing = None
    if "routing" in phases:
        # In a process of its own: CPU per CALL with mirrors, route lookup, SIGHUP reload.
        routing = subprocess.run(
            [sys.executable, os.path.join(HERE, "routing.py")], capture_output=True, text=True, timeout=900, check=True
        ).stdout
        print("\nroutes (bench/routing.py)\n" + routing)
    if scale_tls:
        print_idle_scale("idle scale over TLS (station_tls, wss:// upstreams)", scale_tls)
    if restart:
        print_restart(restart)
    if cluster:
        print_cluster(cluster)
    outbox = outbox_verdicts(cpu_by_row(rounds))
    outbox_equal_load = outbox_verdicts(open_cpu_by_row(outbox_open)) if outbox_open else {}
    if outbox or drain:
        print()
        print_outbox(outbox, drain, outbox_equal_load, args.rate)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.platform()}, Autobahn NVX {'on' if USES_NVX else 'OFF'}"
    )
    results = {
        "machine": machine,
        "date": time.strftime("%Y-%m-%d"),
        "parameters": {
            "stations": args.stations,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "scale": args.scale,
            "outage": args.outage,
            "restart": args.restart,
            "cluster": args.cluster,
            "rate": args.rate,
            "open_stations": args.open_stations,
            "heartbeat_interval": args.heartbeat_interval,
            "scale_hold": args.scale_hold,
            "features": args.features,
            "feature_scale": args.feature_scale,
            "drain_backlog": args.drain_backlog,
            "drain_stations": args.drain_stations,
            "drain_live": args.drain_live,
        },
        "loops": [asdict(r) for r in loops],
        "rounds": {name: [asdict(result) for result in results] for name, results in rounds.items()},
        "ratios": ratios,
        "cpu_ratios_by_round": verdicts,
        "tls_costs_by_round": costs,
        "scale": asdict(scale) if scale else None,
        "scale_tls": asdict(scale_tls) if scale_tls else None,
        "scale_node": asdict(scale_node) if scale_node else None,
        "memory_by_feature": memory_by_feature,
        "versus_node": versus_node,
        "restart": restart,
        "cluster": cluster,
        "routing": routing,
        "outbox": {
            "cpu_ratios_by_round": outbox,
            "open_loop": outbox_open,
            "cpu_ratios_by_round_equal_load": outbox_equal_load,
            "drain": drain,
        },
    }
    with open(args.output, "w") as stream:
        json.dump(results, stream, indent=2)
    print(f"\n{machine}\nresults written to {args.output}; logs in {workdir}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=50, help="K, stations in the closed loops (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="T, seconds per closed loop (default 10)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleaved rounds of the closed loops (default 5): medians and each round's ratios shown",
    )
    parser.add_argument(
        "--scale", type=int, default=5000, help="N, stations held in the idle scale phase (default 5000)"
    )
    parser.add_argument("--batch", type=int, default=250, help="stations connected at once in the idle phase")
    parser.add_argument("--outage", type=float, default=2.0, help="seconds the primary stays down in the storm")
    parser.add_argument(
        "--restart", type=int, default=5000, help="R, stations under the proxy restart (default 5000, at most 62500)"
    )
    parser.add_argument(
        "--restart-timeout", type=float, default=180.0, help="seconds the restart phase waits for every station"
    )
    parser.add_argument(
        "--cluster", type=int, default=3000, help="C, stations over three instances in the cluster phase (default 3000)"
    )
    parser.add_argument(
        "--phases",
        default=(
            "direct,proxy,naive,node,proxy-tls,naive-tls,haproxy-tls,features,open-loop,"
            "scale,scale-node,scale-features,scale-tls,restart,cluster,routing,outbox,outbox-drain"
        ),
        help="comma-separated subset, in order",
    )
    parser.add_argument(
        "--profile",
        help="write the proxy's cProfile stats to this file (pstats format); the restarted proxy's to FILE.restart",
    )
    parser.add_argument(
        "--node-tool",
        default=DEFAULT_DIRECTORY,
        help="the Node tool's directory, copied and installed at run time (default ../shared/anchors/ocpp-proxy-alert "
        "beside the checkout)",
    )
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="calls a second offered in the open loop (default 2000)"
    )
    parser.add_argument(
        "--open-stations", type=int, default=50, help="stations the open loop spreads its calls over (default 50)"
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=60.0,
        help="seconds between Heartbeats of each held station in the idle phases (default 60)",
    )
    parser.add_argument(
        "--scale-hold",
        type=float,
        default=60.0,
        help="seconds the idle phases send those Heartbeats, p99 reported (default 60; 0: none)",
    )
    parser.add_argument(
        "--features",
        default="debug,traffic-log,three-upstreams,tls-stations,outbox,api-history,cluster",
        help="switches measured by the phases features (CPU per call) and scale-features (RSS per idle station); "
        "see features.py",
    )
    parser.add_argument(
        "--feature-scale", type=int, default=1000, help="idle stations per switch in scale-features (default 1000)"
    )
    parser.add_argument(
        "--drain-backlog", type=int, default=100_000, help="frames in phase outbox-drain's backlog (default 100,000)"
    )
    parser.add_argument(
        "--drain-stations", type=int, default=20, help="stations building the drain's backlog (default 20)"
    )
    parser.add_argument(
        "--drain-live",
        type=int,
        default=20,
        help="stations sending a Heartbeat every 50 ms during the drain, p99 reported (default 20)",
    )
    parser.add_argument("--output", default=os.path.join(HERE, "results.json"))
    asyncio.run(main(parser.parse_args()))
