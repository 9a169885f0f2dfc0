"""The close waiters both sides' protocols share: Deferreds that fire once a connection has closed."""

from __future__ import annotations

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.defer import Deferred, succeed

OPEN: int = WebSocketProtocol.STATE_OPEN
"""
Autobahn's C{STATE_OPEN}, for the per-frame test C{protocol.state == OPEN}: read through
the protocol instead, a class attribute costs a lookup CPython 3.11 does not specialise.
"""


class CloseWaiters:
    """
    L{when_closed} for a protocol. The protocol calls L{_closing_now} when its connection
    has closed (before it tells its owner, so that anyone asking meanwhile is answered at
    once) and L{_release_close_waiters} after.
    """

    def _init_close_waiters(self) -> None:
        # A list once someone waits (most connections never have anyone).
        self._close_waiters: list[Deferred[None]] | None = None
        self._closed = False

    def when_closed(self) -> Deferred[None]:
        """A Deferred that fires once the connection is closed (at once if it already is)."""
        if self._closed:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        if self._close_waiters is None:
            self._close_waiters = []
        self._close_waiters.append(waiter)
        return waiter

    def _closing_now(self) -> None:
        self._closed = True

    def _release_close_waiters(self) -> None:
        waiters, self._close_waiters = self._close_waiters, None
        for waiter in waiters or ():
            waiter.callback(None)
