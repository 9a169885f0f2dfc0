"""
The durable outbox's file: SQLite (the standard library's C{sqlite3}), used only from the
store's one writer thread (L{ocppproxy.relay.outbox_store}); every method here blocks.

Why SQLite: it ships with Python, it is crash-safe by design (a transaction is either
whole in the file or absent, after C{kill -9} and, with C{synchronous=FULL}, power loss),
its write-ahead log lets one commit carry many frames, and an operator can open the file
with the C{sqlite3} tool. A file format of our own would have to earn all of that again.

The policy: C{journal_mode=WAL} and C{synchronous=FULL}: each commit (one per group of
frames, every few milliseconds) is on the disk before the next group starts, so a crash
of the process or the machine loses at most the group not yet committed.

Tables: C{entries} (per station and upstream, in the station's order C{seq}, a number the
outbox draws from one counter for all of them, so the file is written at its end: message id,
action, kind, the payload as the station sent it, when written, a StartTransaction's
station id), C{tx_ids} (the transaction ids an upstream gave at replay, by the station's
id) and C{stations} (the subprotocol each station last agreed, its last
BootNotification and whether it sent credentials, for drain links). No secret is ever
stored.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..core.outbox import Entry

FILE_NAME = "outbox.sqlite3"
_SCHEMA = (
    # Keyed by seq first: the outbox numbers entries from one counter (each station's still in its order), so a
    # group's rows go to the end of the table (a page or two of log per commit), not to one page per station.
    "CREATE TABLE IF NOT EXISTS entries (station TEXT NOT NULL, upstream TEXT NOT NULL, seq INTEGER NOT NULL,"
    " message_id TEXT NOT NULL, action TEXT, kind INTEGER NOT NULL, payload BLOB NOT NULL, written_at REAL NOT NULL,"
    " station_tx INTEGER, PRIMARY KEY (seq, station, upstream)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS entries_age ON entries (written_at)",
    "CREATE TABLE IF NOT EXISTS tx_ids (station TEXT NOT NULL, upstream TEXT NOT NULL, station_tx INTEGER NOT NULL,"
    " own INTEGER NOT NULL, PRIMARY KEY (station, upstream, station_tx)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS stations (station TEXT PRIMARY KEY, subprotocol TEXT, boot BLOB, sent_auth INTEGER)"
    " WITHOUT ROWID",
    # Files of earlier releases kept the payloads' bytes in the file: with a trigger a row (about a fifth of a row's
    # insert), then in a table written with each group (a page more in every commit). The bytes are summed when the
    # file is opened and kept in memory from the sizes of the rows each group inserts and deletes (see _in_runs).
    "DROP TRIGGER IF EXISTS entries_put",
    "DROP TRIGGER IF EXISTS entries_gone",
    "DROP TABLE IF EXISTS totals",
)
_CHUNK = 64
"""Rows per statement at most when a group's rows are written (a power of two; 64 x 9 parameters)."""
# A run of rows is written with a few statements of many rows each (64, then powers of two), not one statement per
# row: each statement is one call into SQLite, which the writer thread makes without the interpreter lock, so that
# the reactor's thread is handed the lock back a few times a group instead of once a row.
_PUTS = {size: "INSERT OR IGNORE INTO entries VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * size)
         for size in (1 << power for power in range(7))}
# Most entries have no station_tx yet: their rows leave it out (NULL). The sqlite3 module binds str, int, float and
# bytearray as they are, but looks every other type (bytes, None) up in its adapters first, which costs more than
# binding: the payload goes as a bytearray, and a NULL is the column's default.
# Every size up to _CHUNK (a group of a mirror that is away is one statement, see OutboxDatabase._lone_run).
_PUTS_NO_TX = {
    size: "INSERT OR IGNORE INTO entries (station, upstream, seq, message_id, action, kind, payload, written_at) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * size)
    for size in range(1, _CHUNK + 1)
}
_DELETES = {size: "DELETE FROM entries WHERE " + " OR ".join(["(seq = ? AND station = ? AND upstream = ?)"] * size)
            for size in (1 << power for power in range(7))}  # (an OR of keys: one primary-key search each)


