"""
The cluster demo (``make cluster-demo``): Redis, HAProxy and three ocppproxy instances
on 127.0.0.1, six demo stations charging through them, one instance killed.

Starts ``redis-server``, the demo central systems (a primary whose transaction ids count
from 1, a secondary whose ids count from 5001), three ``twistd -n ocppproxy`` instances in
cluster mode (proxy-a, proxy-b, proxy-c), and ``haproxy`` with the directives of
etc/haproxy.cfg in front of them, all on free ports. Six stations connect through
HAProxy, boot and start a transaction each; the instance holding the most of them is
killed with SIGKILL; its stations reconnect through HAProxy and land on the others; one of
them stops its transaction, and the demo checks that the primary got the primary's id and
the secondary its own. Then everything is stopped. Exits 0 when all of that worked; no
step waits longer than a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile

import websockets
from central_system import CentralSystem
from ocpp.v16 import ChargePoint, call
from run_demo import TWISTD, DemoError, port_accepts
from station import ID_TAG, now

HERE = os.path.dirname(os.path.abspath(__file__))
HAPROXY_EXAMPLE = os.path.join(os.path.dirname(HERE), "etc", "haproxy.cfg")
INSTANCES = ("proxy-a", "proxy-b", "proxy-c")
STATIONS = [f"DEMO-CP-{number}" for number in range(1, 7)]
STEP_TIMEOUT = 10.0
# A station waits this long before it reconnects, as real ones do (most wait longer).
RETRY_DELAY = 1.0
STOP_TIMEOUT = 15.0

log = logging.getLogger("cluster-demo")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def until(check, what: str, timeout: float = STEP_TIMEOUT):
    """Call the coroutine function C{check} every 50 ms until it returns something true; at most C{timeout} s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (result := await check()):
        if loop.time() > deadline:
            raise DemoError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.05)
    return result


class Processes:
    """The demo's child processes: each one's output printed with its name in front, all stopped at the end."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.subprocess.Process] = {}
        self._readers: list[asyncio.Task] = []

    async def start(self, name: str, *command: str, env=None, quiet: bool = False) -> asyncio.subprocess.Process:
        """Start C{command}; with C{quiet}, its output is not shown."""
        output = asyncio.subprocess.DEVNULL if quiet else asyncio.subprocess.PIPE
        process = await asyncio.create_subprocess_exec(
            *command, stdout=output, stderr=asyncio.subprocess.STDOUT, env=env
        )
        self.running[name] = process
        if not quiet:
            self._readers.append(asyncio.ensure_future(self._print(name, process)))
        return process

    async def _print(self, name: str, process: asyncio.subprocess.Process) -> None:
        output = logging.getLogger(name)
        while line := await process.stdout.readline():
            output.info("%s", line.decode("utf-8", "replace").rstrip())

    async def kill(self, name: str) -> None:
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)

    async def stop_all(self) -> None:
        """SIGTERM to each, SIGKILL to any still there after STOP_TIMEOUT."""
        for process in self.running.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.running.items():
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.error("%s did not exit within %g s, killing it", name, STOP_TIMEOUT)
                process.kill()
                await process.wait()
        self.running.clear()
        await asyncio.wait_for(asyncio.gather(*self._readers, return_exceptions=True), STOP_TIMEOUT)


class Redis:
    """redis-server without persistence on a free port, and redis-cli to read it."""

    def __init__(self, processes: Processes) -> None:
        self.server, self.cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if self.server is None or self.cli is None:
            raise DemoError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._processes = processes

    async def start(self, directory: str) -> None:
        command = [self.server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        await self._processes.start("redis", *command, "--dir", directory, quiet=True)
        await until(lambda: self.command("PING"), "redis-server answering PING")
        log.info("Redis listening on %s", self.url)

    async def command(self, *args: str) -> str:
        cli = await asyncio.create_subprocess_exec(
            self.cli, "-p", str(self.port), "--raw", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(cli.communicate(), STEP_TIMEOUT)
        return output.decode().strip()

    async def holder(self, station_id: str) -> str:
        """The instance that holds C{station_id}'s claim ("<order> <instance> <serial>"), or ''."""
        fields = (await self.command("GET", f"ocppproxy:station:{station_id}")).split(" ")
        return fields[1] if len(fields) == 3 else ""


