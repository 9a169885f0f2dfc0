"""
The outbox's writer thread: calls run one at a time, in order, off the reactor's thread;
results and failures come back through C{callFromThread}; stopping waits for what was
given before. (A real thread; the reactor's side is a queue this test empties itself,
each wait bounded.)
"""

from __future__ import annotations

import queue
import threading

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.relay.writer_thread import WriterThread

WAIT = 10.0


class HandedBack:
    """The reactor as the writer thread sees it: C{callFromThread} queues the call for the test to run."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue = queue.SimpleQueue()

    def callFromThread(self, function, *args) -> None:
        self.calls.put((function, args))

    def until_fired(self, deferred) -> None:
        """Run what the thread handed back until C{deferred} fired (each wait bounded)."""
        while not deferred.called:
            function, args = self.calls.get(timeout=WAIT)
            function(*args)


class WriterThreadTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = HandedBack()
        self.writer = WriterThread(self.reactor, "test-writer")
        self.writer.start()

    def tearDown(self):
        stopped = self.writer.stop()
        self.reactor.until_fired(stopped)

    def test_in_order_off_the_reactor_thread(self):
        seen = []

        def note(value):
            seen.append((value, threading.current_thread().name))
            return value * 2

        results = [self.writer.run(note, value) for value in range(5)]
        for result in results:
            self.reactor.until_fired(result)
        self.assertEqual([self.successResultOf(result) for result in results], [0, 2, 4, 6, 8])
        self.assertEqual(seen, [(value, "test-writer") for value in range(5)])

    def test_failure_comes_back_and_the_thread_goes_on(self):
        def fail():
            raise OSError("disk full")

        failed = self.writer.run(fail)
        self.reactor.until_fired(failed)
        self.failureResultOf(failed, OSError)
        after = self.writer.run(lambda: "still here")
        self.reactor.until_fired(after)
        self.assertEqual(self.successResultOf(after), "still here")

    def test_stop_waits_for_the_calls_before(self):
        gate = threading.Event()
        blocked = self.writer.run(lambda: gate.wait(WAIT))
        stopped = self.writer.stop()
        self.assertNoResult(stopped)
        gate.set()
        self.reactor.until_fired(stopped)
        self.assertTrue(self.successResultOf(blocked))
        self.writer._thread.join(WAIT)
        self.assertFalse(self.writer._thread.is_alive())

    def test_stop_without_start(self):
        self.successResultOf(WriterThread(self.reactor, "never").stop())
