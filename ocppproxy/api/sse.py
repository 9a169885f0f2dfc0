"""
Server-Sent Events to one reader over C{twisted.web}: events are written as they come;
while the reader's connection is slow (its transport paused us as a producer) they wait
in a buffer of at most C{max_buffer} bytes, and past it the reader is cut off. Nothing a
reader does ever slows the station whose frames it follows. A stream with nothing to say
sends a comment line every L{KEEPALIVE} seconds, so that reverse proxies and load
balancers (nginx, HAProxy: 60 s of silence by default) do not close it as idle, and a
reader that is gone is noticed.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.web.server import NOT_DONE_YET

MAX_BUFFER = 256 * 1024
"""Bytes of events one slow reader may have waiting before it is cut off."""

KEEPALIVE = 15.0
"""Seconds of silence after which an open stream sends a comment line."""

KEEPALIVE_COMMENT = b": keepalive\n\n"


def event_bytes(data: str, event_id: int | None = None, event: str | None = None) -> bytes:
    """One event in the text/event-stream format (C{data} may hold newlines)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class EventStream:
    """
    One open SSE response: L{send} an event; L{on_close} is called once when the reader
    left or was cut off. Registered with the request as a streaming producer, so the
    transport tells it when its buffer is full (L{pauseProducing}) and drained.
    """

    def __init__(
        self,
        request,
        on_close: Callable[[EventStream], None],
        max_buffer: int = MAX_BUFFER,
        clock=None,
        keepalive: float = KEEPALIVE,
    ) -> None:
        self._request = request
        self._clock = clock
        self._keepalive_after = keepalive
        self._keepalive = None
        self._spoke = False
        self._on_close = on_close
        self._max_buffer = max_buffer
        self._paused = False
        self._waiting: list[bytes] = []
        self._waiting_bytes = 0
        self.closed = False
        self.cut_off = False
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(lambda _: self._closed())

    def start(self) -> int:
        """Send the headers now; the value for C{render_GET} to return (NOT_DONE_YET)."""
        self._request.write(b": stream open\n\n")
        if self._clock is not None and not self.closed:
            self._keepalive = self._clock.callLater(self._keepalive_after, self._keep_alive)
        return NOT_DONE_YET

    def _keep_alive(self) -> None:
        """Every interval: a comment line if no event went out meanwhile (none while the reader is slow)."""
        self._keepalive = None
        if self.closed:
            return
        if not self._spoke and not self._paused:
            self._request.write(KEEPALIVE_COMMENT)
        self._spoke = False
        self._keepalive = self._clock.callLater(self._keepalive_after, self._keep_alive)

    def send(self, data: bytes) -> None:
        """Write one event (see L{event_bytes}), or hold it while the reader is slow; past the bound, cut off."""
        if self.closed:
            return
        if not self._paused:
            self._spoke = True
            self._request.write(data)
            return
        self._waiting.append(data)
        self._waiting_bytes += len(data)
        if self._waiting_bytes > self._max_buffer:
            self.cut_off = True
            self._waiting.clear()
            self._waiting_bytes = 0
            transport = self._request.transport
            if transport is not None:
                transport.abortConnection()
            self._closed()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        waiting, self._waiting, self._waiting_bytes = self._waiting, [], 0
        for data in waiting:
            if self.closed:
                return
            self._request.write(data)

    def stopProducing(self) -> None:
        self._closed()

    def close(self) -> None:
        """End the stream from our side (the daemon stops)."""
        if not self.closed:
            self._closed()
            self._request.unregisterProducer()
            self._request.finish()

    def _closed(self) -> None:
        if not self.closed:
            self.closed = True
            if self._keepalive is not None:
                self._keepalive.cancel()
                self._keepalive = None
            self._on_close(self)
