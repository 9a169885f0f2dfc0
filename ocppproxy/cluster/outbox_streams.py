"""
The cluster outbox's store: Redis Streams (layout in L{ocppproxy.core.outbox_streams}),
behind the interface of the single instance's L{OutboxStore} (C{write(operation)},
C{start}, C{stop}, C{healthy}, C{on_dropped}, C{snapshot}).

Nothing on a frame's path waits for Redis: operations are queued in memory and sent every
C{interval} seconds at most as one call of the apply script (one atomic group; the bounds
applied with it), one group at a time. An entry is durable once Redis answered its group.
An entry delivered before its group was sent is never sent at all.

While Redis is away (a group refused or unanswered), operations go to the instance's
local file (the single instance's SQLite store, in C{outbox.directory}); once Redis takes
groups again, what the file holds is moved to Redis, in order, before anything newer,
then the file is emptied. The same happens at start-up with what a previous run left
in the file. Writing an entry twice is harmless (the script skips a C{seq} it has).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from ..config.model import OutboxConfig
from ..core.outbox import Entry
from ..core.outbox_streams import decode_absent, decode_dropped, decode_head, decode_page, encode_operations
from ..logs import proxy_logger
from ..relay.outbox_db import DELETE, OWN_ID, PUT, STATION, Loaded
from ..relay.outbox_store import OutboxStore, Runner
from .outbox_lua import ABSENT_SCRIPT, APPLY_SCRIPT, PAGE_SCRIPT, STATION_SCRIPT

if TYPE_CHECKING:
    from .redis import RedisLink

AWAY, MOVING, UP = "away", "moving", "up"
MAX_GROUP = 2000
"""Operations per script call at most: a backlog written at once does not hold Redis for long."""
ABSENT_WINDOW = 5000
"""Backlogs one look for absent stations checks (the next look goes on from there)."""
LOAD_PAGE = 5000
"""Entries per read when a station's backlog is loaded."""
OUTAGE_DELETES = 100_000
"""Entries delivered while Redis is away whose removal is kept for it (beyond: delivered again, at least once)."""


