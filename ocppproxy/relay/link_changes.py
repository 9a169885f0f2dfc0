"""
What a change of route does to a station's links (a mixin of L{StationSession}): a
link opened to an upstream that joined the route, and a link replaced once the
upstream's URL, credentials or TLS changed (make before break). The decisions are the
core's (L{ocppproxy.core.routing.StationRelay.change_route}); this is their edge.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.routes import Route, UpstreamRules


class RouteLinks:
    """The links a change of route opens and replaces; mixed into L{StationSession}, whose state it uses."""

    def change_route(self, route: Route, upstreams: Mapping[str, UpstreamRules] | None = None) -> None:
        """Move the station to C{route} (see L{StationRelay.change_route}): links opened and closed as it decides."""
        if self.relay is not None:
            self._carry_out(self.relay.change_route(route, self._clock.seconds(), upstreams))

    def _open_link(self, name: str) -> None:
        """
        A change of route asks for a link to C{name}: it offers the subprotocol the station
        agreed; a refusal, or no handshake within C{handshake_timeout}, is told to the relay.
        """
        if self._closing or self._make_link is None:
            return
        link = self._make_link(name)
        self.links[name] = link
        if self.subprotocol:
            link.set_subprotocols([self.subprotocol])
        timeout = self._handshake_timeout

        def failed(reason: str) -> None:
            if self.links.get(name) is link and not link.connected and not self._closing:
                self._carry_out(self.relay.upstream_failed_to_open(name, reason, self._clock.seconds()))

        timer = self._clock.callLater(timeout, failed, f"no handshake within {timeout:g} s (handshake_timeout)")

        def first(outcome) -> None:
            if timer.active():
                timer.cancel()
            if outcome.subprotocol is None and (outcome.refused_status is not None or outcome.reason):
                status = f"HTTP {outcome.refused_status} " if outcome.refused_status is not None else ""
                failed(f"{status}{outcome.reason}".strip())

        link.first_outcome.addCallback(first)
        link.start()

    def relink(self, name: str) -> None:
        """
        Upstream C{name}'s URL, credentials or TLS changed: the station's link to it is
        replaced by one opened with the new settings. An open link is replaced once the
        new one is open (make before break: the station never has none), frames queued
        for it passed on; a link that is not open is replaced at once. A new link that
        does not open within C{handshake_timeout} is given up and the old one kept.
        """
        old = self.links.get(name)
        if old is None or self._closing or self._make_link is None:
            return
        if not old.connected:
            self.links.pop(name)
            old.stop()
            self._open_link(name)
            return
        owner = _Candidate(self, name)
        link = self._make_link(name, owner)
        if self.subprotocol:
            link.set_subprotocols([self.subprotocol])

        def give_up(reason: str) -> None:
            if not owner.promoted and not owner.abandoned:
                owner.abandoned = True
                self._log.warn(
                    "station {station}: the new link to {upstream} did not open ({reason}): keeping the old one",
                    station=self.station_id,
                    upstream=name,
                    reason=reason,
                )
                link.stop()

        timer = self._clock.callLater(
            self._handshake_timeout, give_up, f"no handshake within {self._handshake_timeout:g} s (handshake_timeout)"
        )

        def first(outcome) -> None:
            if timer.active():
                timer.cancel()
            if outcome.subprotocol is None:
                give_up(f"{outcome.refused_status or ''} {outcome.reason}".strip())
                return
            if owner.abandoned or self._closing or self.links.get(name) is not old:
                link.stop()
                return
            owner.promoted = True
            self.links[name] = link
            # The new link is open but not yet flushing: what waited for the old one goes first.
            while len(old.queue):
                link.send(old.queue.popleft())
            old.stop()
            self._log.info("station {station}: re-linked to {upstream} ({url})", station=self.station_id,
                           upstream=name, url=link.url)

        link.first_outcome.addCallback(first)
        link.start()


class _Candidate:
    """
    The owner of a link opened to replace another (see L{RouteLinks.relink}): until
    it is promoted, its attempts and give-ups are its own business (the old link still
    serves the station); from then on it reports to the session like any link.
    """

    def __init__(self, session: StationSession, name: str) -> None:
        self._session = session
        self._name = name
        self.promoted = False
        self.abandoned = False

    def from_upstream(self, name: str, payload: bytes) -> None:
        if self.promoted:
            self._session.from_upstream(name, payload)

    def upstream_connected(self, name: str) -> None:
        if self.promoted:
            self._session.upstream_connected(name)

    def upstream_disconnected(self, name: str, reason: str) -> None:
        if self.promoted:
            self._session.upstream_disconnected(name, reason)

    def upstream_gave_up(self, name: str) -> None:
        if self.promoted:
            self._session.upstream_gave_up(name)

    def upstream_attempt_failed(self, name: str, reason: str) -> None:
        if self.promoted:
            self._session.upstream_attempt_failed(name, reason)

    def upstream_frame_dropped(self, name: str) -> None:
        if self.promoted:
            self._session.upstream_frame_dropped(name)
