"""
The control-plane API service: C{/api/...} over HTTP (C{api.listen}), in the daemon's
process. What each endpoint does is here; the routing, the token check and the bounds
on requests are L{ocppproxy.api.resource}'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.web.server import NOT_DONE_YET, Request, Site

from ..config.model import ClusterConfig
from ..core.api_auth import Token, Tokens, allows_action
from ..core.ocppj import CALLERROR, CALLRESULT
from ..core.redact import Redactor
from ..logs import proxy_logger
from ..periodic import Periodic
from ..relay.api_calls import CallTimeout, QueueFull, StationGone
from ..relay.listen import ReportedListener
from ..relay.registry import StationSessions
from ..relay.service_tree import ServiceTree
from ..status.fleet import StationQuery
from .audit import AuditTrail
from .cluster_calls import ClusterCalls
from .history import EventFeed, FrameTrace
from .resource import MAX_BODY, Answer, ApiResource, TokenGate, answer_later, query_of
from .sse import EventStream

DEFAULT_CALL_TIMEOUT = 30.0
"""Seconds a CALL through the API waits for the station's answer, unless the body says otherwise."""
FORGET_EVERY = 60.0
"""Seconds between two sweeps of the histories of stations gone over an hour."""
_CLOSE_CODES = frozenset((1000, 1001, 1012, 1013)) | frozenset(range(3000, 5000))


class _BoundedRequest(Request):
    """A request that keeps at most one byte more than L{MAX_BODY} of its body (the rest is read and dropped): 413."""

    def handleContentChunk(self, data: bytes) -> None:
        kept = self.content.tell()
        if kept <= MAX_BODY:
            super().handleContentChunk(data[: MAX_BODY + 1 - kept])


class _ApiSite(Site):
    """No access log line per request: the audit trail says what matters."""

    noisy = False
    requestFactory = _BoundedRequest

    def log(self, request) -> None:
        pass