def _in_chunks(db: sqlite3.Connection, statements: dict[int, str], width: int, parameters: list) -> bool:
    """
    The rows of C{parameters} (C{width} each, flat) with one statement per chunk of up to
    L{_CHUNK} rows; whether SQLite changed as many rows as there are (none ignored or missing).
    """
    rows = len(parameters) // width
    changed = 0
    start = 0
    while rows:
        size = _CHUNK if rows >= _CHUNK else rows if rows in statements else 1 << (rows.bit_length() - 1)
        end = start + size * width
        changed += db.execute(statements[size], parameters[start:end]).rowcount
        start = end
        rows -= size
    return changed == len(parameters) // width


class CorruptOutbox(Exception):
    """The file is not a sound SQLite database (the message says why)."""


@dataclass
class Loaded:
    """What the file held at start-up: entries and learnt ids by (station, upstream), stations' drain facts."""

    entries: dict[tuple[str, str], list[Entry]] = field(default_factory=dict)
    own_ids: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    stations: dict[str, tuple[str | None, bytes | None, bool]] = field(default_factory=dict)
    total_bytes: int = 0


# The operations the reactor side queues for the writer thread, as tuples (cheap on the hot path):
PUT = "put"  # (PUT, station, upstream, Entry)
DELETE = "del"  # (DELETE, station, upstream, seq[, Entry]): with the Entry, not written if its PUT was not yet
START_TX = "start_tx"  # (START_TX, station, upstream, seq, station_tx)
OWN_ID = "own_id"  # (OWN_ID, station, upstream, station_tx, own)
TRIM = "trim"  # (TRIM,): nothing but the bounds, applied by every group
STATION = "station"  # (STATION, station, subprotocol, boot payload or None, whether it sent an Authorization)


