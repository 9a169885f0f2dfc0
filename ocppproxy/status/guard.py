"""
The status page behind C{status.require_token}: C{/}, C{/stations}, C{/alerts} and
C{/metrics} need a C{read} token of C{api.tokens}, as a Bearer header, or for a browser
through C{/login}, whose form sets an C{HttpOnly}, C{SameSite=Strict} session cookie.
The cookie authorises only C{GET} (and C{HEAD}); C{/health} stays open for load balancers.
"""

from __future__ import annotations

import html
import secrets
from collections import OrderedDict

from twisted.web.resource import Resource

from .tokens import TokenGate, refuse
from ..core.api_auth import READ, bearer

COOKIE = b"ocppproxy_session"
SESSION_LIFETIME = 12 * 3600.0
"""Seconds a login lasts."""
MAX_SESSIONS = 1000
"""Logins kept at once; one more forgets the oldest."""
_OPEN = frozenset((b"health", b"login"))

_FORM = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ocppproxy: sign in</title>
<style>body{{font-family:sans-serif;max-width:24em;margin:3em auto;padding:0 1em}}
input{{font-size:1.1em;width:100%;margin:.4em 0;box-sizing:border-box}}.error{{color:#b00}}</style></head>
<body><h1>ocppproxy</h1><p>The status page needs a read token.</p>{error}
<form method="post" action="/login"><label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="submit" value="Sign in"></form></body></html>
"""


def login_page(request, code: int, error: str = "") -> bytes:
    """The login form, answered with C{code}."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    shown = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return _FORM.format(error=shown).encode("utf-8")


class Logins:
    """The browser sessions opened by the login form: random ids, each with an expiry, at most L{MAX_SESSIONS}."""

    def __init__(self, clock) -> None:
        self._clock = clock
        self._sessions: OrderedDict[bytes, float] = OrderedDict()

    def open(self) -> bytes:
        """A new session id."""
        session = secrets.token_urlsafe(32).encode("ascii")
        self._sessions[session] = self._clock.seconds() + SESSION_LIFETIME
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def valid(self, session: bytes | None) -> bool:
        """Whether C{session} is a login not yet expired."""
        if not session:
            return False
        expires = self._sessions.get(session)
        if expires is None:
            return False
        if expires <= self._clock.seconds():
            del self._sessions[session]
            return False
        return True


class LoginResource(Resource):
    """C{/login}: the form (GET), and the token checked (POST) into a session cookie."""

    isLeaf = True

    def __init__(self, gate: TokenGate, logins: Logins) -> None:
        super().__init__()
        self._gate = gate
        self._logins = logins

    def render_GET(self, request) -> bytes:
        return login_page(request, 200)

    def render_POST(self, request) -> bytes:
        token = request.args.get(b"token", [b""])[0].decode("utf-8", "replace").strip()
        code, _ = self._gate.check(token, READ, request)
        if code != 200:
            return login_page(request, code, "That token is not accepted.")
        cookie = [COOKIE + b"=" + self._logins.open(), b"Path=/", b"HttpOnly", b"SameSite=Strict"]
        if request.isSecure():
            cookie.append(b"Secure")
        request.setHeader(b"set-cookie", b"; ".join(cookie))
        request.setResponseCode(303)
        request.setHeader(b"location", b"/")
        return b""


class _Refused(Resource):
    """What an unauthorised request gets: the login form for the page, JSON elsewhere."""

    isLeaf = True

    def __init__(self, code: int, page: bool) -> None:
        super().__init__()
        self._code = code
        self._page = page

    def render(self, request) -> bytes:
        if self._page and self._code == 401:
            return login_page(request, 401)
        return refuse(request, self._code, "a read token is needed" if self._code == 401 else "this token may not")


class GuardedRoot(Resource):
    """The status site's root behind the token check; C{inner} is the open one (L{ocppproxy.status.service.StatusRoot})."""

    def __init__(self, inner: Resource, gate: TokenGate, clock) -> None:
        super().__init__()
        self._inner = inner
        self._gate = gate
        self._logins = Logins(clock)
        self._login = LoginResource(gate, self._logins)

    def getChildWithDefault(self, path: bytes, request):
        if path == b"login":
            return self._login
        if path in _OPEN:
            return self._inner.getChildWithDefault(path, request)
        secret = bearer(request.getHeader(b"authorization"))
        if secret is None and request.method in (b"GET", b"HEAD") and self._logins.valid(request.getCookie(COOKIE)):
            return self._inner.getChildWithDefault(path, request)
        code, _ = self._gate.check(secret, READ, request)
        if code != 200:
            return _Refused(code, page=path == b"" and secret is None)
        return self._inner.getChildWithDefault(path, request)
