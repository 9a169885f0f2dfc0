"""
L{WriterThread}: the durable outbox's one writer thread (its SQLite file, or the cluster
mode's local file), running blocking calls one at a time in the order given, each
result handed back to the reactor's thread as a L{Deferred}.

Why not a one-thread C{twisted.python.threadpool.ThreadPool}: the store hands the thread a
group every few milliseconds, and the pool's way to a thread (its coordinator, a context
per call, a C{queue.Queue} with its locks, each step Python code holding the interpreter
lock) cost about half as much CPU again as the handing over itself, in both threads. Here
a call is one C{queue.SimpleQueue.put} (C code) and its result one C{callFromThread}.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

_STOP = object()


class WriterThread:
    """One thread running blocking calls in order; see the module's doc."""

    def __init__(self, reactor: Any, name: str) -> None:
        self._reactor = reactor
        self._name = name
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: Deferred | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
            self._thread.start()

    def run(self, function: Callable[..., Any], *args: Any) -> Deferred:
        """Run C{function(*args)} on the thread after every call given before; fires with its result, or fails."""
        deferred: Deferred = Deferred()
        self._calls.put((deferred, function, args))
        return deferred

    def stop(self) -> Deferred:
        """Fires once every call given before has run and the thread has ended (at once if it never started)."""
        if self._thread is None:
            return succeed(None)
        if self._stopped is None:
            self._stopped = Deferred()
            self._calls.put(_STOP)
        waiting: Deferred = Deferred()
        self._stopped.addBoth(lambda result: (waiting.callback(None), result)[1])
        return waiting

    def _work(self) -> None:
        call_from_thread = self._reactor.callFromThread
        while True:
            call = self._calls.get()
            if call is _STOP:
                call_from_thread(self._stopped.callback, None)
                return
            deferred, function, args = call
            try:
                result = function(*args)
            except BaseException:
                call_from_thread(deferred.errback, Failure())
            else:
                call_from_thread(deferred.callback, result)


__all__ = ["WriterThread"]
