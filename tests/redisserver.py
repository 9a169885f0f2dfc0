"""A real redis-server on 127.0.0.1 for cluster tests, started, killed and restarted by the test."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import tempfile

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest

START_TIMEOUT = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """
    C{redis-server} without persistence on a free port; L{start} waits (bounded) until it
    accepts connections. Raises SkipTest naming the binary when it is not installed.
    """

    def __init__(
        self, unix_socket: bool = False, password: str | None = None, database: int = 0, tls: dict | None = None
    ) -> None:
        """
        C{tls}: the paths of L{tests.certs.make_ca_and_server_cert}: the server then speaks
        only TLS (rediss://), without asking for client certificates.
        """
        self.binary = shutil.which("redis-server")
        self.cli = shutil.which("redis-cli")
        if self.binary is None or self.cli is None:
            raise SkipTest("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="ocppproxy-redis-")
        self.process: asyncio.subprocess.Process | None = None
        self.socket = os.path.join(self.directory, "redis.sock") if unix_socket else None
        self.password = password
        self.database = database
        self.tls = tls

    @property
    def url(self) -> str:
        """The cluster.redis_url of this server (with its password and database)."""
        if self.socket:
            return f"unix://{self.socket}"
        credentials = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{credentials}127.0.0.1:{self.port}/{self.database}"

    def _connection_args(self) -> list[str]:
        where = ["-s", self.socket] if self.socket else ["-h", "127.0.0.1", "-p", str(self.port)]
        where += ["-n", str(self.database)]
        if self.tls:
            where += ["--tls", "--cacert", self.tls["ca.pem"]]
        return where + (["-a", self.password, "--no-auth-warning"] if self.password else [])

    async def start(self) -> None:
        """Start (or restart) the server on its port; fires once it answers PING."""
        port = "0" if self.socket or self.tls else str(self.port)
        command = [self.binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.tls:
            command += ["--tls-port", str(self.port), "--tls-cert-file", self.tls["server.pem"]]
            command += [
                "--tls-key-file",
                self.tls["server-key.pem"],
                "--tls-ca-cert-file",
                self.tls["ca.pem"],
                "--tls-auth-clients",
                "no",
            ]
        if self.socket:
            command += ["--unixsocket", self.socket, "--unixsocketperm", "700"]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = await asyncio.create_subprocess_exec(
            *command, cwd=self.directory, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        loop = asyncio.get_event_loop()
        deadline = loop.time() + START_TIMEOUT
        while await self.command("PING") != "PONG":
            if loop.time() > deadline or self.process.returncode is not None:
                raise AssertionError(f"redis-server did not start on port {self.port}")
            await asyncio.sleep(0.05)

    async def kill(self) -> None:
        """Kill the server (SIGKILL) and reap it."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()  # SIGKILL ends a stopped process too
            await asyncio.wait_for(self.process.wait(), START_TIMEOUT)
        self.process = None

    def freeze(self) -> None:
        """Stop the server (SIGSTOP): it keeps its connections and accepts new ones, but answers nothing."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server go on (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> Deferred:
        """For cleanups: kill the server and remove its directory; fires when done."""

        async def stop() -> None:
            await self.kill()
            shutil.rmtree(self.directory, ignore_errors=True)

        return Deferred.fromFuture(asyncio.ensure_future(stop()))

    async def command(self, *args: str) -> str:
        """One command through redis-cli (a real client), its raw answer without the final newline."""
        cli = await asyncio.create_subprocess_exec(
            self.cli,
            *self._connection_args(),
            "--raw",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(cli.communicate(), START_TIMEOUT)
        return output.decode().rstrip("\n")


class RedisTestMixin:
    """For a test case: C{cleanup(stop)} runs the coroutine function C{stop} at cleanup;
    C{start_redis()} a L{RedisServer}, stopped at cleanup."""

    def cleanup(self, stop) -> None:
        """Run the coroutine function C{stop} at cleanup."""
        self.addCleanup(lambda: Deferred.fromFuture(asyncio.ensure_future(stop())))

    async def start_redis(self) -> RedisServer:
        redis = RedisServer()
        self.addCleanup(redis.stop)
        await redis.start()
        return redis
