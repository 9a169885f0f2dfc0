"""
What the durable outbox decides for one station and one upstream, as data
(L{OutboxQueue}): which entries go out next, the bounded replay window, the wait for a
StartTransaction's answer before what may carry its id, transaction ids translated when a
frame is sent (never when it is queued), the answers that belong to the backlog, and how
long the station's live CALLs wait behind a backlog when the upstream becomes the one that
answers. Also: the frames of a drain link (L{drain_frames}, L{offline_answer}) and the
alert episodes of drops (L{DropEpisodes}). Pure: time is passed in, no I/O; the store
(L{ocppproxy.relay.outbox_store}) keeps the entries on disk.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .ocppj import CALL, CALLERROR, SEND, parse_frame

START = "StartTransaction"
BOOT = "BootNotification"
CARRY_TX = frozenset(("MeterValues", "StopTransaction"))
"""The station's 1.6 CALLs that carry the transaction id its primary gave."""
DEFAULT_WINDOW = 32
"""Entries sent and not yet answered at once, on replay."""
_TX_LIMIT = 256
QUEUED = 1
"""L{Entry.stored}: the entry's write waits in the store's pending groups."""
CANCELLED = 2
"""L{Entry.stored}: delivered before its write was taken into a group: it is never written."""


@dataclass(slots=True)
class Entry:
    """
    One frame owed to an upstream: its place in the station's order (C{seq}), the
    station's message id and action, the station's payload as it sent it (untranslated),
    when it was written, and, for a StartTransaction, the id the station took from its
    primary's answer (C{station_tx}, None until that answer came).
    """

    seq: int
    message_id: str
    action: str | None
    payload: bytes
    written_at: float
    kind: int = CALL
    station_tx: int | None = None
    stored: int = field(default=0, compare=False, repr=False)
    """The single instance's store's mark: L{QUEUED} while its write waits for a group, L{CANCELLED} if it was
    delivered meanwhile (never written then), 0 otherwise."""
    sent: bool = field(default=False, compare=False, repr=False)
    """Handed to the upstream's socket and not answered yet (its queue's mark; cleared when the link is lost)."""
    live: int = field(default=0, compare=False, repr=False)
    """The token of the station's session that owed it (the relay of that session knows the CALL and has its
    answer); 0: none (restored, or a drain's)."""

    @property
    def size(self) -> int:
        """Bytes it counts for in C{outbox.max_bytes}."""
        return len(self.payload)


