"""
The durable outbox's store on the reactor side: operations (an entry owed, an entry
delivered, an id learnt) are queued in memory at once and written by one writer thread
in groups, one SQLite transaction per group (group commit, one group at a time), so that
nothing on a frame's path waits for the disk.

Every entry is written at most C{interval} seconds (9 ms) after it came: the commit
timer is set for the oldest pending entry's deadline, and then writes, as one group,
everything queued up to the first entry that is in flight to a connected mirror and not
yet due itself, or, once the group has something to write, queued less than C{age}
seconds (4 ms) before (it and what follows wait for the next deadline). An entry the
mirror answers first is never written at all (a mirror that keeps up costs the disk
nothing, and one that answers a little late costs a commit only for the entries it has
not answered by their own deadline); one that cannot be answered yet (its mirror away)
is written at the first deadline, so a mirror that is down costs a commit (an C{fsync})
every 9 ms or so, not every few. What a crash can lose is therefore the last 9 ms of
entries plus the commit under way (its C{fsync}, about a millisecond).

Faults never stop relaying: when a group cannot be written (disk full, directory
removed, the file gone), one error line opens the episode, the store stops writing and
the memory queues (L{ocppproxy.core.outbox.OutboxQueue}) carry on alone; every
C{retry_interval} seconds the file is opened again and, once it is, rewritten whole from
the memory queues, and one line says so. A file corrupt at start-up is kept aside
(C{outbox.sqlite3.corrupt-<unix time>}) and a new one started.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from ..config.model import OutboxConfig
from ..core.outbox import CANCELLED, QUEUED, Entry
from ..logs import proxy_logger
from .outbox_db import DELETE, PUT, CorruptOutbox, Loaded, OutboxDatabase, describe, keep_aside

Runner = Callable[..., Deferred]
"""Runs a blocking call on the store's writer thread: C{run(f, *args)} fires with its result."""
Snapshot = Callable[[], tuple[Iterable[tuple[str, str, Entry]], Iterable[tuple[str, str, int, int]]]]


