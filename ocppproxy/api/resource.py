"""
The API's HTTP face: one C{twisted.web} resource routing C{/api/...}, checking the
bearer token (L{ocppproxy.core.api_auth}), the body's size, the station id and the
requests in flight per token, then answering in JSON (or Server-Sent Events).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..core.api_auth import OPERATE, READ, InFlight, Token, bearer
from ..core.handshake import BadStationPath, station_id_from_path
from ..logs import proxy_logger
from ..status.fleet import QueryError, parse_query
from ..status.tokens import TokenGate, address_of, refuse, write_json

if TYPE_CHECKING:
    from .service import ApiService

MAX_BODY = 64 * 1024
"""Largest request body accepted; a larger one gets 413."""

_log = proxy_logger(__name__)


class Answer(Exception):
    """An answer other than 200, raised by a handler: C{code} and the message of its JSON body."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# (method, path shape) -> (scope, handler name); "{id}" stands for a station id.
_ROUTES: dict[tuple[bytes, tuple[str, ...]], tuple[str, str]] = {
    (b"GET", ("api", "stations")): (READ, "stations"),
    (b"GET", ("api", "stations", "{id}")): (READ, "station"),
    (b"GET", ("api", "stations", "{id}", "frames")): (READ, "frames"),
    (b"POST", ("api", "stations", "{id}", "call")): (OPERATE, "call"),
    (b"POST", ("api", "stations", "{id}", "disconnect")): (OPERATE, "disconnect"),
    (b"GET", ("api", "events")): (READ, "events"),
}


def _shape(segments: list[str]) -> tuple[tuple[str, ...], str | None]:
    """The route shape of a path and the station id it names (if any)."""
    if len(segments) >= 3 and segments[:2] == ["api", "stations"]:
        return ("api", "stations", "{id}", *segments[3:]), segments[2]
    return tuple(segments), None


class ApiResource(Resource):
    """Every C{/api/...} request; the work is the L{ApiService}'s (see L{ocppproxy.api.service})."""

    isLeaf = True

    def __init__(self, api: ApiService, gate: TokenGate) -> None:
        super().__init__()
        self._api = api
        self._gate = gate
        self._in_flight = InFlight()

    def render(self, request) -> bytes | int:
        segments = [segment.decode("utf-8", "replace") for segment in request.postpath]
        if segments and segments[-1] == "":
            segments.pop()
        shape, station_id = _shape(segments)
        route = _ROUTES.get((request.method, shape))
        if route is None:
            if any(key[1] == shape for key in _ROUTES):
                return refuse(request, 405, "method not allowed")
            return refuse(request, 404, "no such endpoint")
        scope, name = route
        code, token = self._gate.check(bearer(request.getHeader(b"authorization")), scope, request)
        if code == 401:
            return refuse(request, 401, "a valid bearer token is needed")
        if code == 403:
            return refuse(request, 403, "this token may not do that")
        if station_id is not None:
            try:
                station_id_from_path("/" + station_id)
            except BadStationPath as error:
                return refuse(request, 400, str(error))
        body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(body) > MAX_BODY:
            return refuse(request, 413, f"the body is over {MAX_BODY} bytes")
        if not self._in_flight.enter(token.name):
            return refuse(request, 429, "too many requests of this token in flight")
        gone: list[bool] = []

        def over(result) -> None:
            self._in_flight.leave(token.name)
            if isinstance(result, Failure):
                gone.append(True)  # the client left before the answer

        request.notifyFinish().addBoth(over)
        handler: Callable[..., object] = getattr(self._api, "handle_" + name)
        started = self._api.clock.seconds()
        outcome = maybeDeferred(handler, request, token, station_id, body)

        def answered(result):
            if result is NOT_DONE_YET or gone:
                return
            code, document = result
            request.write(write_json(request, code, document))
            request.finish()

        def failed(failure: Failure):
            if gone:
                return
            if failure.check(Answer):
                request.write(refuse(request, failure.value.code, failure.value.message))
            elif failure.check(QueryError):
                request.write(refuse(request, 400, str(failure.value)))
            else:
                _log.failure("api: cannot answer {path}", failure, path=request.path)
                request.write(refuse(request, 500, "internal error, see the daemon's log"))
            request.finish()

        if scope == OPERATE:
            outcome.addBoth(self._audit, request, token, station_id, name, started)
        outcome.addCallbacks(answered, failed)
        return NOT_DONE_YET

    def _audit(self, result, request, token: Token, station_id: str | None, name: str, started: float):
        """One audit line per operate request; passes C{result} on."""
        if isinstance(result, Failure):
            outcome = str(result.value.code) if result.check(Answer) else "500"
        else:
            outcome = str(result[0])
        action = getattr(request, "api_action", name)
        self._api.audit.record(
            token.name, address_of(request), station_id or "", action, outcome, self._api.clock.seconds() - started
        )
        return result


def query_of(request):
    """The listing query of C{request} (raises L{QueryError})."""
    return parse_query(request.args)


def answer_later(deferred: Deferred) -> Deferred:
    """A Deferred of C{(200, document)} from one of C{document}."""
    return deferred.addCallback(lambda document: (200, document))
