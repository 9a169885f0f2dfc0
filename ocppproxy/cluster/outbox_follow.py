"""
Cluster mode's outbox: it lives in Redis (L{ocppproxy.cluster.outbox_streams}) and follows
the station.

- A station that connects here (its claim): its backlog is read from Redis into the
  memory queues before its mirror links send anything of it; its live frames queue
  behind that backlog (L{ocppproxy.relay.outbox.Outbox.begin_load}).
- Another instance's newer claim replaces it, or it leaves: its memory copy is forgotten;
  Redis keeps the entries.
- Every C{interval} seconds this instance looks in Redis for stations with a backlog and
  no claim (their instance was killed, or they left), claims one only if still nobody
  does (so one connection per station id holds for drains too: the station connecting
  elsewhere replaces the drain, which closes), loads its backlog and drains it with the
  single instance's drain links (L{ocppproxy.relay.outbox_drain}); done, it releases
  the claim.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from ..config.model import OutboxConfig
from ..logs import proxy_logger
from ..periodic import Periodic
from ..relay.outbox import Outbox
from ..relay.outbox_db import TRIM
from ..relay.outbox_drain import Drains
from ..relay.outbox_store import OutboxStore
from ..relay.writer_thread import WriterThread
from .outbox_streams import StreamsStore
from .service import ClusterService

TRIM_INTERVAL = 60.0
"""Seconds between two applications of the bounds when no frame comes."""
LOAD_TIMEOUT = 2.0
"""Seconds a station's live entries wait for its backlog to be read from Redis, at most."""
UNDRAINED_PAUSE = 300.0
"""Seconds an instance leaves alone a backlog it claimed and could not drain (it drains when the station connects)."""
DRAINS_PER_LOOK = 20
"""Absent stations one instance claims per look at most (the others leave some to the other instances)."""


class DrainHold:
    """This instance's claim on an absent station whose backlog it drains; closed when a newer claim comes."""

    def __init__(self, station_id: str, follower: OutboxFollower) -> None:
        self.station_id = station_id
        self._follower = follower

    def close(self, code: int, reason: str) -> None:
        """Another instance claims the station (it connected there): the drain stops and closes first."""
        self._follower.drain_replaced(self)


