"""
Drain links: the backlog of a station that is not connected is delivered all the same.

L{Drains} looks, at start-up and then every C{reconnect.max_delay} seconds, for stations
with a backlog and no session on this instance; for each it opens a L{StationDrain}: one
link per upstream owed something, with the subprotocol the station last agreed, starting
with the station's last BootNotification unless the backlog begins with one, the
backlog sent by the queue's rules, the link closed once the backlog is empty. Its links
retry every C{reconnect.max_delay} seconds for as long as the backlog lasts. CALLs the
upstream sends on it get a CALLERROR (C{GenericError}, "station offline").

No secret is stored: a drain link carries the upstream's own credentials (C{auth: drop}
or explicit ones), or none when the station sent none; a station whose own credentials
must be passed drains when it next connects. A station connecting stops its drain first
(L{Drains.stop_for}): the central system never sees two connections of one station.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed

from ..config.model import Config, Upstream
from ..core.ocppj import ANSWERS, CALL, FrameError, parse_frame
from ..core.outbox import drain_frames, offline_answer
from ..core.upstream_auth import PASS, CredentialsError, authorization_for
from ..logs import proxy_logger
from ..wire.upstream import UpstreamLink
from .outbox import Outbox

LinkMaker = Callable[..., UpstreamLink]


class StationDrain:
    """The drain links of one absent station; the owner of its L{UpstreamLink}s."""

    _log = proxy_logger()

    def __init__(self, station_id: str, outbox: Outbox, on_done: Callable[[StationDrain], None]) -> None:
        self.station_id = station_id
        self._outbox = outbox
        self._on_done = on_done
        self.links: dict[str, UpstreamLink] = {}
        self._booted: set[str] = set()
        self._stopping = False

    def start(self, links: Mapping[str, UpstreamLink]) -> None:
        """Start connecting C{links} (by upstream name)."""
        self.links = dict(links)
        for name, link in self.links.items():
            self._log.info("station {station} is away: draining its backlog to {upstream}", station=self.station_id,
                           upstream=name)
            link.start()

    def _pump(self, name: str) -> None:
        link = self.links.get(name)
        if link is None or not link.connected:
            return
        outbox, station = self._outbox, self.station_id
        queue = outbox.queue(station, name)
        if not len(queue):
            self._finish(name)
            return
        if name not in self._booted:
            self._booted.add(name)
            for payload in drain_frames(queue.entries(), outbox.stations.get(station, (None, None, False))[1]):
                link.send(payload)
        for entry in queue.ready():
            link.send(queue.payload_for(entry))
            outbox.sent(station, name, entry, backlog=True)
        if not len(queue):
            self._finish(name)

    def _finish(self, name: str) -> None:
        link = self.links.pop(name, None)
        if link is not None:
            self._log.info("station {station}: backlog for {upstream} delivered, drain link closed",
                           station=self.station_id, upstream=name)
            link.stop()
        if not self.links and not self._stopping:
            self._stopping = True
            self._on_done(self)

    def stop(self) -> Deferred:
        """Close every drain link now (the station connected, or shutdown); fires when they are gone."""
        self._stopping = True
        links, self.links = self.links, {}
        for name in links:
            self._outbox.queue(self.station_id, name).link_lost()
        return DeferredList([link.stop() for link in links.values()]).addCallback(lambda _: None)

    # --- LinkOwner

    def from_upstream(self, name: str, payload: bytes) -> None:
        """A frame from the upstream: an answer (an entry delivered, or the BootNotification's), or a CALL refused."""
        try:
            frame = parse_frame(payload)
        except FrameError:
            return
        link = self.links.get(name)
        if frame.kind == CALL:
            answer = offline_answer(payload)
            if answer is not None and link is not None:
                link.send(answer)
        elif frame.kind in ANSWERS:
            self._outbox.answered(self.station_id, name, frame)
            self._pump(name)

    def upstream_connected(self, name: str) -> None:
        """The drain link is up: the BootNotification, then the backlog."""
        self._pump(name)

    def upstream_disconnected(self, name: str, reason: str) -> None:
        """Lost: what was in flight is sent again on the next connection."""
        self._outbox.queue(self.station_id, name).link_lost()
        link = self.links.get(name)
        if link is not None:
            link.queue.clear()
        self._booted.discard(name)

    def upstream_gave_up(self, name: str) -> None:
        self._finish(name)

    def upstream_attempt_failed(self, name: str, reason: str) -> None:
        pass

    def upstream_frame_dropped(self, name: str) -> None:
        pass


class Drains:
    """
    Every drain of this instance. C{connected(station)} says whether a station has a
    session here; C{make_link(station, name, upstream, subprotocol, headers, owner)} makes
    a link; C{upstreams()} the upstreams in force by name.
    """

    _log = proxy_logger()

    def __init__(
        self,
        outbox: Outbox,
        config: Config,
        reactor: Any,
        connected: Callable[[str], bool],
        upstreams: Callable[[], Mapping[str, Upstream]],
        make_link: LinkMaker,
    ) -> None:
        self._outbox = outbox
        self._config = config
        self._reactor = reactor
        self._connected = connected
        self._upstreams = upstreams
        self._make_link = make_link
        self.drains: dict[str, StationDrain] = {}
        self._timer: Any = None
        self._skipped: set[tuple[str, str]] = set()
        # A drain link retries at max_delay for as long as the backlog lasts.
        policy = config.reconnect
        self.policy = replace(policy, initial_delay=policy.max_delay, factor=1.0, max_attempts=2**31)

    def start(self) -> None:
        """Look for backlogs now, and every C{reconnect.max_delay} seconds."""
        self._timer = self._reactor.callLater(0, self.look)

    def look(self) -> None:
        """Open a drain for each station with a backlog, no session here and no drain yet; look again later."""
        self._timer = self._reactor.callLater(max(self._config.reconnect.max_delay, 1.0), self.look)
        self.open_drains()

    def open_drains(self) -> None:
        """Open a drain for each station with a backlog, no session here and no drain yet (now, once)."""
        owed: dict[str, list[str]] = {}
        for station, upstream, *_ in self._outbox.backlogs():
            if station not in self.drains and not self._connected(station) and self._outbox.drainable(station):
                owed.setdefault(station, []).append(upstream)
        for station, names in owed.items():
            links = {}
            subprotocol, _, sent_auth = self._outbox.stations.get(station, (None, None, False))
            for name in names:
                upstream = self._upstreams().get(name)
                headers = self._headers(station, name, upstream, sent_auth)
                if headers is None:
                    continue
                links[name] = (upstream, headers)
            if not links:
                continue
            drain = StationDrain(station, self._outbox, self._done)
            self.drains[station] = drain
            protocol = subprotocol or self._config.default_subprotocol
            drain.start({
                name: self._make_link(station, name, upstream, protocol, headers, drain, self.policy)
                for name, (upstream, headers) in links.items()
            })

    def _headers(self, station: str, name: str, upstream: Upstream | None, sent_auth: bool) -> dict | None:
        """The drain link's handshake headers, or None: it cannot drain now (said once)."""
        if upstream is None:
            reason = "it is no longer configured"
        elif (upstream.auth is None or upstream.auth.mode == PASS) and sent_auth:
            reason = "its credentials are the station's own (auth: pass): it drains when the station connects"
        else:
            try:
                authorization = authorization_for(upstream.auth, None, station)
            except CredentialsError as error:
                reason = str(error)
            else:
                return {"Authorization": authorization} if authorization else {}
        if (station, name) not in self._skipped:
            self._skipped.add((station, name))
            self._log.info("station {station}: backlog for {upstream} not drained while the station is away: {reason}",
                           station=station, upstream=name, reason=reason)
        return None

    def _done(self, drain: StationDrain) -> None:
        if self.drains.get(drain.station_id) is drain:
            del self.drains[drain.station_id]

    def stop_for(self, station: str) -> Deferred:
        """The station connects: its drain (if any) closes first; fires when its links are gone."""
        drain = self.drains.pop(station, None)
        if drain is None:
            return succeed(None)
        self._log.info("station {station} connected: its drain links close, its connection takes over",
                       station=station)
        return drain.stop()

    def stop(self) -> Deferred:
        """Shutdown: no more looking, every drain closed."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        drains, self.drains = list(self.drains.values()), {}
        return DeferredList([drain.stop() for drain in drains]).addCallback(lambda _: None)
