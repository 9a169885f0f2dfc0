"""
Who may use the control-plane API (and a status page behind C{require_token}): bearer
tokens known by their SHA-256 only, compared in constant time; scopes C{read} and
C{operate}; an operate token's allowed actions; requests in flight per token; and
which refusals are worth a log line now. Pure: no I/O, time passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Protocol

READ = "read"
OPERATE = "operate"
MAX_IN_FLIGHT = 10
"""Requests one token may have in flight; one more is answered 429."""
NOTICE_EVERY = 60.0
"""Seconds between two log lines about the same kind of refusal."""


class Token(Protocol):
    """What a token of the configuration carries (L{ocppproxy.config.model.ApiToken})."""

    name: str
    sha256: str
    scope: str
    actions: frozenset | None


def bearer(header: bytes | str | None) -> str | None:
    """The token of an C{Authorization: Bearer <token>} header, or None."""
    if header is None:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def digest(secret: str) -> str:
    """The hex SHA-256 of a token, as the configuration holds it."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Tokens:
    """The configured tokens; L{identify} compares a presented one with each of them, in constant time."""

    def __init__(self, tokens: Iterable[Token]) -> None:
        self._tokens = tuple(tokens)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def identify(self, secret: str | None) -> Token | None:
        """The token whose digest matches C{secret}'s, or None; every token is compared (no early exit)."""
        if not secret:
            return None
        presented = digest(secret).encode("ascii")
        found = None
        for token in self._tokens:
            if hmac.compare_digest(presented, token.sha256.encode("ascii")):
                found = token
        return found

    def authorize(self, secret: str | None, scope: str) -> tuple[int, Token | None]:
        """C{(200, token)}; C{(401, None)} for no or an unknown token; C{(403, token)} without C{scope}."""
        token = self.identify(secret)
        if token is None:
            return 401, None
        if not has_scope(token, scope):
            return 403, token
        return 200, token


def has_scope(token: Token, scope: str) -> bool:
    """Whether C{token} may do what C{scope} needs (operate includes read)."""
    return token.scope == OPERATE or scope == READ


def allows_action(token: Token, action: str) -> bool:
    """Whether an operate C{token} may send C{action}."""
    return token.actions is None or action in token.actions


class InFlight:
    """Requests in flight per token name, at most C{limit} each."""

    def __init__(self, limit: int = MAX_IN_FLIGHT) -> None:
        self._limit = limit
        self._counts: dict[str, int] = {}

    def enter(self, name: str) -> bool:
        """Count one more request of C{name}; False (and not counted) when it already has C{limit}."""
        count = self._counts.get(name, 0)
        if count >= self._limit:
            return False
        self._counts[name] = count + 1
        return True

    def leave(self, name: str) -> None:
        """One request of C{name} is over."""
        count = self._counts.get(name, 0) - 1
        if count > 0:
            self._counts[name] = count
        else:
            self._counts.pop(name, None)

    def count(self, name: str) -> int:
        """Requests of C{name} in flight."""
        return self._counts.get(name, 0)


class Notices:
    """Which refusals deserve a log line: the first of each kind, then one per L{NOTICE_EVERY} seconds, with a count."""

    def __init__(self, every: float = NOTICE_EVERY) -> None:
        self._every = every
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def due(self, kind: str, now: float) -> int | None:
        """None: stay quiet; else log now, and the number of refusals of this kind not logged since the last line."""
        last = self._last.get(kind)
        if last is not None and now - last < self._every:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._quiet.pop(kind, 0)
