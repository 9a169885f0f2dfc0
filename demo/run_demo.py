"""
The ocppproxy demo: two central systems, the proxy under twistd, one charging station.

Starts the demo central systems (primary on 127.0.0.1:9001, secondary on 9002), runs
``twistd -n --pidfile= ocppproxy -c demo/demo.yaml`` (proxy on 127.0.0.1:9000, its
debug log on this terminal), waits until the proxy accepts connections, runs one
charging session of the simulated station DEMO-CP-1, then stops the proxy with SIGTERM
and everything else. Exits 0 when all of that worked. Run it with ``make demo``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

import websockets
from central_system import CentralSystem
from station import run_station

HERE = os.path.dirname(os.path.abspath(__file__))
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
PROXY_PORT = 9000
STARTUP_TIMEOUT = 10.0
SESSION_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

log = logging.getLogger("demo")


class DemoError(Exception):
    """Something the demo needs did not work; the message says what."""


async def port_accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:C{port}."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def start_proxy() -> asyncio.subprocess.Process:
    """Run the installed twistd plugin with demo/demo.yaml; returns once it listens."""
    if await port_accepts(PROXY_PORT):
        raise DemoError(f"something already listens on 127.0.0.1:{PROXY_PORT}; stop it first")
    # No PYTHONPATH: the installed package and plugin run, as for users. Unbuffered so
    # the proxy's log lines interleave with ours as they happen.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    config = os.path.join(HERE, "demo.yaml")
    log.info("starting %s -n --pidfile= ocppproxy -c %s", TWISTD, os.path.relpath(config))
    proxy = await asyncio.create_subprocess_exec(TWISTD, "-n", "--pidfile=", "ocppproxy", "-c", config, env=env)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_TIMEOUT
    while not await port_accepts(PROXY_PORT):
        if proxy.returncode is not None:
            raise DemoError(f"the proxy exited with status {proxy.returncode} during start-up")
        if loop.time() > deadline:
            await stop_proxy(proxy)
            raise DemoError(f"the proxy did not listen on port {PROXY_PORT} within {STARTUP_TIMEOUT:g} s")
        await asyncio.sleep(0.1)
    return proxy


async def stop_proxy(proxy: asyncio.subprocess.Process) -> int:
    """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT; returns its status."""
    if proxy.returncode is None:
        log.info("stopping the proxy (SIGTERM)")
        proxy.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proxy.wait(), STOP_TIMEOUT)
        except TimeoutError:
            log.error("the proxy did not exit within %g s, killing it", STOP_TIMEOUT)
            proxy.kill()
            await proxy.wait()
    return proxy.returncode


async def demo() -> int:
    systems = [CentralSystem("primary", 9001), CentralSystem("secondary", 9002, first_transaction_id=5001)]
    proxy = None
    try:
        for system in systems:
            await system.start()
        proxy = await start_proxy()
        await asyncio.wait_for(run_station(f"ws://127.0.0.1:{PROXY_PORT}/DEMO-CP-1"), SESSION_TIMEOUT)
        # Let the proxy log the station's disconnection before it is stopped.
        await asyncio.sleep(0.5)
        status = await stop_proxy(proxy)
        if status != 0:
            raise DemoError(f"the proxy exited with status {status} after SIGTERM")
        log.info("the proxy exited with status 0; demo done")
        return 0
    except (DemoError, OSError, TimeoutError, websockets.WebSocketException) as error:
        log.error("demo failed: %s", str(error) or type(error).__name__)
        return 1
    finally:
        if proxy is not None:
            await stop_proxy(proxy)
        for system in systems:
            await system.stop()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    # The proxy's debug log already shows every frame; the libraries need not repeat them.
    for noisy in ("ocpp", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return asyncio.run(demo())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