class OutboxDatabase:
    """The outbox file in C{directory}; open with L{open}, then L{apply} batches of operations."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, FILE_NAME)
        self._db: sqlite3.Connection | None = None
        self.total_bytes = 0
        self._oldest = -math.inf
        """At most the oldest entry's C{written_at} (inf: none): while C{max_age} cannot have passed, no age query."""

    def open(self) -> None:
        """Open (or create) the file; a L{CorruptOutbox} if it is not a sound database."""
        self.close()
        existed = os.path.exists(self.path)
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=256)
        except sqlite3.Error as error:
            raise OSError(str(error)) from error
        try:
            if existed:
                check = db.execute("PRAGMA quick_check").fetchone()
                if check is None or check[0] != "ok":
                    raise CorruptOutbox(str(check and check[0]))
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                db.execute(statement)
            self.total_bytes = self._summed_bytes(db)
            self._oldest = -math.inf
        except sqlite3.DatabaseError as error:
            db.close()
            if existed and isinstance(error, sqlite3.DatabaseError) and _corrupt(error):
                raise CorruptOutbox(str(error)) from error
            raise OSError(str(error)) from error
        except CorruptOutbox:
            db.close()
            raise
        self._db = db

    def close(self) -> None:
        """Close the file (a checkpoint of the log is SQLite's own business)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def is_open(self) -> bool:
        """Whether the file is open."""
        return self._db is not None

    def load(self) -> Loaded:
        """Everything the file holds, in each station's order (the order of C{seq})."""
        db = self._require()
        loaded = Loaded(total_bytes=self.total_bytes)
        for row in db.execute(
            "SELECT station, upstream, seq, message_id, action, kind, payload, written_at, station_tx FROM entries"
            " ORDER BY seq"
        ):
            entry = Entry(row[2], row[3], row[4], bytes(row[6]), row[7], row[5], row[8])
            loaded.entries.setdefault((row[0], row[1]), []).append(entry)
        for station, upstream, station_tx, own in db.execute("SELECT station, upstream, station_tx, own FROM tx_ids"):
            loaded.own_ids.setdefault((station, upstream), {})[station_tx] = own
        for station, subprotocol, boot, sent_auth in db.execute("SELECT station, subprotocol, boot, sent_auth FROM stations"):
            loaded.stations[station] = (subprotocol, None if boot is None else bytes(boot), bool(sent_auth))
        return loaded

    def apply(self, operations: list[tuple], now: float, max_bytes: int, max_age: float) -> list[tuple[str, str, int]]:
        """
        One transaction (one commit): the operations in order, then the bounds: entries
        older than C{max_age} at C{now}, then the oldest beyond C{max_bytes}, deleted.
        Returns the (station, upstream, seq) of the entries the bounds dropped.
        """
        db = self._require()
        if not os.path.exists(self.path):
            raise OSError(f"{self.path} was removed")
        if self._lone_run(operations, now, max_bytes, max_age):
            self._in_runs(db, operations)  # one INSERT, its own transaction
            return []
        with self._transaction(db):
            self._in_runs(db, operations)
            dropped = self._bounds(db, now, max_bytes, max_age)
        return dropped

    def _lone_run(self, operations: list[tuple], now: float, max_bytes: int, max_age: float) -> bool:
        """
        Whether the group is entries owed and nothing else (none with a StartTransaction's
        station id), few enough for one statement, within both bounds: then that one
        statement is its own transaction (no C{BEGIN}, no C{COMMIT}: two steps, and two
        hand-overs of the interpreter lock between this thread and the reactor's, fewer;
        the common group of a mirror that is away).
        """
        if not 0 < len(operations) <= _CHUNK:
            return False
        size = 0
        oldest = self._oldest
        for operation in operations:
            if operation[0] != PUT or operation[3].station_tx is not None:
                return False
            entry = operation[3]
            size += len(entry.payload)
            if entry.written_at < oldest:
                oldest = entry.written_at
        return self.total_bytes + size <= max_bytes and now - max_age <= oldest  # (else a bound to apply with them)

    @contextmanager
    def _transaction(self, db: sqlite3.Connection) -> Iterator[None]:
        """
        One SQLite transaction, committed at the end; on any failure rolled back, the bytes
        as they were before it and the oldest entry's age no longer assumed.
        """
        before = self.total_bytes
        try:
            db.execute("BEGIN IMMEDIATE")
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self.total_bytes = before
            self._oldest = -math.inf
            raise

    def _in_runs(self, db: sqlite3.Connection, operations: Iterable[tuple]) -> None:
        """
        The operations in order, each run of entries owed or delivered written with a few
        statements; L{total_bytes} follows (summed again if a count is off, or a delete
        names no entry).
        """
        puts: list = []
        puts_tx: list = []
        deletes: list = []
        put_bytes = deleted_bytes = 0
        exact = True
        oldest = self._oldest
        total = self.total_bytes

        def flush_puts() -> None:
            nonlocal puts, puts_tx, put_bytes, exact, total
            if puts and not _in_chunks(db, _PUTS_NO_TX, 8, puts):
                exact = False
            if puts_tx and not _in_chunks(db, _PUTS, 9, puts_tx):
                exact = False
            total += put_bytes
            puts, puts_tx, put_bytes = [], [], 0

        def flush_deletes() -> None:
            nonlocal deletes, deleted_bytes, exact, total
            if not _in_chunks(db, _DELETES, 3, deletes):
                exact = False
            total -= deleted_bytes
            deletes, deleted_bytes = [], 0

        for operation in operations:
            kind = operation[0]
            if kind == PUT:
                if deletes:
                    flush_deletes()
                _, station, upstream, entry = operation
                payload = entry.payload
                row = (station, upstream, entry.seq, entry.message_id, entry.action, entry.kind,
                       bytearray(payload), entry.written_at)
                put_bytes += len(payload)
                if entry.station_tx is None:
                    puts += row
                else:
                    puts_tx += row
                    puts_tx.append(entry.station_tx)
                if entry.written_at < oldest:
                    oldest = entry.written_at
            elif kind == DELETE:
                if puts or puts_tx:
                    flush_puts()
                deletes += (operation[3], operation[1], operation[2])
                if len(operation) > 4:
                    deleted_bytes += len(operation[4].payload)
                else:
                    exact = False  # (its size unknown)
            else:
                if puts or puts_tx:
                    flush_puts()
                if deletes:
                    flush_deletes()
                self._one(db, operation)  # (no payload bytes change)
        if puts or puts_tx:
            flush_puts()
        if deletes:
            flush_deletes()
        self._oldest = oldest
        self.total_bytes = total if exact else self._summed_bytes(db)

    @staticmethod
    def _summed_bytes(db: sqlite3.Connection) -> int:
        return db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM entries").fetchone()[0]

    def _one(self, db: sqlite3.Connection, operation: tuple) -> None:
        """One operation that changes no payload bytes (entries owed and delivered go in runs: L{_in_runs})."""
        kind = operation[0]
        if kind == START_TX:
            _, station, upstream, seq, station_tx = operation
            db.execute("UPDATE entries SET station_tx = ? WHERE station = ? AND upstream = ? AND seq = ?",
                       (station_tx, station, upstream, seq))
        elif kind == OWN_ID:
            db.execute("INSERT OR REPLACE INTO tx_ids VALUES (?, ?, ?, ?)", operation[1:])
        elif kind == STATION:
            db.execute("INSERT OR REPLACE INTO stations VALUES (?, ?, ?, ?)", operation[1:])
        elif kind == TRIM:
            pass
        else:
            raise ValueError(f"unknown outbox operation {kind!r}")

    def _bounds(self, db: sqlite3.Connection, now: float, max_bytes: int, max_age: float) -> list[tuple[str, str, int]]:
        dropped: list[tuple[str, str, int]] = []
        if now - max_age > self._oldest:  # (deliveries only make the oldest younger: most groups skip this)
            for station, upstream, seq, size in db.execute(
                "DELETE FROM entries WHERE written_at < ? RETURNING station, upstream, seq, LENGTH(payload)",
                (now - max_age,),
            ).fetchall():
                dropped.append((station, upstream, seq))
                self.total_bytes -= size
            oldest = db.execute("SELECT MIN(written_at) FROM entries").fetchone()[0]
            self._oldest = math.inf if oldest is None else oldest
        while self.total_bytes > max_bytes:
            rows = db.execute(
                "SELECT station, upstream, seq, LENGTH(payload) FROM entries ORDER BY written_at LIMIT 256"
            ).fetchall()
            if not rows:
                self.total_bytes = 0
                break
            for station, upstream, seq, size in rows:
                if self.total_bytes <= max_bytes:
                    break
                db.execute("DELETE FROM entries WHERE station = ? AND upstream = ? AND seq = ?",
                           (station, upstream, seq))
                dropped.append((station, upstream, seq))
                self.total_bytes -= size
        return dropped

    def rewrite(self, entries: Iterable[tuple[str, str, Entry]], own_ids: Iterable[tuple[str, str, int, int]]) -> None:
        """Replace every entry and learnt id with these (after a fault: what the memory queues held)."""
        db = self._require()
        with self._transaction(db):
            db.execute("DELETE FROM entries")
            db.execute("DELETE FROM tx_ids")
            self.total_bytes = 0
            self._oldest = math.inf
            self._in_runs(db, ((PUT, station, upstream, entry) for station, upstream, entry in entries))
            for row in own_ids:
                db.execute("INSERT OR REPLACE INTO tx_ids VALUES (?, ?, ?, ?)", row)

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise OSError("the outbox file is not open")
        return self._db


def _corrupt(error: sqlite3.DatabaseError) -> bool:
    """Whether C{error} says the file is not (or no longer) a database, rather than that it cannot be reached."""
    text = str(error)
    return "not a database" in text or "malformed" in text or "corrupt" in text


def keep_aside(path: str, now: float) -> str:
    """Move a corrupt file (and its log files) to C{<path>.corrupt-<unix time>}; returns the new name."""
    aside = f"{path}.corrupt-{int(now)}"
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    return aside


def describe(error: Any) -> str:
    """An error's text for a log line."""
    return str(error) or type(error).__name__