async def start_instance(processes: Processes, name: str, directory: str, redis: Redis, urls) -> tuple[int, int]:
    """One instance under twistd in cluster mode on free ports; returns (station port, status port) once it listens."""
    port, status_port = free_port(), free_port()
    config = os.path.join(directory, f"{name}.yaml")
    with open(config, "w", encoding="utf-8") as out:
        out.write(
            f'listen: "tcp:port={port}:interface=127.0.0.1"\n'
            f'primary_url: "{urls[0]}"\n'
            f'secondary_url: "{urls[1]}"\n'
            f'status: {{listen: "tcp:port={status_port}:interface=127.0.0.1"}}\n'
            "trusted_proxies: [127.0.0.1]\n"
            "reconnect: {initial_delay: 0.5, max_delay: 2}\n"
            f'cluster: {{redis_url: "{redis.url}", instance: "{name}", ownership_ttl: 6}}\n'
        )
    # No PYTHONPATH: the installed package and plugin run, as for users.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    await processes.start(name, TWISTD, "-n", "--pidfile=", "ocppproxy", "-c", config, env=env)
    await until(lambda: port_accepts(port), f"{name} listening on port {port}")
    return port, status_port


async def start_haproxy(processes: Processes, directory: str, servers) -> int:
    """haproxy in the foreground with etc/haproxy.cfg's directives in front of C{servers}; returns its port."""
    binary = shutil.which("haproxy")
    if binary is None:
        raise DemoError("haproxy is not installed (Debian: apt-get install haproxy)")
    port = free_port()
    with open(HAPROXY_EXAMPLE, encoding="utf-8") as stream:
        text = stream.read()
    # What only a real site has: syslog, the runtime socket, its addresses.
    text = re.sub(r"(?m)^    (log /dev/log|stats socket) .*\n", "", text)
    text = re.sub(r"(?m)^    maxconn \d+$", "    maxconn 1000", text)
    text = re.sub(r"(?m)^    bind :9000$", f"    bind 127.0.0.1:{port}", text)
    text = re.sub(r"(?m)^    server .*\n", "", text)
    text += "".join(f"    server {name} 127.0.0.1:{p} port {status}\n" for name, p, status in servers)
    path = os.path.join(directory, "haproxy.cfg")
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
    await processes.start("haproxy", binary, "-db", "-f", path)
    await until(lambda: port_accepts(port), f"haproxy listening on port {port}")
    log.info("HAProxy listening on ws://127.0.0.1:%s/<stationId>, hashing on the station id", port)
    return port


