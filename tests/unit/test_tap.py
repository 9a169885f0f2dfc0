"""twistd glue: the service tree and signal handlers that makeService sets up."""

from __future__ import annotations

import os
import signal

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.daemon.reload import Reloader
from ocppproxy.daemon.systemd import SystemdService
from ocppproxy.daemon import tap
from ocppproxy.daemon.tap import Options, makeService


class ThreadCallReactor(MemoryReactorClock):
    """A memory reactor that records what signal handlers hand over to the reactor thread."""

    def __init__(self):
        super().__init__()
        self.from_thread = []

    def callFromThread(self, function, *args, **kwargs):
        self.from_thread.append((function, args, kwargs))


class MakeServiceTests(SynchronousTestCase):
    def setUp(self):
        path = os.path.abspath(self.mktemp() + ".yaml")
        with open(path, "w") as out:
            out.write('primary_url: "ws://127.0.0.1:1/"\nlisten: "tcp:port=0:interface=127.0.0.1"\n')
        self.options = Options()
        self.options.parseOptions(["-c", path])
        self.reactor = ThreadCallReactor()
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))

    def test_sighup_handled_before_the_reactor_runs(self):
        """SIGHUP reloads from the moment the service exists: a reload right after READY=1 is never fatal."""
        makeService(self.options, self.reactor)
        handler = signal.getsignal(signal.SIGHUP)
        self.assertTrue(callable(handler))
        handler(signal.SIGHUP, None)
        ((reload, _, _),) = self.reactor.from_thread
        self.assertIsInstance(reload.__self__, Reloader)

    def test_tcp_attribute_keys_shared_at_start_up(self):
        """Twisted's TCP connection classes learn their attribute names before any connection (see wire.slots)."""
        shared = []
        self.patch(tap, "share_tcp_attribute_keys", lambda: shared.append(True))
        makeService(self.options, self.reactor)
        self.assertEqual(shared, [True])

    def test_systemd_service_stops_first(self):
        """The systemd notifications are the last child, so STOPPING=1 goes out before the stations drain."""
        top = makeService(self.options, self.reactor)
        self.assertIsInstance(list(top)[-1], SystemdService)