class ApiService(ServiceTree):
    """
    Serves the API on C{listen} while running (child C{listener}); C{listening} fires with
    the port. C{listing(query)} gives the C{/stations} document, C{describe(id)} one
    station's entry (None: unknown); C{sessions} are the proxy's (the API's CALLs go through
    them); C{trace} keeps and streams the frames, C{events} the alerts' events. In
    cluster mode (C{cluster}), a CALL for a station another instance holds is passed to
    it through Redis (L{ocppproxy.api.cluster_calls}); 503 while Redis is away.
    """

    _log = proxy_logger()

    def __init__(
        self,
        listen: str,
        reactor,
        tokens: Tokens,
        sessions: StationSessions,
        trace: FrameTrace,
        events: EventFeed,
        audit: AuditTrail,
        redactor: Redactor,
        pending_call_timeout: float,
        listing: Callable[[StationQuery], Deferred[dict]],
        describe: Callable[[str], dict | None],
        cluster: ClusterConfig | None = None,
    ) -> None:
        super().__init__()
        self.listen = listen
        self.clock = reactor
        self.sessions = sessions
        self.trace = trace
        self.events = events
        self.audit = audit
        self._redactor = redactor
        self._max_timeout = pending_call_timeout
        self._listing = listing
        self._describe = describe
        self._cluster: ClusterCalls | None = None
        if cluster is not None:
            self._cluster = ClusterCalls(cluster, reactor, self, trace)
            self._cluster.setServiceParent(self)
        self.site = _ApiSite(ApiResource(self, TokenGate(tokens, reactor)))
        listener = ReportedListener(reactor, listen, self.site, "api", "api", "the API")
        listener.setName("listener")
        listener.setServiceParent(self)
        self.listening: Deferred = listener.listening
        forget = Periodic(FORGET_EVERY, lambda: trace.history.forget(reactor.seconds()), reactor)
        forget.setName("forget")
        forget.setServiceParent(self)

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)

    def stopService(self) -> Deferred:
        self.trace.close_all()
        self.events.close_all()
        return super().stopService()

    # --- the endpoints: each returns (code, document), a Deferred of it, or NOT_DONE_YET

    def handle_stations(self, request, token: Token, station_id: None, body: bytes):
        return answer_later(self._listing(query_of(request)))

    def handle_station(self, request, token: Token, station_id: str, body: bytes):
        if station_id not in self.sessions.current and self._cluster is not None:
            # Held by another instance? Else what this one remembers of it.
            return self._cluster.describe(station_id).addCallback(
                lambda found: found if found[0] != 404 else self.local_describe(station_id)
            )
        return self.local_describe(station_id)

    def local_describe(self, station_id: str) -> tuple[int, dict]:
        """One station's details as this instance knows it: C{(200 | 404, document)}."""
        document = self._describe(station_id)
        if document is None:
            return 404, {"error": f"no station {station_id} is known"}
        return 200, document

    def local_frames(self, station_id: str) -> tuple[int, dict]:
        """The kept frames of C{station_id} here: C{(200, document)}, or 404 when none are."""
        history = self.trace.history
        if station_id not in self.sessions.current and not history.known(station_id):
            return 404, {"error": f"no frames of station {station_id} are kept"}
        frames = [self.trace.shown(frame) for frame in history.frames(station_id)]
        return 200, {"station": station_id, "history": history.limit, "frames": frames}

    def handle_frames(self, request, token: Token, station_id: str, body: bytes):
        following = request.args.get(b"follow", [b"0"])[0] in (b"1", b"true", b"yes")
        history = self.trace.history
        here = station_id in self.sessions.current or history.known(station_id)
        if not following:
            if not here and self._cluster is not None:
                return self._cluster.frames(station_id)
            return self.local_frames(station_id)
        last = request.getHeader(b"last-event-id")
        after = int(last) if last is not None and last.strip().isdigit() else None
        if not here and self._cluster is not None:
            return self._cluster.follow(station_id, request, after)
        if not here:
            raise Answer(404, f"no frames of station {station_id} are kept")
        stream = EventStream(request, lambda closed: self.trace.unfollow(station_id, closed), clock=self.clock)
        opened = stream.start()
        self.trace.follow(station_id, stream, after)
        return opened

    def handle_events(self, request, token: Token, station_id: None, body: bytes):
        stream = EventStream(request, self.events.remove, clock=self.clock)
        opened = stream.start()
        self.events.add(stream)
        return opened

    def handle_call(self, request, token: Token, station_id: str, body: bytes):
        action, payload, timeout = self._call_body(body)
        request.api_action = action
        if not allows_action(token, action):
            raise Answer(403, f"this token may not send {action}")
        if station_id not in self.sessions.current and self._cluster is not None:
            return self._cluster.call(station_id, action, payload, timeout)
        self._held_here(station_id)
        return self.local_call(station_id, action, payload, timeout)

    def local_call(self, station_id: str, action: str, payload: dict, timeout: float) -> Deferred:
        """
        The CALL sent to a station connected here: a Deferred of C{(status, document)}
        (200 with the answer redacted, 404, 409, 502, 504), never a failure for those.
        """
        session = self.sessions.current.get(station_id)
        if session is None:
            return succeed((404, {"error": f"station {station_id} is not connected to this instance"}))
        answer = session.api_call(action, payload, timeout)
        answer.addCallbacks(self._call_answered, self._call_failed, errbackArgs=(station_id, timeout))

        def refused(failure):
            failure.trap(Answer)
            return failure.value.code, {"error": failure.value.message}

        return answer.addErrback(refused)

    def _held_here(self, station_id: str):
        """The session of a station connected here; 404, or 503 in cluster mode while Redis is away."""
        session = self.sessions.current.get(station_id)
        if session is not None:
            return session
        if self._cluster is not None and not self._cluster.up:
            raise Answer(503, f"station {station_id} is not here, and Redis is away: another instance may hold it")
        raise Answer(404, f"station {station_id} is not connected to this instance")

    def _call_body(self, body: bytes) -> tuple[str, dict, float]:
        try:
            document = json.loads(body or b"null")
        except ValueError:
            raise Answer(400, "the body is not JSON") from None
        if not isinstance(document, dict):
            raise Answer(400, "the body must be a JSON object")
        action, payload = document.get("action"), document.get("payload", {})
        if not isinstance(action, str) or not action:
            raise Answer(400, "action must be a non-empty string")
        if not isinstance(payload, dict):
            raise Answer(400, "payload must be a JSON object")
        timeout = document.get("timeout", DEFAULT_CALL_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise Answer(400, "timeout must be a positive number of seconds")
        return action, payload, min(float(timeout), self._max_timeout)

    def _call_answered(self, answer: bytes) -> tuple[int, dict]:
        message = self._redactor.value(json.loads(answer))
        if message[0] == CALLRESULT:
            return 200, {"result": message}
        if message[0] == CALLERROR:
            return 200, {"error": message}
        raise Answer(502, "the station's answer is not a CALLRESULT or CALLERROR")

    def _call_failed(self, failure, station_id: str, timeout: float):
        if failure.check(CallTimeout):
            raise Answer(504, f"station {station_id} did not answer within {timeout:g} s")
        if failure.check(StationGone):
            raise Answer(502, f"station {station_id} went away before answering")
        if failure.check(QueueFull):
            raise Answer(409, f"too many CALLs wait for station {station_id}")
        return failure

    def handle_disconnect(self, request, token: Token, station_id: str, body: bytes):
        code = 1000
        if body.strip():
            try:
                document = json.loads(body)
            except ValueError:
                raise Answer(400, "the body is not JSON") from None
            if not isinstance(document, dict):
                raise Answer(400, "the body must be a JSON object")
            code = document.get("code", 1000)
            if isinstance(code, bool) or code not in _CLOSE_CODES:
                raise Answer(400, "code must be 1000, 1001, 1012, 1013 or 3000-4999")
        if station_id not in self.sessions.current and self._cluster is not None:
            return self._cluster.disconnect(station_id, code, token.name)
        self._held_here(station_id)
        return self.local_disconnect(station_id, code, token.name)

    def local_disconnect(self, station_id: str, code: int, by: str) -> tuple[int, dict]:
        """Close a station connected here with C{code} (C{by}: the token's name): C{(200 | 404, document)}."""
        session = self.sessions.current.get(station_id)
        if session is None:
            return 404, {"error": f"station {station_id} is not connected to this instance"}
        session.close(code, f"disconnected through the API by {by}")
        return 200, {"station": station_id, "closing": code}
