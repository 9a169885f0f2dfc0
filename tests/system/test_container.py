"""
The container image (Containerfile) built and run with podman: the first start fills
an empty /config, the daemon relays for a real station, the HEALTHCHECK passes, and
``podman stop`` drains (close code 1001) and exits 0.

``make container-test`` builds the image and runs this module with the image's name in
``OCPPPROXY_TEST_IMAGE``; ``make test`` skips it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import socket
import uuid

from ocpp.v16 import call
from twisted.trial.unittest import SkipTest

from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station

IMAGE = os.environ.get("OCPPPROXY_TEST_IMAGE")
START = 60.0  # seconds for a container to start and its daemon to listen


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def podman_command() -> list[str]:
    """podman, with runc where installed (Debian 12's crun cannot run on hybrid cgroups)."""
    return ["podman", *(["--runtime", "runc"] if shutil.which("runc") else [])]


def resource_limits() -> list[str]:
    """
    The container's rlimits, no higher than this process's own: podman asks for more by
    default, which a sandbox without CAP_SYS_RESOURCE refuses. The daemon needs a few
    processes (threads) and many files.
    """
    options = []
    for name, which, enough in (("nofile", resource.RLIMIT_NOFILE, 65536), ("nproc", resource.RLIMIT_NPROC, 4096)):
        soft, _ = resource.getrlimit(which)
        limit = enough if soft == resource.RLIM_INFINITY else min(soft, enough)
        options += ["--ulimit", f"{name}={limit}:{limit}"]
    return options


class ContainerTests(ProxyTestCase):
    timeout = 120

    def setUp(self) -> None:
        if not IMAGE:
            raise SkipTest("run by make container-test, which builds the image with podman")
        if shutil.which("podman") is None:
            raise SkipTest("podman is not installed (Debian: apt-get install podman)")
        super().setUp()

    async def podman(self, *arguments: str, timeout: float = WAIT) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            *podman_command(), *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
        return process.returncode, output.decode("utf-8", "replace")

    def config_dir(self) -> str:
        """An empty directory for /config that the image's user (uid 10001) may write."""
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        os.chmod(path, 0o777)
        return path

    async def run_container(self, config_dir: str, network: str) -> str:
        name = f"ocppproxy-test-{uuid.uuid4().hex[:8]}"
        self.addCleanup(lambda: asyncio.ensure_future(self.podman("rm", "--force", name)))
        status, output = await self.podman(
            "run", "--detach", "--name", name, f"--network={network}", "--health-interval=disable",
            *resource_limits(), "--volume", f"{config_dir}:/config", IMAGE,
        )
        self.assertEqual(status, 0, output)
        await self.until_logged(name, "ocppproxy listening on")
        return name

    async def until_logged(self, name: str, text: str) -> str:
        loop = asyncio.get_event_loop()
        deadline = loop.time() + START
        while True:
            _, output = await self.podman("logs", name)
            if text in output:
                return output
            if loop.time() > deadline:
                raise AssertionError(f"{text!r} not in the container's log: {output}")
            await asyncio.sleep(0.2)

    async def stop(self, name: str) -> tuple[int, str]:
        """``podman stop``: SIGTERM, SIGKILL after 10 s; the exit code (0 only if it drained in time) and the log."""
        status, output = await self.podman("stop", "--time", "10", name, timeout=30)
        self.assertEqual(status, 0, output)
        _, code = await self.podman("inspect", name, "--format", "{{.State.ExitCode}}")
        _, log = await self.podman("logs", name)
        return int(code.strip()), log

    @async_test
    async def test_first_start_copies_the_default_configuration(self):
        """An empty /config gets the default ocppproxy.yaml and client names; the daemon starts on them."""
        config_dir = self.config_dir()
        name = await self.run_container(config_dir, "none")
        self.assertEqual(sorted(os.listdir(config_dir)), ["client-names.yaml", "ocppproxy.yaml"])
        with open(os.path.join(config_dir, "ocppproxy.yaml")) as config:
            self.assertIn("primary_url:", config.read())
        code, log = await self.stop(name)
        self.assertEqual(code, 0, log)
        self.assertIn("copied the default configuration to /config/ocppproxy.yaml", log)

    @async_test
    async def test_relays_is_healthy_and_drains_on_stop(self):
        """A station boots through the container; the HEALTHCHECK passes; podman stop closes it with 1001, exit 0."""
        central = CentralSystem(100)
        central_port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        config_dir = self.config_dir()
        listen_port, status_port = free_port(), free_port()
        with open(os.path.join(config_dir, "ocppproxy.yaml"), "w") as config:
            config.write(
                f'listen: "tcp:port={listen_port}:interface=127.0.0.1"\n'
                f'primary_url: "ws://127.0.0.1:{central_port}/ocpp/"\n'
                f'status:\n  listen: "tcp:port={status_port}:interface=127.0.0.1"\n'
            )
        name = await self.run_container(config_dir, "host")
        station, websocket, _ = await connect_station(f"ws://127.0.0.1:{listen_port}/", "CP_CONTAINER")
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        status, output = await self.podman("healthcheck", "run", name)
        self.assertEqual(status, 0, output)
        code, log = await self.stop(name)
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1001)
        self.assertEqual(code, 0, log)
        self.assertNotIn("client-names.yaml", os.listdir(config_dir))
