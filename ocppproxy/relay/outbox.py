"""
The durable outbox of one instance: one L{OutboxQueue} per station and upstream, kept in
memory and mirrored to the store (L{ocppproxy.relay.outbox_store}) in group commits.

The sessions tell it what a mirror is owed (L{owed}), what went out (L{sent}), what the
mirror answered (L{answered}: an answer to an outbox entry is consumed here) and what the
station's primary answered to a StartTransaction (L{station_started}); the links ask it
what to send next (L{ready}, L{payload_for}). The bounds' drops are counted per
upstream, logged and alerted once per episode (C{outbox_dropped}). Read by the metrics
and the status page: L{backlogs}, L{totals}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..core.ocppj import CALLRESULT, Frame
from ..core.outbox import BOOT, START, DropEpisodes, Entry, OutboxQueue
from ..core.outbox_streams import seq_base
from ..logs import proxy_logger
from .outbox_db import DELETE, OWN_ID, PUT, START_TX, STATION, Loaded
from .outbox_store import OutboxStore


class Outbox:
    """Every station's backlog for every upstream that uses the outbox; see the module's doc."""

    _log = proxy_logger()

    def __init__(self, store: OutboxStore, clock: Callable[[], float], window: int = 32) -> None:
        self.store = store
        self._clock = clock
        self._window = window
        self.queues: dict[tuple[str, str], OutboxQueue] = {}
        self._upstreams_of: dict[str, list[str]] = {}
        """The upstreams each station has a queue for (L{queues_of}: no scan of every queue)."""
        self._seq = 1
        """The next entry's C{seq}: one counter for every station and upstream (the file is then written at its end)."""
        self.stations: dict[str, tuple[str | None, bytes | None, bool]] = {}
        """Per station: the subprotocol it last agreed, its last BootNotification, whether it sent credentials."""
        self.episodes = DropEpisodes()
        self.replayed: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        """Entries per upstream, all stations (kept as they come and go: no scan per frame)."""
        self.on_alert: Callable[[str, int], None] = lambda upstream, count: None
        """Called once per drop episode of an upstream, with the count so far (the C{outbox_dropped} alert)."""
        store.on_dropped = self._dropped
        store.snapshot = self._snapshot
        self.loading: dict[str, list[tuple[str, Entry]]] = {}
        """Cluster mode: stations whose backlog is on its way from Redis -> their live entries meanwhile."""
        self._seq_base: dict[str, int] = {}
        self.seq_from_clock = False
        """Cluster mode: a station's first entries here are numbered from the clock (see L{seq_base})."""
        self.drainable: Callable[[str], bool] = lambda station: True
        """Whether this instance may drain C{station}'s backlog while it is away (cluster mode: if it claimed it)."""

    def restore(self, loaded: Loaded) -> None:
        """Start-up: the queues as the file kept them."""
        for (station, upstream), entries in loaded.entries.items():
            queue = self.queue(station, upstream)
            queue.restore(entries, loaded.own_ids.get((station, upstream), {}))
            self._waiting[upstream] = self._waiting.get(upstream, 0) + len(entries)
            self._seq = max(self._seq, queue.last_seq + 1)
        for (station, upstream), ids in loaded.own_ids.items():
            if (station, upstream) not in self.queues:
                self.queue(station, upstream).restore((), ids)
        self.stations.update(loaded.stations)
        if loaded.entries:
            self._log.info(
                "outbox: {count} entries for {pairs} station links restored from {path}",
                count=sum(len(entries) for entries in loaded.entries.values()),
                pairs=len(loaded.entries), path=self.store.db.path,
            )

    def queue(self, station: str, upstream: str) -> OutboxQueue:
        """The queue of C{station} towards C{upstream} (made on first use)."""
        key = (station, upstream)
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = OutboxQueue(station, upstream, self._window)
            self._upstreams_of.setdefault(station, []).append(upstream)
        return queue

    def queues_of(self, station: str) -> list[tuple[str, OutboxQueue]]:
        """C{station}'s queues by upstream."""
        return [(upstream, self.queues[(station, upstream)]) for upstream in self._upstreams_of.get(station, ())]

    def stations_queued(self) -> list[str]:
        """The stations that have a queue here (empty or not)."""
        return list(self._upstreams_of)

    def station_connected(self, station: str, subprotocol: str | None, sent_auth: bool) -> None:
        """The station agreed C{subprotocol} (C{sent_auth}: with an C{Authorization}): kept for a drain link."""
        known = self.stations.get(station, (None, None, False))
        if known[0] != subprotocol or known[2] != sent_auth:
            self.stations[station] = (subprotocol, known[1], sent_auth)
            self.store.write((STATION, station, subprotocol, known[1], sent_auth))

    def owed(self, station: str, upstream: str, frame: Frame, payload: bytes) -> Entry:
        """The station's CALL or SEND C{frame} is owed to C{upstream}: written, in the station's order."""
        return self.owe(station, upstream, frame, payload)[1]

    def owe(
        self, station: str, upstream: str, frame: Frame, payload: bytes, live: int = 0, connected: bool = False
    ) -> tuple[OutboxQueue | None, Entry]:
        """
        As L{owed}; returns the entry's queue too (None while the station's backlog is
        loading: the entry waits for it). C{live}: the token of the station's session
        that owes it (see L{Entry.live}); C{connected}: the upstream's link is up, the
        entry may go at once (then marked L{Entry.sent}: see L{OutboxQueue.append}).
        """
        if self.loading and station in self.loading:
            entry = self._owed_while_loading(station, upstream, frame, payload)
            entry.live = live
            return None, entry
        queue = self.queues.get((station, upstream))
        if queue is None:
            queue = self.queue(station, upstream)
        seq = self._seq
        if seq > queue.last_seq and not self._seq_base and not self.seq_from_clock:
            self._seq = seq + 1  # (the common case of L{_number})
        else:
            seq = self._number(station, queue)
        entry = Entry(seq, frame.message_id, frame.action, payload, self._clock(), frame.kind, None, 0, False, live)
        queue.append(entry, connected)
        waiting = self._waiting
        waiting[upstream] = waiting.get(upstream, 0) + 1
        self.store.write((PUT, station, upstream, entry))
        if frame.action == BOOT:
            subprotocol, _, sent_auth = self.stations.get(station, (None, None, False))
            self.stations[station] = (subprotocol, payload, sent_auth)
            self.store.write((STATION, station, subprotocol, payload, sent_auth))
        return queue, entry

    def _owed_while_loading(self, station: str, upstream: str, frame: Frame, payload: bytes) -> Entry:
        """Cluster mode: C{station}'s backlog comes first; this entry is numbered and written once it is here."""
        entry = Entry(0, frame.message_id, frame.action, payload, self._clock(), frame.kind)
        self.loading[station].append((upstream, entry))
        if frame.action == BOOT:
            subprotocol, _, sent_auth = self.stations.get(station, (None, None, False))
            self.stations[station] = (subprotocol, payload, sent_auth)
            self.store.write((STATION, station, subprotocol, payload, sent_auth))
        return entry

    def _append(self, station: str, upstream: str, entry: Entry) -> None:
        """C{entry} numbered after the queue's others, queued and written."""
        queue = self.queue(station, upstream)
        entry.seq = self._number(station, queue)
        queue.append(entry)
        self._waiting[upstream] = self._waiting.get(upstream, 0) + 1
        self.store.write((PUT, station, upstream, entry))

    def _number(self, station: str, queue: OutboxQueue) -> int:
        """
        The next entry's C{seq}: from the one counter of every station and upstream (the
        file is then written at its end), above the queue's own entries (restored from
        elsewhere: the station's order first) and, in cluster mode, above the station's
        base (L{seq_base}: above what the instance that held it before may still write).
        """
        seq = self._seq
        if seq <= queue.last_seq:
            seq = queue.last_seq + 1
        if self._seq_base or self.seq_from_clock:
            base = self._seq_base.get(station)
            if base is None and self.seq_from_clock:
                base = self._seq_base[station] = seq_base(self._clock(), queue.last_seq)
            if base is not None and seq < base:
                seq = base
        self._seq = seq + 1
        return seq

    # --- cluster mode: the station's backlog follows it (ocppproxy.cluster.outbox_follow)

    def begin_load(self, station: str) -> None:
        """C{station}'s backlog is being read from Redis: its live entries wait for it (L{load_station})."""
        self.loading.setdefault(station, [])

    def load_station(
        self,
        station: str,
        entries: dict[str, list[Entry]],
        own_ids: dict[str, dict[int, int]],
        facts: tuple[str | None, bytes | None, bool] | None,
    ) -> None:
        """
        C{station}'s backlog read from Redis (by upstream, in its order) goes into the
        memory queues of a station that has none here, then the live entries that came
        meanwhile, numbered after them (see L{seq_base}) and written.
        """
        highest = 0
        for upstream, loaded in entries.items():
            queue = self.queue(station, upstream)
            known = {entry.seq for entry in queue.entries()}
            fresh = [entry for entry in loaded if entry.seq not in known]
            queue.restore(fresh, own_ids.get(upstream, {}))
            self._waiting[upstream] = self._waiting.get(upstream, 0) + len(fresh)
            highest = max([highest, *known, *(entry.seq for entry in loaded)])
        for upstream, ids in own_ids.items():
            if upstream not in entries:
                self.queue(station, upstream).restore((), ids)
        known = self.stations.get(station)
        if facts is not None and (known is None or known[1] is None):
            # What a drain link needs; the subprotocol and credentials seen here are newer, if any.
            self.stations[station] = facts if known is None else (known[0] or facts[0], facts[1], known[2])
        self._seq_base[station] = seq_base(self._clock(), highest)
        for upstream, entry in self.loading.pop(station, ()):
            self._append(station, upstream, entry)

    def unload_station(self, station: str) -> None:
        """Another instance holds C{station} now (or it left): forget its memory copy; Redis keeps its entries."""
        if station in self.loading:
            self.load_station(station, {}, {}, None)
        for upstream in self._upstreams_of.pop(station, ()):
            queue = self.queues.pop((station, upstream))
            self._gone(upstream, len(queue))
        self._seq_base.pop(station, None)

    def sent(self, station: str, upstream: str, entry: Entry, backlog: bool, queue: OutboxQueue | None = None) -> None:
        """
        C{entry} went to the socket (C{backlog}: it had waited); a SEND leaves the outbox now.
        C{queue}: the entry's queue, if the caller has it at hand.
        """
        if queue is None:
            queue = self.queue(station, upstream)
        for gone in queue.sent(entry, backlog):
            self.store.delete(station, upstream, gone)
            self._gone(upstream, 1)
        if backlog:
            self.replayed[upstream] = self.replayed.get(upstream, 0) + 1

    def answered(self, station: str, upstream: str, frame: Frame, queue: OutboxQueue | None = None) -> Entry | None:
        """
        C{upstream} answered C{frame.message_id}: the entry it delivers leaves the outbox
        (returned: the answer is consumed), None if it answers no entry. C{queue}: the
        station's queue for C{upstream}, if the caller has it at hand.
        """
        if queue is None:
            queue = self.queues.get((station, upstream))
            if queue is None:
                return None
        own = frame.body.get("transactionId") if frame.kind == CALLRESULT and isinstance(frame.body, dict) else None
        entry = queue.answered(frame.message_id, own)
        if entry is None:
            return None
        self.store.delete(station, upstream, entry)
        self._gone(upstream, 1)
        if entry.action == START and entry.station_tx is not None and type(own) is int:
            self.store.write((OWN_ID, station, upstream, entry.station_tx, own))
        return entry

    def delivered(self, station: str, upstream: str, queue: OutboxQueue, entry: Entry) -> None:
        """
        C{upstream} answered C{entry} of C{queue}, which was in flight and is no
        StartTransaction (L{answered} without the parse of the answer: the lean lane).
        """
        queue.delivered(entry)
        self.store.delete(station, upstream, entry)
        self._gone(upstream, 1)

    def station_started(self, station: str, message_id: str, station_tx: int) -> None:
        """The station's primary answered its StartTransaction C{message_id} with C{station_tx}."""
        for _, waiting in self.loading.get(station, ()):
            if waiting.message_id == message_id and waiting.action == START:
                waiting.station_tx = station_tx  # written with it once the backlog is loaded
        for (owner, upstream), queue in self.queues.items():
            if owner != station:
                continue
            early = queue.own_id(station_tx)
            entry = queue.start_answered_by_station(message_id, station_tx)
            if entry is not None:
                self.store.write((START_TX, station, upstream, entry.seq, station_tx))
            elif queue.own_id(station_tx) is not None and queue.own_id(station_tx) != early:
                self.store.write((OWN_ID, station, upstream, station_tx, queue.own_id(station_tx)))

    def _gone(self, upstream: str, count: int) -> None:
        """C{count} entries for C{upstream} left the outbox; once it holds none, a drop episode ends."""
        left = self._waiting.get(upstream, 0) - count
        if left > 0:
            self._waiting[upstream] = left
        else:
            self._waiting[upstream] = 0
            if self.episodes.open:
                self.episodes.emptied(upstream)

    def _dropped(self, dropped: list[tuple[str, str, int]]) -> None:
        by_pair: dict[tuple[str, str], list[int]] = {}
        for station, upstream, seq in dropped:
            by_pair.setdefault((station, upstream), []).append(seq)
        for (station, upstream), seqs in by_pair.items():
            queue = self.queues.get((station, upstream))
            if queue is not None:
                self._gone(upstream, len(queue.dropped(seqs)))
            if self.episodes.dropped(upstream, len(seqs)):
                self._log.error(
                    "outbox: entries for {upstream} dropped (outbox.max_bytes or outbox.max_age reached), first of"
                    " this episode for station {station}; counted in ocppproxy_outbox_dropped_total",
                    upstream=upstream, station=station,
                )
                self.on_alert(upstream, self.episodes.counts[upstream])

    def _snapshot(self) -> tuple[list[tuple[str, str, Entry]], list[tuple[str, str, int, int]]]:
        entries = [
            (station, upstream, entry)
            for (station, upstream), queue in self.queues.items()
            for entry in queue.entries()
        ]
        own_ids = [
            (station, upstream, tx, own)
            for (station, upstream), queue in self.queues.items()
            for tx, own in queue.own_ids().items()
        ]
        return entries, own_ids

    # --- read by the metrics and the status page

    def backlogs(self) -> Iterator[tuple[str, str, int, int, float | None]]:
        """Each non-empty (station, upstream): entries, bytes, when its oldest entry was written."""
        for (station, upstream), queue in self.queues.items():
            if len(queue):
                yield station, upstream, len(queue), queue.bytes, queue.oldest()

    def totals(self) -> dict[str, dict[str, Any]]:
        """Per upstream: entries, bytes, the oldest entry's age in seconds, frames replayed, drops."""
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        for _, upstream, count, size, oldest in self.backlogs():
            row = out.setdefault(upstream, {"entries": 0, "bytes": 0, "oldest_age": 0.0})
            row["entries"] += count
            row["bytes"] += size
            if oldest is not None:
                row["oldest_age"] = max(row["oldest_age"], now - oldest)
        for upstream in set(self.replayed) | set(self.episodes.counts):
            out.setdefault(upstream, {"entries": 0, "bytes": 0, "oldest_age": 0.0})
        for upstream, row in out.items():
            row["replayed"] = self.replayed.get(upstream, 0)
            row["dropped"] = self.episodes.counts.get(upstream, 0)
        return out
