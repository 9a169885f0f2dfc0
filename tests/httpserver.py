"""
A real HTTP server on 127.0.0.1 for the alert channels' tests (twisted.web, in-process):
it records each POST it gets, answers with the codes it was given, and lets a test wait
for the n-th request and, at cleanup, for the last connection to close.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site


@dataclass(frozen=True)
class ReceivedPost:
    """One request as received: path, headers (lower-case names, last value) and body."""

    path: str
    headers: dict[str, str]
    body: bytes


class RecordingReceiver(Resource):
    """Answers each POST with the next code of C{codes} (200 once they are used up)."""

    isLeaf = True

    def __init__(self, *codes: int) -> None:
        super().__init__()
        self.codes = list(codes)
        self.posts: list[ReceivedPost] = []
        self._waiters: list[tuple[int, Deferred[ReceivedPost]]] = []

    def render_POST(self, request) -> bytes:
        self.record(request)
        request.setResponseCode(self.codes.pop(0) if self.codes else 200)
        request.setHeader(b"content-type", b"text/plain")
        return b"received"

    def record(self, request) -> None:
        """Keep C{request} as a L{ReceivedPost} and fire the waiters it satisfies."""
        headers = {
            name.decode().lower(): values[-1].decode() for name, values in request.requestHeaders.getAllRawHeaders()
        }
        self.posts.append(ReceivedPost(request.path.decode(), headers, request.content.read()))
        waiting, self._waiters = self._waiters, []
        for count, waiter in waiting:
            if len(self.posts) >= count:
                waiter.callback(self.posts[count - 1])
            else:
                self._waiters.append((count, waiter))

    def nth_post(self, count: int) -> Deferred[ReceivedPost]:
        """Fires with the C{count}-th POST (1-based) once it has arrived."""
        if len(self.posts) >= count:
            return succeed(self.posts[count - 1])
        waiter: Deferred[ReceivedPost] = Deferred()
        self._waiters.append((count, waiter))
        return waiter


class StallingReceiver(RecordingReceiver):
    """
    To the first C{stall} POSTs: the status line, the headers and the first bytes of a
    body (C{sent}) that never ends; the later ones are answered like
    L{RecordingReceiver}'s. C{dropped[i]} fires once the client of the i-th stalled POST
    has dropped its connection.
    """

    def __init__(self, stall: int = 1, *codes: int, sent: bytes = b"{") -> None:
        super().__init__(*codes)
        self.stall = stall
        self.sent = sent
        self.dropped: list[Deferred[None]] = []

    def render_POST(self, request):
        if len(self.dropped) >= self.stall:
            return super().render_POST(request)
        self.record(request)
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"application/json")
        request.write(self.sent)
        self.dropped.append(request.notifyFinish().addCallbacks(self._finished, lambda _: None))
        return NOT_DONE_YET

    @staticmethod
    def _finished(_: object) -> None:
        raise AssertionError("a stalled answer was finished")


class TrackingFactory(WrappingFactory):
    """Counts open connections so that cleanup can wait for the last one to close."""

    def __init__(self, wrapped) -> None:
        super().__init__(wrapped)
        self._idle: list[Deferred[None]] = []

    def unregisterProtocol(self, protocol) -> None:
        super().unregisterProtocol(protocol)
        if not self.protocols:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)

    def when_idle(self) -> Deferred[None]:
        """Fires once no connection is open."""
        if not self.protocols:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter


class QuietSite(Site):
    """A site without access log: the tests read the daemon's log, where the test server's requests do not belong."""

    def log(self, request) -> None:
        pass


def serve_locally(test: TestCase, resource: Resource, reactor) -> int:
    """Serve C{resource} on 127.0.0.1 for the length of C{test}; returns the port."""
    factory = TrackingFactory(QuietSite(resource))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    test.addCleanup(factory.when_idle)
    return port.getHost().port
