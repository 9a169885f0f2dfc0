"""
A live migration: after a reload changed the routes or the upstreams, the connected
stations are moved to their new route (and re-linked to an upstream whose URL,
credentials or TLS changed) at a bounded pace, C{migration_rate} stations a second, so
that a central system taking over a fleet sees no storm of handshakes. Time comes from
the reactor given (a L{twisted.internet.task.Clock} in tests); nothing blocks it: the
queue is worked through a slice per turn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from ..logs import proxy_logger
from .routing_state import Routing
from .session import StationSession

SCAN_PER_TURN = 500
"""Stations looked at per turn of the reactor (a route lookup each): a turn stays short."""
WAIT_FOR_HANDSHAKES = 0.5
"""Seconds before looking again when only stations still in their handshake are left."""
SERVICE_RESTART = 1012


class RouteMigration:
    """
    The paced queue of connected stations to bring onto the routing in force. L{start}
    puts every connected station in it (once); each is then compared with the routing:
    a station whose route or links differ is changed (L{StationSession.change_route},
    L{StationSession.relink}), at most C{migration_rate} a second (a token bucket whose
    burst is a tenth of a second's worth); one whose rules alone differ is updated at
    once (no link is touched); a station no route admits any more is closed with 1012 (it
    reconnects and is refused with 404); one still in its handshake waits its turn again.
    """

    _log = proxy_logger()

    def __init__(self, clock, sessions: Mapping[str, StationSession], routing: Routing) -> None:
        self.routing = routing
        self._clock = clock
        self._sessions = sessions
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._tokens = 1.0
        self._stamp = clock.seconds()
        self._call = None
        self.changed = 0
        """Stations moved, re-linked or closed since start-up."""

    def __len__(self) -> int:
        return len(self._queue)

    def start(self, routing: Routing) -> None:
        """Bring every connected station onto C{routing} (those queued by an earlier reload keep their place)."""
        self.routing = routing
        queued = self._queued
        for station_id in list(self._sessions):
            if station_id not in queued:
                queued.add(station_id)
                self._queue.append(station_id)
        if self._queue:
            self._log.info(
                "routes reloaded: {count} connected stations to check, at most {rate:g} changed per second",
                count=len(self._queue),
                rate=routing.migration_rate,
            )
            self._schedule(0)

    def stop(self) -> None:
        """Forget the queue (shutdown)."""
        self._queue.clear()
        self._queued.clear()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self, delay: float) -> None:
        if self._call is None or not self._call.active():
            self._call = self._clock.callLater(delay, self._step)

    def _take(self, now: float) -> float:
        """A token for one change: 0.0 if taken, else the seconds until one is due."""
        rate = self.routing.migration_rate
        tokens = min(max(1.0, rate / 10), self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return (1.0 - tokens) / rate
        self._tokens = tokens - 1.0
        return 0.0

    def _step(self) -> None:
        self._call = None
        queue, queued, sessions, routing = self._queue, self._queued, self._sessions, self.routing
        progress = False
        for _ in range(min(SCAN_PER_TURN, len(queue))):
            station_id = queue[0]
            session = sessions.get(station_id)
            if session is None or session.routing is routing:
                queue.popleft()
                queued.discard(station_id)
                progress = True
                continue
            if not session.ready:
                queue.rotate(-1)
                continue
            route = routing.route(station_id)
            relinked = [
                name
                for name, made_with in session.link_settings.items()
                if route is not None and name in route.upstreams and routing.upstreams[name].connection != made_with
            ]
            if route is not None and route == session.target_route and not relinked:
                # Only the rules (calls, receives) may differ: no link is touched, no pace needed.
                session.change_route(route, routing.rules)
                session.routing = routing
                queue.popleft()
                queued.discard(station_id)
                progress = True
                continue
            wait = self._take(self._clock.seconds())
            if wait > 0.0:
                self._schedule(wait)
                return
            queue.popleft()
            queued.discard(station_id)
            progress = True
            self.changed += 1
            self._move(session, route, relinked)
        if queue:
            self._schedule(0 if progress else WAIT_FOR_HANDSHAKES)

    def _move(self, session: StationSession, route, relinked: list[str]) -> None:
        routing = self.routing
        session.routing = routing
        if route is None:
            self._log.warn(
                "station {station}: no route admits it any more: closing it with {code}",
                station=session.station_id,
                code=SERVICE_RESTART,
            )
            session.close(SERVICE_RESTART, "no route for this station any more")
            return
        for name in relinked:
            session.relink(name)
        session.change_route(route, routing.rules)