class OutboxQueue:
    """
    The backlog of one station for one upstream, oldest first, and its replay rules.

    Entries are L{append}ed in the station's order. While the link is up, L{ready} gives
    the entries to send now: in order, at most C{window} CALLs unanswered at once, and
    nothing behind a StartTransaction sent and not yet answered (what follows may carry
    the id that answer gives). L{payload_for} translates a MeterValues or StopTransaction
    to the upstream's own transaction id at that moment. An answer (CALLRESULT or
    CALLERROR: either means delivered) removes its entry (L{answered}); a SEND leaves once
    handed to the socket. A lost link puts what was in flight back to be sent again, with
    the same message ids (a duplicate is then possible).
    """

    def __init__(self, station_id: str, upstream: str, window: int = DEFAULT_WINDOW) -> None:
        self.station_id = station_id
        self.upstream = upstream
        self.window = window
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self.in_flight: dict[str, Entry] = {}
        """The entries sent and not answered, by message id."""
        self.unsent = 0
        """Entries not handed to the socket (L{ready} has nothing to give while it is 0)."""
        self._starts_out = 0
        """StartTransaction CALLs sent and not answered: nothing goes behind one."""
        self._own_ids: OrderedDict[int, int] = OrderedDict()
        """The station's transaction id -> this upstream's own, learnt from its StartTransaction answers."""
        self._early: dict[str, int] = {}
        """StartTransaction answers of this upstream that came before the primary's (message id -> own id)."""
        self._backlog_first_until: float | None = None
        self._released = False
        self.replayed = 0
        """Entries sent that waited in the backlog (the metrics)."""
        self.last_seq = 0
        """The highest C{seq} appended or restored (it never goes down): a new entry's is higher."""
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes of the entries waiting or in flight (kept as they come and go: no sum per scrape)."""
        return self._bytes

    def oldest(self) -> float | None:
        """When the oldest entry was written, or None if empty."""
        for entry in self._entries.values():
            return entry.written_at
        return None

    def entries(self) -> list[Entry]:
        """The entries waiting or in flight, oldest first."""
        return list(self._entries.values())

    def own_ids(self) -> dict[int, int]:
        """The transaction ids learnt: the station's -> this upstream's own."""
        return dict(self._own_ids)

    def append(self, entry: Entry, connected: bool = False) -> None:
        """
        An entry owed to the upstream, after every one appended before (its C{seq} is
        higher). C{connected}: the upstream's link is up; then a CALL goes to the socket at
        once if nothing waits before it, no StartTransaction is unanswered and the window
        has room (a connected mirror keeping up): marked L{Entry.sent}, it counts as sent
        live (not replayed) and the caller sends it (with L{payload_for}); else the caller
        goes by L{ready}.
        """
        self._entries[entry.seq] = entry
        self.last_seq = entry.seq
        self._bytes += len(entry.payload)
        if (
            connected
            and not self.unsent
            and not self._starts_out
            and entry.kind == CALL
            and len(self.in_flight) < self.window
        ):
            entry.sent = True
            self.in_flight[entry.message_id] = entry
            if entry.action == START:
                self._starts_out = 1
        else:
            self.unsent += 1

    def delivered(self, entry: Entry) -> None:
        """C{entry}, in flight and not a StartTransaction (no id to learn), was answered: it leaves (see L{answered})."""
        del self.in_flight[entry.message_id]
        del self._entries[entry.seq]
        self._bytes -= len(entry.payload)

    def restore(self, entries: Iterable[Entry], own_ids: Mapping[int, int] = {}) -> None:
        """The entries and transaction ids the store kept (start-up), in C{seq} order."""
        for entry in sorted(entries, key=lambda each: each.seq):
            known = self._entries.get(entry.seq)
            if known is None:
                self._bytes += len(entry.payload)
                self.unsent += 1
                entry.sent = False
            else:
                entry.sent = known.sent
            self._entries[entry.seq] = entry
            self.last_seq = max(self.last_seq, entry.seq)
        for tx, own in own_ids.items():
            self.learn_id(tx, own)

    def start_answered_by_station(self, message_id: str, station_tx: int) -> Entry | None:
        """The station's primary answered its StartTransaction C{message_id} with C{station_tx}: noted on the entry."""
        early = self._early.pop(message_id, None)
        if early is not None:
            self.learn_id(station_tx, early)
            return None
        for entry in self._entries.values():
            if entry.message_id == message_id and entry.action == START:
                entry.station_tx = station_tx
                return entry
        return None

    def learn_id(self, station_tx: int, own: int) -> None:
        """This upstream knows the transaction the station knows as C{station_tx} as C{own}."""
        self._own_ids[station_tx] = own
        self._own_ids.move_to_end(station_tx)
        while len(self._own_ids) > _TX_LIMIT:
            self._own_ids.popitem(last=False)

    def own_id(self, station_tx: int) -> int | None:
        """This upstream's own id for the station's C{station_tx}, or None if not known (yet)."""
        return self._own_ids.get(station_tx)

    def ready(self) -> list[Entry]:
        """
        The entries to send now, in order: those not sent yet, up to the window of
        unanswered CALLs, stopping behind an unanswered StartTransaction. The caller sends
        each (with L{payload_for}) and then calls L{sent}.
        """
        if not self.unsent:
            return []  # everything is in flight (the common case when an answer comes)
        out: list[Entry] = []
        in_flight = len(self.in_flight)
        for entry in self._entries.values():
            if entry.sent:
                if entry.action == START and entry.kind == CALL:
                    break
                continue
            if in_flight >= self.window:
                break
            out.append(entry)
            if entry.kind == CALL:
                in_flight += 1
                if entry.action == START:
                    break
        return out

    def payload_for(self, entry: Entry) -> bytes:
        """The entry's payload as the upstream must get it now: its own transaction id where it gave one."""
        if entry.action not in CARRY_TX:
            return entry.payload
        frame = parse_frame(entry.payload)
        body = frame.body
        if not isinstance(body, dict) or type(body.get("transactionId")) is not int:
            return entry.payload
        own = self._own_ids.get(body["transactionId"])
        if own is None or own == body["transactionId"]:
            return entry.payload
        translated = {**body, "transactionId": own}
        return json.dumps([CALL, frame.message_id, frame.action, translated], separators=(",", ":")).encode()

    def sent(self, entry: Entry, backlog: bool = True) -> list[Entry]:
        """
        C{entry} was handed to the socket (C{backlog}: it had waited, count it as replayed).
        Returns the entries that leave the outbox now: a SEND, which has no answer.
        """
        self.unsent -= 1
        if backlog:
            self.replayed += 1
        if entry.kind == SEND:
            del self._entries[entry.seq]
            self._bytes -= len(entry.payload)
            return [entry]
        entry.sent = True
        self.in_flight[entry.message_id] = entry
        if entry.action == START:
            self._starts_out += 1
        return []

    def answered(self, message_id: str, own_tx: int | None = None) -> Entry | None:
        """
        The upstream answered C{message_id} (C{own_tx}: the transactionId of a
        StartTransaction's CALLRESULT). Returns the entry that leaves the outbox (its answer
        belongs to the outbox, not to the station), or None: not one of ours.
        """
        entry = self.in_flight.pop(message_id, None)
        if entry is None:
            return None
        if self._entries.pop(entry.seq, None) is not None:
            self._bytes -= len(entry.payload)
            if entry.action == START:
                self._starts_out -= 1
        if entry.action == START and type(own_tx) is int:
            if entry.station_tx is not None:
                self.learn_id(entry.station_tx, own_tx)
            else:
                self._early[message_id] = own_tx
                while len(self._early) > _TX_LIMIT:
                    del self._early[next(iter(self._early))]
        return entry

    def link_lost(self) -> None:
        """The link went away: what was in flight is sent again when it is back."""
        self.in_flight.clear()
        for entry in self._entries.values():
            entry.sent = False
        self.unsent = len(self._entries)
        self._starts_out = 0

    def dropped(self, seqs: Iterable[int]) -> list[Entry]:
        """The store dropped these entries (bounds): forgotten here too; returns those that were here."""
        gone = []
        for seq in seqs:
            entry = self._entries.pop(seq, None)
            if entry is not None:
                self._bytes -= len(entry.payload)
                gone.append(entry)
                if entry.sent:
                    if self.in_flight.get(entry.message_id) is entry:
                        del self.in_flight[entry.message_id]
                    if entry.action == START:
                        self._starts_out -= 1
                else:
                    self.unsent -= 1
        return gone

    # --- an upstream that becomes the one answering the station (migration, failover)

    def hold_live(self, now: float, timeout: float) -> bool:
        """
        Whether a live CALL of the station to this upstream, which answers the station now,
        must wait behind its backlog: yes while the backlog lasts, for at most C{timeout}
        seconds from the first such CALL; then live traffic goes first, the backlog follows.
        """
        if not self._entries:
            self._backlog_first_until = None
            return False
        if self._backlog_first_until is None:
            if self._released:
                return False
            self._backlog_first_until = now + timeout
        if now >= self._backlog_first_until:
            self._backlog_first_until = None
            self._released = True
            return False
        return True