class OutboxStore:
    """The outbox file, written by one thread in group commits; see the module's doc."""

    _log = proxy_logger()

    def __init__(
        self,
        config: OutboxConfig,
        reactor: Any,
        run: Runner,
        interval: float = 0.009,
        age: float = 0.004,
        retry_interval: float = 5.0,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self._run = run
        self._interval = interval
        self._age = age
        self._retry_interval = retry_interval
        self.db = OutboxDatabase(config.directory)
        self._pending: list[tuple] = []
        """The operations queued and not yet taken into a group, in order."""
        self._timer: Any = None
        self._writing: Deferred | None = None
        self.failing_since: float | None = None
        """When the current fault episode began (None: writing fine)."""
        self.fault_episodes = 0
        self.commits = 0
        self.on_dropped: Callable[[list[tuple[str, str, int]]], None] = lambda dropped: None
        self.snapshot: Snapshot = lambda: ((), ())
        """What the memory queues hold, to rewrite the file after a fault."""

    @property
    def healthy(self) -> bool:
        """Whether groups are being written (not in a fault episode)."""
        return self.failing_since is None

    def start(self) -> Deferred:
        """Open the file and read it (on the writer thread); fires with a L{Loaded} (empty after a fault)."""
        now = self._reactor.seconds()

        def opened() -> Loaded:
            try:
                self.db.open()
            except CorruptOutbox as error:
                aside = keep_aside(self.db.path, now)
                self._log.error(
                    "outbox {path} is corrupt ({reason}); kept as {aside}, starting a new one",
                    path=self.db.path, reason=describe(error), aside=aside,
                )
                self.db.open()
            return self.db.load()

        def failed(failure: Failure) -> Loaded:
            self.fault(failure)
            return Loaded()

        return self._run(opened).addErrback(failed)

    def write(self, operation: tuple) -> None:
        """
        Queue one operation (see L{ocppproxy.relay.outbox_db}) for a group; an entry
        delivered goes by L{delete}.
        """
        if self.failing_since is not None:
            return  # the memory queues carry it; the file is rewritten when it is back
        if operation[0] == PUT:
            operation[3].stored = QUEUED
        self._pending.append(operation)
        if self._timer is None and self._writing is None:
            self._timer = self._reactor.callLater(self._interval, self._commit)

    def delete(self, station: str, upstream: str, entry: Entry) -> None:
        """
        C{entry} left the outbox (delivered): a C{DELETE} for a group, unless its C{PUT}
        still waits in one; then it is never written at all (a mirror that keeps up costs
        the disk nothing).
        """
        if entry.stored == QUEUED:
            entry.stored = CANCELLED
        else:
            self.write((DELETE, station, upstream, entry.seq, entry))

    def _arm(self, now: float) -> None:
        """The timer, for the first pending operation's deadline (an entry's: C{interval} after it came)."""
        first = self._pending[0]
        since = first[3].written_at if first[0] == PUT else now
        self._timer = self._reactor.callLater(max(since + self._interval - now, 0.0), self._commit)

    def _commit(self, everything: bool = False) -> Deferred:
        """
        The timer: the operations up to the first entry in flight to its mirror and queued
        less than C{age} seconds ago are written now (one group), the rest wait for the
        next deadline (C{everything}: all of it now, at shutdown).
        """
        self._timer = None
        now = self._reactor.seconds()
        pending = self._pending
        self._pending = []
        # An entry in flight is written once its own deadline has come, or, with a group written anyway, once
        # it is C{age} old; younger, its answer may well come first: it waits, and what follows it.
        young = math.inf if everything else now - self._age + 1e-9
        not_due = math.inf if everything else now - self._interval + 1e-9
        batch = []
        for index, operation in enumerate(pending):  # (one pass: a hundred entries or so a group)
            if operation[0] == PUT:
                entry = operation[3]
                stored = entry.stored
                if stored == CANCELLED:
                    continue  # delivered before it was written
                if entry.sent and stored == QUEUED and entry.written_at > (young if batch else not_due):
                    self._pending = pending[index:]
                    break
                entry.stored = 0
            batch.append(operation)
        if not batch:
            if self._pending:
                self._arm(now)
            return succeed(None)  # every entry of the group was delivered before it was written
        config = self.config
        writing = self._run(self.db.apply, batch, now, config.max_bytes, config.max_age)
        self._writing = writing

        def done(dropped: list[tuple[str, str, int]]) -> None:
            self.commits += 1
            if dropped:
                self.on_dropped(dropped)

        def finished(_: Any) -> None:
            self._writing = None
            if self._pending and self.failing_since is None:
                self._arm(self._reactor.seconds())

        return writing.addCallbacks(done, self.fault).addBoth(finished)

    def fault(self, failure: Failure) -> None:
        """The file cannot be written (C{failure}): a fault episode begins, if none is open."""
        for operation in self._pending:
            if operation[0] == PUT:
                operation[3].stored = 0  # rewritten from the memory queues after the fault
        self._pending = []
        if self.failing_since is None:
            self.failing_since = self._reactor.seconds()
            self.fault_episodes += 1
            self._log.error(
                "outbox {path} cannot be written ({reason}): relaying goes on with memory queues, retrying every"
                " {retry:g} s",
                path=self.db.path, reason=describe(failure.value), retry=self._retry_interval,
            )
            self._reactor.callLater(self._retry_interval, self._recover)

    def _recover(self) -> Deferred:
        entries, own_ids = self.snapshot()
        entries, own_ids = list(entries), list(own_ids)

        def again() -> None:
            self.db.open()
            self.db.rewrite(entries, own_ids)

        def recovered(_: Any) -> None:
            self._log.info(
                "outbox {path} is written again after {duration:.1f} s ({count} entries rewritten)",
                path=self.db.path, duration=self._reactor.seconds() - self.failing_since, count=len(entries),
            )
            self.failing_since = None

        def still(failure: Failure) -> None:
            self._reactor.callLater(self._retry_interval, self._recover)

        return self._run(again).addCallbacks(recovered, still)

    def stop(self) -> Deferred:
        """Write what is pending and close the file (shutdown); fires when done."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:
            waiting: Deferred = Deferred()
            self._writing.addBoth(lambda result: (waiting.callback(None), result)[1])
            return waiting.addCallback(lambda _: self.stop())
        if self._pending and self.failing_since is None:
            return self._commit(everything=True).addCallback(lambda _: self.stop())
        return self._run(self.db.close) if self.db.is_open else succeed(None)
