"""
The token check shared by the control-plane API and a status page behind
C{status.require_token} (L{TokenGate}), and their JSON answers.
"""

from __future__ import annotations

import json

from ..core.api_auth import Token, Tokens, Notices
from ..logs import proxy_logger

_log = proxy_logger(__name__)


def write_json(request, code: int, document: dict) -> bytes:
    """C{document} as the body of a C{code} answer."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def refuse(request, code: int, message: str) -> bytes:
    """An error answer: C{{"error": message}}; 401 says how to authenticate."""
    if code == 401:
        request.setHeader(b"www-authenticate", b'Bearer realm="ocppproxy"')
    return write_json(request, code, {"error": message})


class TokenGate:
    """
    The token check shared by the API and a status page behind C{require_token}: 401 for
    no or an unknown token, 403 without the scope, each logged at most once a minute.
    """

    def __init__(self, tokens: Tokens, clock) -> None:
        self.tokens = tokens
        self._clock = clock
        self._notices = Notices()

    def check(self, secret: str | None, scope: str, request) -> tuple[int, Token | None]:
        """C{(200, token)}, or C{(401 | 403, token or None)} after a throttled log line."""
        code, token = self.tokens.authorize(secret, scope)
        if code != 200:
            quiet = self._notices.due(str(code), self._clock.seconds())
            if quiet is not None:
                _log.warn(
                    "api: refused {method} {path} from {address} with {code} ({why}); {quiet} more such refusals"
                    " not logged in the last minute",
                    method=request.method.decode("ascii", "replace"),
                    path=request.path.decode("ascii", "replace")[:100],
                    address=address_of(request),
                    code=code,
                    why="no or an unknown token" if code == 401 else f"token {token.name} lacks the {scope} scope",
                    quiet=quiet,
                )
        return code, token


def address_of(request) -> str:
    """The client's IP address, for log and audit lines."""
    address = request.getClientAddress()
    return getattr(address, "host", str(address))
