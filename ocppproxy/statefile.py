"""
A small JSON state file, written off the reactor thread: changes are coalesced and
written at most once per C{delay} seconds, atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool

from .logs import proxy_logger


def read_state(path: str) -> Any:
    """The file's JSON content, or None if it is missing or unreadable (start-up only)."""
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError):
        return None


def _write(path: str, data: Any) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(data, stream, separators=(",", ":"))
    os.replace(temporary, path)


class StateFile:
    """Keeps C{path} up to date with C{snapshot()}; call L{changed} after each change."""

    _log = proxy_logger()

    def __init__(self, path: str, snapshot: Callable[[], Any], reactor, delay: float = 1.0) -> None:
        self.path = path
        self._snapshot = snapshot
        self._reactor = reactor
        self._delay = delay
        self._timer = None
        self._writing: Deferred | None = None
        self._dirty = False

    def changed(self) -> None:
        """Something changed: write soon (coalesced)."""
        self._dirty = True
        if self._timer is None and self._writing is None:
            self._timer = self._reactor.callLater(self._delay, self._write_now)

    def _write_now(self) -> Deferred:
        self._timer = None
        self._dirty = False
        data = self._snapshot()
        pool = self._reactor.getThreadPool()
        self._writing = deferToThreadPool(self._reactor, pool, _write, self.path, data)
        self._writing.addErrback(
            lambda failure: self._log.error(
                "cannot write state file {path}: {reason}", path=self.path, reason=failure.getErrorMessage()
            )
        )

        def done(_):
            self._writing = None
            if self._dirty:
                self.changed()

        return self._writing.addCallback(done)

    def flush(self) -> Deferred:
        """Write pending changes now (on shutdown); fires when written."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
            self._timer = None
            return self._write_now()
        if self._writing is not None:
            waiting: Deferred = Deferred()
            self._writing.addBoth(lambda result: (waiting.callback(None), result)[1])
            return waiting.addCallback(lambda _: self.flush())
        return succeed(None)
