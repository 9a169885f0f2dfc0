"""
A small JSON state file, written off the reactor thread: changes are coalesced and
written at most once per C{delay} seconds, atomically: a temporary file in the same
directory, flushed to disk, renamed over the old one, then the directory flushed too,
so a crash (even of the machine) leaves either the old file or the new one, whole.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool

from ..logs import proxy_logger


def read_state(path: str, clock: Callable[[], float] = time.time) -> Any:
    """
    The file's JSON content for start-up; None if there is no file yet.

    A file that cannot be read or parsed (truncated, edited by hand, a bad disk) is
    never taken silently for an empty one: one error line names it and the reason,
    the file is moved aside to C{<path>.corrupt-<unix time>} for the operator to look
    at (the next write would replace it), and None is returned so start-up goes on.
    """
    try:
        with open(path, "rb") as stream:
            text = stream.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        StateFile._log.error(
            "state file {path} cannot be read: {reason}; starting without it", path=path, reason=error.strerror
        )
        return None
    try:
        return json.loads(text.decode("utf-8"))
    except ValueError as error:
        aside = f"{path}.corrupt-{int(clock())}"
        try:
            os.replace(path, aside)
            kept = f"kept as {aside}"
        except OSError as move_error:
            kept = f"left in place ({move_error.strerror})"
        StateFile._log.error(
            "state file {path} is corrupt ({size} bytes, {reason}); {kept};"
            " starting without the transaction ids it held",
            path=path,
            size=len(text),
            reason=str(error),
            kept=kept,
        )
        return None


def write_state(path: str, data: Any) -> None:
    """Replace C{path} with C{data} as JSON, atomically and durably (blocking: call off the reactor)."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(data, stream, separators=(",", ":"))
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
    # The rename itself is durable only once the directory is on disk.
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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
        self._writing = deferToThreadPool(self._reactor, pool, write_state, self.path, data)
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