def drain_frames(entries: list[Entry], last_boot: bytes | None) -> list[bytes]:
    """
    What a drain link (the station away) sends before the backlog: the station's last
    BootNotification, unless the backlog begins with one (or none is known).
    """
    if last_boot is None or (entries and entries[0].action == BOOT):
        return []
    return [last_boot]


def offline_answer(payload: bytes) -> bytes | None:
    """The CALLERROR a drain link answers an upstream's CALL with (None: not a CALL)."""
    try:
        frame = parse_frame(payload)
    except ValueError:
        return None
    if frame.kind != CALL:
        return None
    return json.dumps([CALLERROR, frame.message_id, "GenericError", "station offline", {}], separators=(",", ":")).encode()


class DropEpisodes:
    """
    One alert per episode of drops for an upstream: the first drop raises it, the
    following are counted in silence; the episode ends when that upstream's outbox is
    empty again.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.open: set[str] = set()
        """The upstreams whose episode is open."""

    def dropped(self, upstream: str, count: int) -> bool:
        """C{count} entries for C{upstream} were dropped; True if an alert is due (a new episode)."""
        self.counts[upstream] = self.counts.get(upstream, 0) + count
        if count <= 0 or upstream in self.open:
            return False
        self.open.add(upstream)
        return True

    def emptied(self, upstream: str) -> None:
        """C{upstream}'s outbox is empty: the next drop is a new episode."""
        self.open.discard(upstream)
