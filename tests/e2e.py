"""Shared plumbing for end-to-end tests: the real proxy service on 127.0.0.1 and asyncio peers."""

from __future__ import annotations

import asyncio
import functools

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, TestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.daemon.tap import build_services
from ocppproxy.fastpath import FastPath
from ocppproxy.relay.proxy import ProxyService


def needs_asyncio_reactor() -> None:
    if "asyncio" not in type(reactor).__module__:
        raise SkipTest("end-to-end tests need trial --reactor=asyncio (make test uses it)")


async def autobahn_timers_settled(timeout: float = 2.0) -> None:
    """
    Let Autobahn's timer buckets fire (at most C{timeout} seconds): they run in 0.2 s
    buckets on the global reactor (through txaio), and a bucket's reactor call outlives
    a connection dropped just now (a refused handshake, say), or made by a test that
    ran on a Clock.
    """
    loop = asyncio.get_event_loop()
    deadline = loop.time() + timeout
    while any("_notify_bucket" in repr(call) for call in reactor.getDelayedCalls()):
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.05)


def async_test(method):
    """Run an `async def` test method on the asyncio reactor's loop."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        return Deferred.fromFuture(asyncio.ensure_future(method(self, *args, **kwargs)))

    return run


# What the daemon runs on where the installed Autobahn and Twisted have every name the fast
# path uses (tests/system/test_internals.py checks they do).
FAST_PATH = FastPath()


class ProxyTestCase(TestCase):
    """Starts a real ProxyService per test and captures its log lines."""

    timeout = 30

    def setUp(self) -> None:
        needs_asyncio_reactor()
        self.log_lines: list[str] = []

        def observe(event):
            self.log_lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    async def start_proxy(self, fast_path: FastPath | None = FAST_PATH, **settings) -> str:
        """
        Start the proxy with C{settings}, on the fast path as the daemon would be (on the
        stock paths with C{fast_path=None}); returns the ws:// base URL stations connect to.
        """
        raw = {"listen": "tcp:port=0:interface=127.0.0.1", "reconnect": {"initial_delay": 0.2, "max_delay": 1.0}}
        raw.update(settings)
        config = config_from_mapping(raw)
        self.proxy = ProxyService(config, reactor, fast_path=fast_path)
        self.proxy.startService()
        self.addCleanup(self._stop_proxy)
        port = await Deferred.asFuture(self.proxy.listening, asyncio.get_event_loop())
        return f"ws://127.0.0.1:{port.getHost().port}/"

    async def start_services(self, **settings) -> str:
        """
        Start the daemon's whole service tree (notifier, traffic log, status, proxy) with
        C{settings}, as twistd would; returns the ws:// base URL. C{self.services} is the tree.
        """
        raw = {"listen": "tcp:port=0:interface=127.0.0.1", "reconnect": {"initial_delay": 0.2, "max_delay": 1.0}}
        raw.update(settings)
        config = config_from_mapping(raw)
        self.services = build_services(config, reactor, fast_path=FAST_PATH)
        self.proxy = self.services.getServiceNamed("proxy")
        self.services.startService()
        self.addCleanup(lambda: self.services.running and self.services.stopService())
        port = await Deferred.asFuture(self.proxy.listening, asyncio.get_event_loop())
        return f"ws://127.0.0.1:{port.getHost().port}/"

    def start_tree(self, raw: dict):
        """
        Build and start a whole service tree for the configuration mapping C{raw}, as
        twistd would, stopped (and Autobahn's timers left to settle) at cleanup; returns it.
        Tests of several instances start one per instance.
        """
        config = config_from_mapping(raw)
        services = build_services(config, reactor, fast_path=FAST_PATH)
        services.startService()
        self.addCleanup(self._stop_tree, services)
        return services

    def _stop_tree(self, services) -> Deferred:
        async def stop() -> None:
            if services.running:
                await Deferred.asFuture(services.stopService(), asyncio.get_event_loop())
            await autobahn_timers_settled()

        return Deferred.fromFuture(asyncio.ensure_future(stop()))

    def _stop_proxy(self) -> Deferred:
        stopped = self.proxy.stopService() if self.proxy.running else None
        return Deferred.fromFuture(asyncio.ensure_future(self._after(stopped)))

    async def _after(self, stopped) -> None:
        if stopped is not None:
            await Deferred.asFuture(stopped, asyncio.get_event_loop())
        await autobahn_timers_settled()

    async def until(self, condition, timeout: float = 10.0) -> None:
        """Wait at most C{timeout} seconds for C{condition()} to hold, checking every 10 ms."""
        loop = asyncio.get_event_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)

    def logged(self, text: str) -> list[str]:
        return [line for line in self.log_lines if text in line]
