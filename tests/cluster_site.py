"""
A cluster as operators run it, for tests: real instances under ``twistd`` (the installed
package and plugin), a real haproxy with the directives of etc/haproxy.cfg in front, and
stations that come back through it when their connection drops.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections import Counter

import websockets
from ocpp.v16 import call

from .peers import WAIT, CentralSystem, connect_station
from .redisserver import free_port
from .system.test_haproxy import EXAMPLE, for_test, haproxy_binary

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
# The check interval of etc/haproxy.cfg (inter 1s), and how many failed checks mark a server down (fall 2).
CHECK_INTERVAL, CHECK_FALL = 1.0, 2


class Instance:
    """One ``twistd -n ocppproxy`` process; its ports are read from its log, every line of which is kept."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.port = self.status_port = None
        self._reader: asyncio.Task | None = None

    async def start(self, config_path: str) -> None:
        """Start it; returns once it listens for stations and serves its status (bounded)."""
        # No PYTHONPATH: the installed package and plugin run, as for operators.
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        self.process = await asyncio.create_subprocess_exec(
            TWISTD, "-n", "--pidfile=", "ocppproxy", "-c", config_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        listening, status = asyncio.Event(), asyncio.Event()

        async def read() -> None:
            while line := await self.process.stdout.readline():
                text = line.decode("utf-8", "replace")
                self.lines.append(text)
                if found := re.search(r"ocppproxy listening on .*port=(\d+)", text):
                    self.port = int(found.group(1))
                    listening.set()
                if found := re.search(r"status page on .*port=(\d+)", text):
                    self.status_port = int(found.group(1))
                    status.set()

        self._reader = asyncio.ensure_future(read())
        try:
            await asyncio.wait_for(asyncio.gather(listening.wait(), status.wait()), WAIT)
        except TimeoutError:
            raise AssertionError(f"{self.name} did not start: {''.join(self.lines)[-2000:]}") from None

    def logged(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def kill(self) -> None:
        """kill -9, and reap it."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(self.process.wait(), WAIT)

    async def stop(self) -> None:
        """SIGTERM (the clean drain), SIGKILL if it lingers; reaps it and its log reader."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), WAIT)
            except TimeoutError:
                await self.kill()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, WAIT)


def instance_config(
    name: str, redis_url: str, primary_url: str, secondary_url: str | None, port: int = 0, status_port: int = 0
) -> str:
    """An instance's YAML: its ports (0: chosen by the system), the status page for HAProxy's checks, cluster mode."""
    text = (
        f'listen: "tcp:port={port}:interface=127.0.0.1"\n'
        f'primary_url: "{primary_url}"\n'
        f'status: {{listen: "tcp:port={status_port}:interface=127.0.0.1"}}\n'
        "trusted_proxies: [127.0.0.1]\n"
        "reconnect: {initial_delay: 0.2, max_delay: 1}\n"
        f'cluster: {{redis_url: "{redis_url}", instance: "{name}", ownership_ttl: 3}}\n'
    )
    if secondary_url:
        text += f'secondary_url: "{secondary_url}"\n'
    return text


class HAProxy:
    """haproxy in the foreground with etc/haproxy.cfg's directives, in front of started instances."""

    def __init__(self) -> None:
        self.binary = haproxy_binary()
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.admin_socket: str | None = None

    @property
    def base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self, path: str, instances: list[Instance], admin_socket: str | None = None) -> None:
        """Start it; C{admin_socket}: a path for its runtime API (the example's C{stats socket}, level admin)."""
        with open(EXAMPLE, encoding="utf-8") as stream:
            text = for_test(stream.read(), self.port, [(i.name, i.port, i.status_port) for i in instances])
        if admin_socket:
            text = text.replace("global\n", f"global\n    stats socket {admin_socket} mode 600 level admin\n", 1)
        self.admin_socket = admin_socket
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "-db", "-f", path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), WAIT)

    async def runtime(self, command: str) -> str:
        """One command on the runtime API, as C{echo COMMAND | socat stdio SOCKET} sends it; its answer."""
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.admin_socket), WAIT)
        writer.write(command.encode() + b"\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), WAIT)
        writer.close()
        await writer.wait_closed()
        return answer.decode().strip()


class ConnectionCounting(CentralSystem):
    """A central system that counts, per station id, its open connections, and the most it ever had open at once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.open_now: Counter[str] = Counter()
        self.most_open: Counter[str] = Counter()

    async def _handle(self, websocket) -> None:
        station = websocket.request.path.rsplit("/", 1)[-1]
        self.open_now[station] += 1
        self.most_open[station] = max(self.most_open[station], self.open_now[station])
        try:
            await super()._handle(websocket)
        finally:
            self.open_now[station] -= 1

    def received(self, station: str, action: str) -> list[dict]:
        """The bodies of the C{action} CALLs that reached this central system from C{station}, in order."""
        return [
            frame[3]
            for connection in self.connections
            if connection.path.endswith("/" + station)
            for frame in connection.session.received
            if frame[:1] == [2] and frame[2] == action
        ]


async def connect_through(base: str, station_id: str, retry_delay: float, timeout: float = WAIT):
    """
    Connect C{station_id} as a station does: on a refused connection or handshake, try
    again after C{retry_delay} seconds, for at most C{timeout}; returns (station, websocket).
    """
    loop = asyncio.get_event_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            station, websocket, _ = await connect_station(base, station_id)
            return station, websocket
        except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed, TimeoutError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(retry_delay)


async def boot(station) -> None:
    await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
