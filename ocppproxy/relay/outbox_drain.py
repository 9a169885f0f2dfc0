"""
Drain links: the backlog of a station that is not connected is delivered all the same.

L{Drains} looks, at start-up and then every C{reconnect.max_delay} seconds, for stations
with a backlog and no session on this instance; for each it opens a L{StationDrain}: one
link per upstream owed something, with the subprotocol the station last agreed, starting
with the station's last BootNotification unless the backlog begins with one, the
backlog sent by the queue's rules, the link closed once the backlog is empty. Its links
retry every C{reconnect.max_delay} seconds for as long as the backlog lasts. CALLs the
upstream sends on it get a CALLERROR (C{GenericError}, "station offline").

An upstream that cannot be reached is tried by one drain link, not by all of them: when a
drain link's attempt fails short of an HTTP answer (refused, timed out, TLS), that station
probes the upstream alone (every C{reconnect.max_delay} seconds); the other drain links to
it stop, and no new one is opened, until the probe connects; then every backlog waiting
for it is opened at once. So a thousand stations away while their mirror is down cost one
connection attempt and one log line every C{max_delay}, not a thousand. An HTTP refusal
says nothing of the others (a mirror that does not know one station id): it parks nothing.

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
    """
    The drain links of one absent station; the owner of its L{UpstreamLink}s. C{watcher}
    (the L{Drains}) is told when a link connects or fails short of an HTTP answer.
    """

    _log = proxy_logger()

    def __init__(
        self, station_id: str, outbox: Outbox, on_done: Callable[[StationDrain], None], watcher: Drains
    ) -> None:
        self.station_id = station_id
        self._outbox = outbox
        self._on_done = on_done
        self._watcher = watcher
        self.links: dict[str, UpstreamLink] = {}
        self._booted: set[str] = set()
        self._stopping = False

    def start(self, links: Mapping[str, UpstreamLink]) -> None:
        """Start connecting C{links} (by upstream name; more may be started later, see L{Drains.open_drains})."""
        self.links.update(links)
        for name, link in links.items():
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
        self._done_if_empty()

    def park(self, name: str) -> None:
        """Stop trying C{name} for now (another drain probes it); its backlog stays for a later drain link."""
        link = self.links.pop(name, None)
        if link is not None:
            self._outbox.queue(self.station_id, name).link_lost()
            self._booted.discard(name)
            link.stop()
        self._done_if_empty()

    def _done_if_empty(self) -> None:
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
        self._watcher.reachable(name)
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
        link = self.links.get(name)
        if link is not None and link.last_refused_status is None:
            self._watcher.unreachable(self, name)

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
        self.probes: dict[str, str] = {}
        """By upstream that cannot be reached: the station whose drain link alone tries it (see the module's doc)."""
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
        """
        Open a drain link for each backlog of a station with no session here, unless one
        is open or its upstream cannot be reached and another station's link probes it (now, once).
        """
        owed: dict[str, list[str]] = {}
        for station, upstream, *_ in self._outbox.backlogs():
            drain = self.drains.get(station)
            if drain is not None and upstream in drain.links or self._waits(station, upstream):
                continue
            if not self._connected(station) and self._outbox.drainable(station):
                owed.setdefault(station, []).append(upstream)
        for station, names in owed.items():
            links = {}
            subprotocol, _, sent_auth = self._outbox.stations.get(station, (None, None, False))
            for name in names:
                upstream = self._upstreams().get(name)
                headers = self._headers(station, name, upstream, sent_auth)
                if headers is None or self._waits(station, name):  # (again: a station before may probe it now)
                    continue
                links[name] = (upstream, headers)
                if name in self.probes:
                    self.probes[name] = station  # the probe went (connected, drained): this one takes over
            if not links:
                continue
            drain = self.drains.get(station)
            if drain is None:
                drain = self.drains[station] = StationDrain(station, self._outbox, self._done, self)
            protocol = subprotocol or self._config.default_subprotocol
            drain.start({
                name: self._make_link(station, name, upstream, protocol, headers, drain, self.policy)
                for name, (upstream, headers) in links.items()
            })

    def _waits(self, station: str, name: str) -> bool:
        """Whether C{station}'s backlog for C{name} waits: C{name} cannot be reached and another drain probes it."""
        probe = self.probes.get(name)
        if probe is None or probe == station:
            return False
        drain = self.drains.get(probe)
        return drain is not None and name in drain.links

    def waits_for_probe(self, station: str) -> bool:
        """Whether a backlog of C{station} waits for another station's drain link to reach its upstream."""
        queues = self._outbox.queues
        return any(
            self._waits(station, name) and len(queues.get((station, name)) or ())
            for name in self.probes
        )

    def unreachable(self, drain: StationDrain, name: str) -> None:
        """
        A drain link's attempt to C{name} failed short of an HTTP answer: unless another
        drain probes C{name} already, C{drain} does, and every other drain link to it not
        connected stops (their backlogs wait for the probe).
        """
        if self._waits(drain.station_id, name):
            drain.park(name)
            return
        if name not in self.probes:
            parked = 0
            for other in list(self.drains.values()):
                link = other.links.get(name)
                if other is not drain and link is not None and not link.connected:
                    other.park(name)
                    parked += 1
            self._log.warn(
                "upstream {upstream} cannot be reached from the drain links: station {station}'s alone tries it"
                " every {delay:g} s; the backlogs of the other stations away wait for it ({parked} links stopped)",
                upstream=name, station=drain.station_id, delay=self.policy.max_delay, parked=parked,
            )
        self.probes[name] = drain.station_id

    def reachable(self, name: str) -> None:
        """A drain link to C{name} connected: if a probe was trying it, every backlog waiting for it drains now."""
        if self.probes.pop(name, None) is not None:
            self._log.info("upstream {upstream} is reachable again: the backlogs that waited for it drain now",
                           upstream=name)
            self._reactor.callLater(0, self.open_drains)

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
