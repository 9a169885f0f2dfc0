"""sd_notify over a real AF_UNIX datagram socket, with time from a Clock."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.daemon.systemd import SystemdNotifier, SystemdService, notify_address, watchdog_interval


class FakePort:
    def getHost(self):
        return "IPv4Address(type='TCP', host='127.0.0.1', port=9000)"


class NotifySocketTestCase(SynchronousTestCase):
    def bind(self, abstract: bool = False) -> str:
        """Bind a datagram socket playing systemd; returns the C{$NOTIFY_SOCKET} value."""
        self.receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(self.receiver.close)
        self.receiver.setblocking(False)
        if abstract:
            name = f"ocppproxy-test-{os.getpid()}-{id(self)}"
            self.receiver.bind("\0" + name)
            return "@" + name
        # A short directory: AF_UNIX paths are limited to 108 bytes, trial's are long.
        directory = tempfile.mkdtemp(prefix="ocppproxy-")
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "notify")
        self.receiver.bind(path)
        return path

    def received(self) -> list[str]:
        """The datagrams received so far."""
        datagrams = []
        while True:
            try:
                datagrams.append(self.receiver.recv(4096).decode())
            except BlockingIOError:
                return datagrams


class EnvironmentTests(SynchronousTestCase):
    def test_notify_address(self):
        """A path is used as is, an @name is an abstract socket, anything else is no systemd."""
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}), "/run/systemd/notify")
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "@sd"}), "\0sd")
        self.assertIsNone(notify_address({}))
        self.assertIsNone(notify_address({"NOTIFY_SOCKET": "vsock:2:1234"}))

    def test_watchdog_interval_is_half_the_timeout(self):
        """WATCHDOG_USEC=30000000 means a WATCHDOG=1 every 15 s."""
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42), 15.0)
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42), 15.0)

    def test_watchdog_off(self):
        """No watchdog without WATCHDOG_USEC, with a bad one, or when it is another process's."""
        self.assertIsNone(watchdog_interval({}, 42))
        self.assertIsNone(watchdog_interval({"WATCHDOG_USEC": "soon"}, 42))
        self.assertIsNone(watchdog_interval({"WATCHDOG_USEC": "0"}, 42))
        self.assertIsNone(watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "41"}, 42))


class NotifierTests(NotifySocketTestCase):
    def test_send_to_a_path(self):
        """A state is one datagram on the socket."""
        address = self.bind()
        self.assertTrue(SystemdNotifier(notify_address({"NOTIFY_SOCKET": address})).send("READY=1"))
        self.assertEqual(self.received(), ["READY=1"])

    def test_send_to_an_abstract_socket(self):
        """An @name in NOTIFY_SOCKET reaches the abstract socket of that name."""
        address = self.bind(abstract=True)
        SystemdNotifier(notify_address({"NOTIFY_SOCKET": address})).send("WATCHDOG=1")
        self.assertEqual(self.received(), ["WATCHDOG=1"])

    def test_no_systemd_is_a_no_op(self):
        """Without NOTIFY_SOCKET nothing is sent, and nothing fails."""
        self.assertFalse(SystemdNotifier(None).send("READY=1"))

    def test_gone_socket_is_a_warning(self):
        """A socket nobody listens on costs a warning, not an exception."""
        address = self.bind()
        self.receiver.close()
        os.remove(address)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.assertFalse(SystemdNotifier(address).send("READY=1\nSTATUS=listening"))
        (warning,) = [formatEvent(event) for event in events if event["log_level"] == LogLevel.warn]
        self.assertIn("systemd: cannot send READY=1: ", warning)


class ServiceTests(NotifySocketTestCase):
    def make(self, **environ):
        self.clock = Clock()
        self.listening = Deferred()
        environ.setdefault("NOTIFY_SOCKET", self.bind())
        return SystemdService(self.listening, self.clock, environ, pid=42)

    def test_ready_once_listening(self):
        """READY=1 (with the address in STATUS) is sent when the proxy listens, not before."""
        service = self.make()
        service.startService()
        self.assertEqual(self.received(), [])
        self.listening.callback(FakePort())
        self.assertEqual(self.received(), ["READY=1\nSTATUS=listening on " + FakePort().getHost()])

    def test_watchdog_ticks_then_stopping(self):
        """WATCHDOG=1 every half WATCHDOG_USEC while running; STOPPING=1 at stop, and no timer left."""
        service = self.make(WATCHDOG_USEC="30000000", WATCHDOG_PID="42")
        service.startService()
        self.listening.callback(FakePort())
        self.received()
        self.clock.advance(14.9)
        self.assertEqual(self.received(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.received(), ["WATCHDOG=1"])
        self.clock.advance(15)
        self.assertEqual(self.received(), ["WATCHDOG=1"])
        service.stopService()
        self.assertEqual(self.received(), ["STOPPING=1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_watchdog_survives_a_failed_send(self):
        """A send that fails (no file descriptor left) is skipped; the next tick is sent."""
        import errno

        service = self.make(WATCHDOG_USEC="2000000")
        service.startService()

        def exhausted(*args, **kwargs):
            raise OSError(errno.EMFILE, "Too many open files")

        patched = self.patch(socket, "socket", exhausted)
        self.clock.advance(1)
        patched.restore()
        self.clock.advance(1)
        self.assertEqual(self.received(), ["WATCHDOG=1"])

    def test_watchdog_of_another_process(self):
        """A WATCHDOG_PID that is not ours means no WATCHDOG=1."""
        service = self.make(WATCHDOG_USEC="1000000", WATCHDOG_PID="41")
        service.startService()
        self.clock.advance(10)
        self.assertEqual(self.received(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_without_systemd_nothing_runs(self):
        """Without NOTIFY_SOCKET no timer runs and the listening Deferred is left alone."""
        service = self.make(NOTIFY_SOCKET="", WATCHDOG_USEC="1000000")
        service.startService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.listening.callback(FakePort())
        service.stopService()
        self.assertEqual(self.received(), [])