class OutboxFollower:
    """
    Keeps the memory queues of exactly the stations this instance holds or drains. Told by
    the cluster service (L{ClusterService.watch_holds}); C{sessions} are the proxy's
    connected stations, C{drains()} its drains (None until the proxy is built).
    """

    _log = proxy_logger()

    def __init__(
        self,
        outbox: Outbox,
        store: StreamsStore,
        cluster: ClusterService,
        sessions: Mapping[str, Any],
        drains: Callable[[], Drains | None],
        clock: Any,
        settle: float,
    ) -> None:
        self.outbox = outbox
        self._store = store
        self._cluster = cluster
        self._sessions = sessions
        self._drains = drains
        self._clock = clock
        self._settle = settle
        self.held: set[str] = set()
        """Stations whose backlog is in memory here (connected, or drained)."""
        self.holds: dict[str, DrainHold] = {}
        self._idle_since: dict[str, float] = {}
        self._undrained: dict[str, float] = {}
        """Stations released with their backlog (no drain link could open): not claimed again until then."""
        self._up_since: float | None = None
        self._loads: dict[str, object] = {}
        self._rank = 0
        """Where the next look for absent stations begins among the backlogs (they may be many, mostly held)."""
        cluster.watch_holds(self.station_held, self.station_released)
        outbox.seq_from_clock = True
        outbox.drainable = self.holds.__contains__

    def station_held(self, station: str) -> None:
        """A station connected here: its backlog comes from Redis first (unless it is here already)."""
        self.holds.pop(station, None)  # a drain of it, stopped by the proxy: the connection takes its backlog
        if station in self.held:
            return
        self.held.add(station)
        self._load(station)

    def station_released(self, station: str) -> None:
        """This instance no longer holds C{station}: its memory copy goes (Redis keeps the entries)."""
        if station in self.holds:
            return  # a drain's release: see drain_replaced and _release
        self.held.discard(station)
        self.outbox.unload_station(station)

    def _load(self, station: str) -> Deferred:
        """
        Read C{station}'s backlog into memory; its live entries wait for it, at most
        L{LOAD_TIMEOUT} seconds: then they go on, and the backlog stays in Redis (it
        drains when the station next leaves, after what came since, in order).
        """
        self.outbox.begin_load(station)
        token = self._loads[station] = object()

        def loaded(result: tuple) -> None:
            if self._loads.get(station) is not token:
                return  # given up (too slow), or a newer load
            del self._loads[station]
            if timer.active():
                timer.cancel()
            entries, own_ids, facts = result
            self.outbox.load_station(station, entries, own_ids, facts)
            if entries:
                self._log.info(
                    "outbox: station {station}'s backlog loaded from Redis ({count} entries for {upstreams})",
                    station=station, count=sum(len(each) for each in entries.values()),
                    upstreams=", ".join(sorted(entries)),
                )
            if station not in self.held:
                self.outbox.unload_station(station)
                return
            session = self._sessions.get(station)
            if session is not None:
                session.outbox_loaded()

        def failed(failure: Failure) -> None:
            if self._loads.get(station) is token:
                self._log.warn("outbox: station {station}'s backlog not read from Redis ({reason}); it drains later",
                               station=station, reason=failure.getErrorMessage())
            loaded(({}, {}, None))

        def too_slow() -> None:
            failed(Failure(TimeoutError(f"no answer in {LOAD_TIMEOUT:g} s")))

        timer = self._clock.callLater(LOAD_TIMEOUT, too_slow)
        return self._store.load(station).addCallbacks(loaded, failed)

    # --- drains of absent stations

    def look(self) -> Deferred:
        """Release the drains that are done; claim and drain stations with a backlog and no claim."""
        self._release_done()
        self._forget_strays()
        now = self._clock.seconds()
        if not self._cluster.redis_up:
            self._up_since = None
            return succeed(None)
        if self._up_since is None:
            self._up_since = now
        if now - self._up_since < self._settle:
            return succeed(None)  # Redis is back: the instances write their claims back first
        looking = self._store.absent(DRAINS_PER_LOOK, self._rank)
        return looking.addCallback(self._claim_each).addErrback(self._look_failed)

    def _look_failed(self, failure: Failure) -> None:
        self._log.debug("outbox: no look for backlogs: {reason}", reason=failure.getErrorMessage())

    def _claim_each(self, found: tuple[list[str], int]) -> None:
        stations, self._rank = found
        now = self._clock.seconds()
        for station in stations:
            if station in self.held or station in self._sessions or self._undrained.get(station, 0) > now:
                continue
            hold = DrainHold(station, self)
            self._cluster.claim_absent(hold).addCallback(self._claimed, hold)

    def _claimed(self, claimed: bool, hold: DrainHold) -> Deferred | None:
        station = hold.station_id
        if not claimed or station in self.held:
            return None
        self.holds[station] = hold
        self.held.add(station)
        self._log.info("outbox: station {station} is away with a backlog and no instance holds it: draining it here",
                       station=station)

        def drain(_: Any) -> None:
            drains = self._drains()
            if drains is not None and self.holds.get(station) is hold:
                drains.open_drains()

        return self._load(station).addCallback(drain)

    def drain_replaced(self, hold: DrainHold) -> None:
        """The station connected on another instance: its drain here closes, the memory copy goes."""
        station = hold.station_id
        if self.holds.get(station) is not hold:
            return
        del self.holds[station]
        drains = self._drains()
        stopping = drains.stop_for(station) if drains is not None else succeed(None)
        self.held.discard(station)
        self.outbox.unload_station(station)
        stopping.addErrback(lambda failure: None)

    def _forget_strays(self) -> None:
        """
        Forget the memory queues of stations not held here: what a replaced connection,
        still closing, sent after its station was released (written to Redis all the same).
        """
        for station in set(self.outbox.stations_queued()) - self.held:
            if not (self._drains() and station in self._drains().drains):
                self.outbox.unload_station(station)

    def _release_done(self) -> None:
        """Drains whose backlog is delivered, or that cannot drain, release their claim."""
        drains = self._drains()
        now = self._clock.seconds()
        for station, hold in list(self.holds.items()):
            if drains is not None and (station in drains.drains or drains.waits_for_probe(station)):
                # Draining, or waiting for its upstream to be reached by another station's drain link: kept.
                self._idle_since.pop(station, None)
                continue
            backlog = any(len(queue) for _, queue in self.outbox.queues_of(station))
            idle = self._idle_since.setdefault(station, now)
            if backlog and now - idle < self._settle:
                continue  # its drain opens at the next look of the proxy's drains
            self._idle_since.pop(station, None)
            del self.holds[station]
            self.held.discard(station)
            self.outbox.unload_station(station)
            self._cluster.station_ended(hold)
            if not backlog:
                self._log.info("outbox: station {station}'s backlog drained; its claim released", station=station)
            else:
                # It cannot drain while away (its credentials are its own, say): not claimed again for a while.
                self._undrained[station] = now + UNDRAINED_PAUSE
        for station, until in list(self._undrained.items()):
            if until <= now:
                del self._undrained[station]

    def stop(self) -> None:
        """Shutdown: every drain's claim released (its backlog stays in Redis for the others)."""
        for station, hold in list(self.holds.items()):
            del self.holds[station]
            self.held.discard(station)
            self._cluster.station_ended(hold)


class ClusterOutboxService(MultiService):
    """
    The outbox in cluster mode (L{outbox}): its Redis store, the local file for Redis
    outages and its writer thread, the bounds applied once a minute when idle, and the
    look for absent stations' backlogs every C{interval} seconds.
    """

    def __init__(
        self,
        config: OutboxConfig,
        reactor: Any,
        cluster: ClusterService,
        sessions: Mapping[str, Any],
        drains: Callable[[], Drains | None],
        interval: float,
        settle: float,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self._writer = WriterThread(reactor, "ocppproxy-outbox")
        local = OutboxStore(config, reactor, self._run)
        self.store = StreamsStore(config, reactor, cluster.redis, local, self._run)
        self.outbox = Outbox(self.store, reactor.seconds)
        self.follower = OutboxFollower(self.outbox, self.store, cluster, sessions, drains, reactor, settle)
        look = Periodic(interval, self.follower.look, reactor)
        look.setName("drains")
        look.setServiceParent(self)
        self._trim = LoopingCall(self.store.write, (TRIM,))
        self._trim.clock = reactor

    def _run(self, function, *args) -> Deferred:
        return self._writer.run(function, *args)

    def startService(self) -> None:
        """Start the writer thread and open the local file (its entries go to Redis once it is reachable)."""
        self._writer.start()
        super().startService()
        self.store.start()
        self._trim.start(TRIM_INTERVAL, now=False)

    def stopService(self) -> Deferred:
        """Release the drains' claims, send or write what is pending, close the file, stop the thread."""
        if not self.running:
            return succeed(None)
        if self._trim.running:
            self._trim.stop()
        self.follower.stop()
        stopping = super().stopService()

        return stopping.addCallback(lambda _: self.store.stop()).addBoth(lambda _: self._writer.stop())