class StreamsStore:
    """The outbox in Redis Streams, the local file while Redis is away; see the module's doc."""

    _log = proxy_logger()

    def __init__(
        self,
        config: OutboxConfig,
        reactor: Any,
        redis: RedisLink,
        local: OutboxStore,
        run: Runner,
        interval: float = 0.005,
        retry_interval: float = 0.25,
        move_retry: float = 5.0,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self._redis = redis
        self.local = local
        self.db = local.db
        self._run = run
        self._interval = interval
        self.state = AWAY
        self._pending: list[tuple | None] = []
        self._unsent: dict[tuple[str, str, int], int] = {}
        self._timer: Any = None
        self._in_flight = 0
        self._idle: list[Deferred] = []
        self._outage_deletes: list[tuple] = []
        self._moving: Deferred | None = None
        self.outages = 0
        self._outage_logged = False
        self._next_move = 0.0
        self._move_retry = move_retry
        self.commits = 0
        self.moved = 0
        self.on_dropped: Callable[[list[tuple[str, str, int]]], None] = lambda dropped: None
        self.snapshot: Callable[[], tuple[Iterable, Iterable]] = lambda: ((), ())
        local.on_dropped = lambda dropped: self.on_dropped(dropped)
        local.snapshot = lambda: self.snapshot()
        self._retry = LoopingCall(self._try_redis)
        self._retry.clock = reactor
        self._retry_interval = retry_interval

    @property
    def healthy(self) -> bool:
        """Whether entries are written somewhere durable: Redis takes them, or the local file does."""
        return self.state != AWAY or self.local.healthy

    @property
    def fault_episodes(self) -> int:
        """Episodes of the local file not being writable (Redis outages are L{outages})."""
        return self.local.fault_episodes

    def start(self) -> Deferred:
        """Open the local file; its entries (a previous run's) move to Redis once it is reachable."""
        self._retry.start(self._retry_interval, now=False)
        return self.local.start()

    # --- writing

    def write(self, operation: tuple) -> None:
        """Queue one operation for the next group (to Redis, or the local file while Redis is away)."""
        if self.state == AWAY:
            self._to_local(operation)
            return
        kind = operation[0]
        if kind == PUT:
            self._unsent[(operation[1], operation[2], operation[3].seq)] = len(self._pending)
        elif kind == DELETE:
            index = self._unsent.pop(operation[1:4], None)
            if index is not None:
                self._pending[index] = None
                return
        self._pending.append(operation)
        if self.state == UP and self._timer is None and not self._in_flight:
            self._timer = self._reactor.callLater(self._interval, self._flush)

    def delete(self, station: str, upstream: str, entry: Entry) -> None:
        """C{entry} left the outbox (delivered)."""
        self.write((DELETE, station, upstream, entry.seq, entry))

    def _to_local(self, operation: tuple) -> None:
        if operation[0] == DELETE and len(operation) > 4:
            self.local.delete(*operation[1:3], operation[4])  # never written if its PUT still waits
        else:
            self.local.write(operation)
        if operation[0] == DELETE and len(self._outage_deletes) < OUTAGE_DELETES:
            self._outage_deletes.append(operation)

    def _flush(self) -> None:
        """Send the pending group now (one script call)."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        pending = [operation for operation in self._pending if operation is not None]
        batch, self._pending = pending[:MAX_GROUP], pending[MAX_GROUP:]
        self._unsent = {
            (operation[1], operation[2], operation[3].seq): index
            for index, operation in enumerate(self._pending)
            if operation[0] == PUT
        }
        if batch:
            self._send(batch, fall_back=True)

    def _send(self, batch: list[tuple], fall_back: bool = False) -> Deferred:
        """
        One group to Redis; fires once Redis answered it (the bounds' drops reported). Not
        taken: with C{fall_back} it goes to the local file (before anyone waiting for the
        store to be idle hears of it), else the failure is passed on.
        """
        arguments = [self.config.max_bytes, int(self.config.max_age * 1000)] + encode_operations(batch)
        self._in_flight += 1
        sending = self._redis.execute(APPLY_SCRIPT, [], arguments)

        def done(reply: Any) -> None:
            self.commits += 1
            dropped = decode_dropped(reply)
            if dropped:
                self.on_dropped(dropped)

        def failed(failure: Failure) -> Failure | None:
            if not fall_back:
                return failure
            self._away(failure, batch)
            return None

        def finished(result: Any) -> Any:
            self._in_flight -= 1
            if not self._in_flight:
                if self._pending and self.state == UP and self._timer is None:
                    self._timer = self._reactor.callLater(self._interval, self._flush)
                idle, self._idle = self._idle, []
                for waiting in idle:
                    waiting.callback(None)
            return result

        return sending.addCallbacks(done, failed).addBoth(finished)

    def _away(self, failure: Failure, batch: list[tuple]) -> None:
        """Redis did not take C{batch}: it, and what follows, goes to the local file until Redis is back."""
        if not self._outage_logged:
            self._outage_logged = True
            self.outages += 1
            self._log.warn(
                "outbox: Redis does not take entries ({reason}); writing them to {path} until it does",
                reason=failure.getErrorMessage(), path=self.db.path,
            )
        self.state = AWAY
        pending, self._pending = [operation for operation in self._pending if operation is not None], []
        self._unsent = {}
        for operation in batch + pending:
            self._to_local(operation)

    # --- Redis back: the local file moved to it

    def _try_redis(self) -> None:
        """Redis reachable while entries go to the local file: move it (again C{move_retry} s after a failed move)."""
        if self.state == AWAY and self._redis.up and self.local.healthy and self._reactor.seconds() >= self._next_move:
            self._move()

    def _move(self) -> Deferred:
        """Move what the local file holds to Redis, in order, then what came meanwhile; empty the file."""
        self.state = MOVING
        deletes, self._outage_deletes = self._outage_deletes, []
        db = self.local.db

        def read() -> Loaded:
            db.open()
            return db.load()

        def send(loaded: Loaded) -> Deferred:
            operations = moved_operations(loaded) + deletes
            count = sum(len(entries) for entries in loaded.entries.values())
            sending: Deferred = succeed(None)
            for start in range(0, len(operations), MAX_GROUP):
                chunk = operations[start : start + MAX_GROUP]
                sending.addCallback(lambda _, chunk=chunk: self._send(chunk))
            return sending.addCallback(lambda _: count)

        def emptied(count: int) -> Deferred:
            return self._run(db.rewrite, (), ()).addCallback(lambda _: count)

        def back(count: int) -> None:
            self.state = UP
            self.moved += count
            if self._outage_logged or count:
                self._outage_logged = False
                self._log.info("outbox: Redis takes entries again; {count} moved to it from {path}", count=count,
                               path=db.path)
            if self._pending:
                self._flush()

        def failed(failure: Failure) -> None:
            self._outage_deletes = deletes + self._outage_deletes
            self._next_move = self._reactor.seconds() + self._move_retry
            self._away(failure, [])

        def moved(result: Any) -> Any:
            self._moving = None
            return result

        moving = self.local.stop().addCallback(lambda _: self._run(read)).addCallback(send)
        moving.addCallback(emptied).addCallbacks(back, failed).addBoth(moved)
        self._moving = None if moving.called else moving
        return moving

    # --- reading

    def load(self, station: str) -> Deferred:
        """
        C{station}'s backlog in Redis: fires with (entries by upstream, ids learnt by
        upstream, drain facts or None), nothing while Redis is away. What is pending is
        sent first (the connection keeps the order), so the read sees it. Each stream is
        read in pages of L{LOAD_PAGE} entries (Redis is never held long by one read).
        """
        if not self._redis.up:
            return succeed(({}, {}, None))
        if self.state == UP:
            self._flush()
        return ensureDeferred(self._load(station))

    async def _load(self, station: str) -> tuple:
        upstreams, own_ids, facts = decode_head(await self._redis.execute(STATION_SCRIPT, [], [station]))
        entries: dict[str, list[Entry]] = {}
        for upstream in upstreams:
            found: list[Entry] = []
            after: str | None = "-"
            while after is not None:
                page, last = decode_page(await self._redis.execute(PAGE_SCRIPT, [], [station, upstream, after, LOAD_PAGE]))
                found.extend(page)
                after = last if len(page) == LOAD_PAGE else None
            if found:
                entries[upstream] = sorted(found, key=lambda entry: entry.seq)
        return entries, own_ids, facts

    def absent(self, limit: int, start: int = 0, window: int = ABSENT_WINDOW) -> Deferred:
        """
        Fires with (up to C{limit} stations that have a backlog in Redis and no claim,
        oldest first, among C{window} backlogs from rank C{start}; the rank to look from
        next, 0 when the last were seen).
        """
        if not self._redis.up:
            return succeed(([], 0))
        return self._redis.execute(ABSENT_SCRIPT, [], [limit, start, window]).addCallback(decode_absent)

    def stop(self) -> Deferred:
        """Shutdown: the pending group sent (or written locally), then the local file closed; fires when done."""
        if self._retry.running:
            self._retry.stop()
        if self._moving is not None:
            # The local file is being moved (and then emptied): what is pending goes after.
            waiting: Deferred = Deferred()
            self._moving.addBoth(lambda result: (waiting.callback(None), result)[1])
            return waiting.addCallback(lambda _: self.stop())
        if self.state == UP:
            self._flush()
        if self._in_flight:
            idle: Deferred = Deferred()
            self._idle.append(idle)
            return idle.addCallback(lambda _: self.stop())
        if self._pending:
            self._away(Failure(RuntimeError("shutting down")), [])
        return self.local.stop()


def moved_operations(loaded: Loaded) -> list[tuple]:
    """What the local file holds as operations for Redis: each station's drain facts, entries in order, ids."""
    operations: list[tuple] = []
    for station, (subprotocol, boot, sent_auth) in loaded.stations.items():
        operations.append((STATION, station, subprotocol, boot, sent_auth))
    for (station, upstream), entries in sorted(loaded.entries.items()):
        ordered: list[Entry] = sorted(entries, key=lambda entry: entry.seq)
        operations.extend((PUT, station, upstream, entry) for entry in ordered)
    for (station, upstream), ids in loaded.own_ids.items():
        operations.extend((OWN_ID, station, upstream, tx, own) for tx, own in ids.items())
    return operations
