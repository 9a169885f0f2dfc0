"""
The proxy's service tree, without sockets: the listener is a child service, listen
failures stop start-up with one line, and a child's failure to stop is reported.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.relay.proxy import ProxyService
from ocppproxy.relay.service_tree import ServiceTree


class RefusingReactor(MemoryReactorClock):
    """A reactor whose listenTCP fails as a busy port does."""

    def listenTCP(self, port, factory, backlog=50, interface=""):
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


class BrokenPort:
    """A listening port whose stopListening fails."""

    def getHost(self):
        return "a broken port"

    def stopListening(self):
        return fail(RuntimeError("port would not close"))


class BrokenPortReactor(MemoryReactorClock):
    """A reactor whose ports fail to stop listening."""

    def listenTCP(self, port, factory, backlog=50, interface=""):
        super().listenTCP(port, factory, backlog, interface)
        return BrokenPort()


class ProxyTreeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.log: list[dict] = []
        globalLogPublisher.addObserver(self.log.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.log.append)

    def proxy(self, reactor=None, listen="tcp:port=8080:interface=127.0.0.1") -> ProxyService:
        self.reactor = reactor or MemoryReactorClock()
        config = config_from_mapping({"listen": listen, "primary_url": "ws://127.0.0.1:1/"})
        return ProxyService(config, self.reactor)

    def lines(self, level_name: str) -> list[str]:
        return [formatEvent(event) for event in self.log if event.get("log_level").name == level_name]

    def test_listener_is_a_child_service(self) -> None:
        """The proxy listens through a StreamServerEndpointService child named listener, with the station factory."""
        proxy = self.proxy()
        listener = proxy.getServiceNamed("listener")
        self.assertIsInstance(listener, StreamServerEndpointService)
        proxy.startService()
        ((port, factory, _, interface),) = self.reactor.tcpServers
        self.assertEqual((port, interface, factory), (8080, "127.0.0.1", proxy.factory))
        self.assertTrue(listener.running)

    def test_listening_fires_and_accepting_follows(self) -> None:
        """listening fires with the port; accepting is True from then until stopService begins."""
        proxy = self.proxy()
        self.assertFalse(proxy.accepting)
        proxy.startService()
        port = self.successResultOf(proxy.listening)
        self.assertEqual(port.getHost().port, 8080)
        self.assertTrue(proxy.accepting)
        stopped = proxy.stopService()
        self.assertFalse(proxy.accepting)
        self.assertIsNone(self.successResultOf(stopped))
        self.assertFalse(proxy.getServiceNamed("listener").running)

    def test_stop_twice(self) -> None:
        """stopService may be called again after the proxy stopped."""
        proxy = self.proxy()
        proxy.startService()
        self.successResultOf(proxy.stopService())
        self.assertIsNone(self.successResultOf(proxy.stopService()))

    def test_busy_port_stops_start_up_with_one_line(self) -> None:
        """A listen address that cannot be bound: one critical line naming it, SystemExit(1), listening fails."""
        proxy = self.proxy(RefusingReactor())
        told = []
        proxy.listening.addErrback(told.append)
        with self.assertRaises(SystemExit) as raised:
            proxy.startService()
        self.assertEqual(raised.exception.code, 1)
        (line,) = self.lines("critical")
        self.assertIn("cannot listen on tcp:port=8080:interface=127.0.0.1", line)
        self.assertIn("Address already in use", line)
        self.assertEqual(self.lines("error"), [])  # no second report of the same failure
        self.assertTrue(told[0].check(CannotListenError))
        self.assertFalse(proxy.accepting)
        self.assertIsNone(self.successResultOf(proxy.stopService()))

    def test_systemd_without_socket(self) -> None:
        """listen: systemd:... without an inherited socket: its one critical line, SystemExit(1)."""
        import os

        self.patch(os, "environ", {key: value for key, value in os.environ.items() if not key.startswith("LISTEN_")})
        proxy = self.proxy(listen="systemd:domain=INET:index=0")
        with self.assertRaises(SystemExit):
            proxy.startService()
        (line,) = self.lines("critical")
        self.assertEqual(
            line,
            "cannot listen on systemd:domain=INET:index=0: systemd passed no such socket (is the socket unit active?)",
        )

    def test_listener_failure_at_stop_is_reported(self) -> None:
        """A listener that fails to stop: the stations are still drained, then stopService fails with its error."""
        proxy = self.proxy(BrokenPortReactor())
        proxy.startService()
        failure = self.failureResultOf(proxy.stopService(), RuntimeError)
        self.assertEqual(failure.getErrorMessage(), "port would not close")
        (line,) = self.lines("critical")
        self.assertIn("service listener failed to stop", line)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class Stopping(Service):
    """A child service whose stop is a Deferred the test fires."""

    def __init__(self, name: str, stopped: Deferred) -> None:
        self.setName(name)
        self.stopped = stopped

    def stopService(self) -> Deferred:
        super().stopService()
        return self.stopped


class ServiceTreeTests(SynchronousTestCase):
    def test_first_child_failure_after_all_stopped(self) -> None:
        """A child's failure is not hidden: the tree fails with it, but only once every child has stopped."""
        log: list[dict] = []
        globalLogPublisher.addObserver(log.append)
        self.addCleanup(globalLogPublisher.removeObserver, log.append)
        tree = ServiceTree()
        slow, broken = Deferred(), fail(ValueError("cannot stop"))
        Stopping("slow", slow).setServiceParent(tree)
        Stopping("broken", broken).setServiceParent(tree)
        tree.startService()
        stopped = tree.stopService()
        self.assertNoResult(stopped)
        slow.callback(None)
        self.failureResultOf(stopped, ValueError)
        self.assertEqual([formatEvent(event) for event in log], ["service broken failed to stop"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_all_children_stopped(self) -> None:
        """Without a failure the tree fires with None; children stop the last added first."""
        tree = ServiceTree()
        order = []
        for name in ("first", "second"):
            child = Stopping(name, succeed(None))
            child.stopService = lambda child=child: order.append(child.name) or succeed(None)
            child.setServiceParent(tree)
        tree.startService()
        self.assertIsNone(self.successResultOf(tree.stopService()))
        self.assertEqual(order, ["second", "first"])