class DemoStation:
    """A charging station that reconnects through HAProxy when its connection drops, and boots again."""

    def __init__(self, base: str, station_id: str) -> None:
        self.id = station_id
        self.url = base + station_id
        self.charge_point: ChargePoint | None = None
        self.websocket = None
        self.transaction_id: int | None = None
        self._reader: asyncio.Task | None = None

    async def connect(self) -> None:
        """Connect (trying again every RETRY_DELAY seconds, for at most STEP_TIMEOUT) and boot."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP_TIMEOUT
        while True:
            try:
                self.websocket = await websockets.connect(self.url, subprotocols=["ocpp1.6"], open_timeout=STEP_TIMEOUT)
                break
            except (OSError, websockets.InvalidHandshake, TimeoutError) as error:
                if loop.time() > deadline:
                    raise DemoError(f"{self.id} could not connect: {error}") from None
                await asyncio.sleep(RETRY_DELAY)
        self.charge_point = ChargePoint(self.id, self.websocket, response_timeout=STEP_TIMEOUT)
        self._reader = asyncio.ensure_future(self.charge_point.start())
        await self.charge_point.call(call.BootNotification(charge_point_vendor="Demo", charge_point_model="Cluster"))

    async def start_charging(self) -> None:
        started = await self.charge_point.call(
            call.StartTransaction(connector_id=1, id_tag=ID_TAG, meter_start=1000, timestamp=now())
        )
        self.transaction_id = started.transaction_id

    async def come_back(self) -> None:
        """Wait for the connection to drop, then reconnect after RETRY_DELAY, as a station does."""
        await asyncio.wait_for(self.websocket.wait_closed(), STEP_TIMEOUT)
        log.info(
            "%s lost its connection (code %s); reconnecting in %g s", self.id, self.websocket.close_code, RETRY_DELAY
        )
        await self.close()
        await asyncio.sleep(RETRY_DELAY)
        await self.connect()

    async def stop_charging(self) -> None:
        await self.charge_point.call(
            call.StopTransaction(meter_stop=2500, timestamp=now(), transaction_id=self.transaction_id)
        )

    async def close(self) -> None:
        if self.websocket is not None:
            await self.websocket.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await self._reader


async def where(redis: Redis, stations) -> dict[str, str]:
    """Which instance holds each station, once Redis names one for every station."""

    async def holders():
        found = {station.id: await redis.holder(station.id) for station in stations}
        return found if all(found.values()) else None

    return await until(holders, "every station claimed in Redis")


async def demo(directory: str) -> int:
    processes = Processes()
    systems = [
        CentralSystem("primary", free_port()),
        CentralSystem("secondary", free_port(), first_transaction_id=5001),
    ]
    stations: list[DemoStation] = []
    try:
        redis = Redis(processes)
        await redis.start(directory)
        for system in systems:
            await system.start()
        urls = [f"ws://127.0.0.1:{system.port}/ocpp/" for system in systems]
        servers = []
        for name in INSTANCES:
            port, status_port = await start_instance(processes, name, directory, redis, urls)
            servers.append((name, port, status_port))
        base = f"ws://127.0.0.1:{await start_haproxy(processes, directory, servers)}/"

        log.info("=== %d stations boot and start charging through HAProxy", len(STATIONS))
        stations = [DemoStation(base, station_id) for station_id in STATIONS]
        for station in stations:
            await station.connect()
            await station.start_charging()
        before = await where(redis, stations)
        for station in stations:
            log.info("%s is on %s, transaction %s", station.id, before[station.id], station.transaction_id)

        victim = max(INSTANCES, key=lambda name: list(before.values()).count(name))
        moving = [station for station in stations if before[station.id] == victim]
        log.info("=== kill -9 %s, which holds %s", victim, ", ".join(station.id for station in moving))
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        await processes.kill(victim)
        await asyncio.gather(*(station.come_back() for station in moving))
        log.info("=== its %d stations reconnected through HAProxy in %.1f s", len(moving), loop.time() - killed_at)
        after = await until(
            lambda: _moved(redis, moving, victim), f"the stations of {victim} claimed by another instance"
        )
        for station in moving:
            log.info("%s is now on %s", station.id, after[station.id])

        chosen = moving[0]
        secondary_id = systems[1].started[chosen.id]
        log.info(
            "=== %s stops transaction %s (the secondary knows it as %s) through %s",
            chosen.id,
            chosen.transaction_id,
            secondary_id,
            after[chosen.id],
        )
        await chosen.stop_charging()
        await until(_async(lambda: chosen.id in systems[1].stopped), "the secondary receiving the StopTransaction")
        got = (systems[0].stopped.get(chosen.id), systems[1].stopped.get(chosen.id))
        if got != ([chosen.transaction_id], [secondary_id]):
            raise DemoError(
                f"StopTransaction ids: primary {got[0]}, secondary {got[1]}; expected {chosen.transaction_id}"
                f" and {secondary_id}"
            )
        log.info("primary got StopTransaction %s, secondary got StopTransaction %s: the right ids", *got)
        log.info("=== cluster demo done; stopping everything")
        return 0
    except (DemoError, OSError, TimeoutError, websockets.WebSocketException) as error:
        log.error("cluster demo failed: %s", str(error) or type(error).__name__)
        return 1
    finally:
        for station in stations:
            await station.close()
        await processes.stop_all()
        for system in systems:
            await system.stop()


async def _moved(redis: Redis, moving, victim: str):
    found = {station.id: await redis.holder(station.id) for station in moving}
    return found if all(holder and holder != victim for holder in found.values()) else None


def _async(condition):
    async def check():
        return condition()

    return check


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    for noisy in ("ocpp", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="ocppproxy-cluster-demo-") as directory:
        try:
            return asyncio.run(demo(directory))
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
