"""
Reading the body of an HTTP answer for the alert channels: bounded in size, and
cancellable so that an attempt past its deadline drops the connection instead of
leaving it open behind a server that sent its headers and then nothing.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

BODY_LIMIT = 64 * 1024
"""At most this many bytes of an answer are read; the connection is dropped once more arrive."""


class _BoundedBody(Protocol):
    """Collects at most C{limit} bytes of a body into C{done}, then stops the connection."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0
        self.done: Deferred[bytes] = Deferred(lambda _: self.stop())

    def stop(self) -> None:
        """Drop the connection the body comes on (a response's transport stops the connection itself)."""
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        room = self._limit - self._size
        self._parts.append(data[:room])
        self._size += min(len(data), room)
        if len(data) > room:
            # Enough to judge the answer by: the rest is worth neither the wait nor the memory.
            self.done.callback(b"".join(self._parts))
            self.stop()

    def connectionLost(self, reason: Failure) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._parts))
        else:
            self.done.errback(reason)


def read_body(response: Any, limit: int = BODY_LIMIT) -> Deferred[bytes]:
    """
    The first C{limit} bytes of C{response}'s body (an L{IResponse}, read unbuffered):
    the Deferred fires with the whole body, or with its first C{limit} bytes as soon as
    more arrive (the connection is then dropped), or fails if the connection is lost
    first. Cancelling it drops the connection.
    """
    reader = _BoundedBody(limit)
    response.deliverBody(reader)
    return reader.done
