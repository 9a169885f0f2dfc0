"""
The OCPP 1.6 transaction ids of every upstream, shared through Redis (issue 15, point 2;
issue 24, point 2): a station whose transaction started through one instance may stop it
through another, and each upstream must still get its own transaction id.

Each station's ids live in one Redis hash, C{ocppproxy:txids:<station id>}: one field per
id the station uses, whose value is the JSON list of the records open under that id
(oldest first, see L{ocppproxy.core.transactions.TransactionStore}), each mapping an
upstream's name to its own id: C{"17": '[{"csms-a": 17, "analytics": 4}]'}. The hash is
kept for L{TRANSACTIONS_TTL} after its last change. Every change is sent and forgotten;
nothing on the way of a frame waits for Redis.

The release before named upstreams kept one hash per station, C{ocppproxy:transactions:
<station id>}, primary id -> secondary id. The first read of a station converts it, in
Redis and at once (one script): each pair becomes a record of upstreams C{primary} and
C{secondary} (the names C{primary_url} and C{secondary_url} still define), unless the
new hash already has that id, and the old hash is deleted.

When they are read: as soon as a station's handshake arrives (L{SharedTransactions.read},
called with the claim), before the primary link even starts. The station cannot send a
frame before the proxy has answered its handshake, and that answer waits for the
primary's own handshake (a TCP connect and an HTTP upgrade to the central system), while
a Redis next to the instances answers one HGETALL well within a millisecond. Holding the
mirrors' frames until the read is back would need a queue on the relaying path of
every station for the rare one whose Redis answers slower than its central system; a
frame translated before its ids arrived goes out with the station's id (as without a
state file) and is named in a warning.

With Redis away, changes are kept per station and transaction (the last one wins) and
written when Redis is back, and the stations whose read failed are read then.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.transactions import LEGACY_PRIMARY, LEGACY_SECONDARY, PER_STATION_LIMIT, TransactionStore
from ..logs import proxy_logger
from .claims import KEY_PREFIX
from .redis import RedisLink, RedisUnavailable

# A charging session rarely lasts a week; a station silent that long starts afresh.
TRANSACTIONS_TTL = 7 * 24 * 3600

# Apply changes to one station's hash: ARGV[1] the TTL, ARGV[2] how many ids to keep,
# then (station's id, JSON records or '' to forget it) pairs. The hash keeps the
# PER_STATION_LIMIT highest ids: a central system numbers its transactions upwards, so
# those are the newest.
WRITE_SCRIPT = """
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local fields = redis.call('HKEYS', KEYS[1])
local limit = tonumber(ARGV[2])
if #fields > limit then
  table.sort(fields, function(a, b) return (tonumber(a) or 0) < (tonumber(b) or 0) end)
  for i = 1, #fields - limit do
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
if #fields > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return #fields
"""

# Read a station's hash (KEYS[1]), first converting the hash of the release before named
# upstreams (KEYS[2], primary id -> secondary id) into it: ARGV[1] the TTL, ARGV[2] and
# ARGV[3] the names of the legacy primary and secondary (JSON strings, quoted).
READ_SCRIPT = """
local legacy = redis.call('HGETALL', KEYS[2])
if #legacy > 0 then
  for i = 1, #legacy, 2 do
    local tx, own = legacy[i], legacy[i + 1]
    if string.match(tx, '^%-?%d+$') and string.match(own, '^%-?%d+$')
        and redis.call('HEXISTS', KEYS[1], tx) == 0 then
      redis.call('HSET', KEYS[1], tx, '[{' .. ARGV[2] .. ':' .. tx .. ',' .. ARGV[3] .. ':' .. own .. '}]')
    end
  end
  redis.call('DEL', KEYS[2])
  if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
  end
end
return redis.call('HGETALL', KEYS[1])
"""


def transactions_key(station_id: str) -> str:
    """The Redis hash of C{station_id}'s transaction ids, by the id the station uses."""
    return f"{KEY_PREFIX}txids:{station_id}"


def legacy_transactions_key(station_id: str) -> str:
    """The hash the release before named upstreams kept for C{station_id}: primary id -> secondary id."""
    return f"{KEY_PREFIX}transactions:{station_id}"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _records(value: str) -> list[dict[str, int]] | None:
    """A field's value as records (each a non-empty mapping of names to integers), or None if malformed."""
    try:
        records = json.loads(value)
    except ValueError:
        return None
    if not isinstance(records, list) or not records:
        return None
    for ids in records:
        if not isinstance(ids, dict) or not ids or not all(type(own) is int for own in ids.values()):
            return None
    return records


def parse_records(flat: Any) -> dict[int, list[dict[str, int]]]:
    """HGETALL's flat answer (field, value, ...) as station's id -> records; malformed fields skipped."""
    found: dict[int, list[dict[str, int]]] = {}
    if not isinstance(flat, list):
        return found
    for index in range(0, len(flat) - 1, 2):
        try:
            tx = int(_text(flat[index]))
        except ValueError:
            continue
        records = _records(_text(flat[index + 1]))
        if records is not None:
            found[tx] = records
    return found


def records_value(records: Sequence[Mapping[str, int]]) -> str:
    """Records as a field's value: compact JSON, names sorted (the same records, the same text)."""
    return json.dumps([dict(ids) for ids in records], separators=(",", ":"), sort_keys=True)


class SharedTransactions:
    """
    The proxy's transaction store in cluster mode: the L{TransactionStore} it wraps (the
    one a state file keeps, if any) answers every lookup; each change is also sent to
    Redis (the records open under the station's id, every upstream by name), and L{read}
    merges a station's records from Redis into it. It has the methods of a
    L{TransactionStore} that sessions and the state file use.
    """

    _log = proxy_logger()

    def __init__(self, local: TransactionStore, redis: RedisLink, ttl: int = TRANSACTIONS_TTL) -> None:
        self.local = local
        self._redis = redis
        self._ttl = ttl
        # station id -> station's id -> its records as JSON, or None to forget: changes Redis has not taken yet.
        self._unsent: dict[str, OrderedDict[int, str | None]] = {}
        # Stations whose records are being read from Redis, and those whose read waits for Redis.
        self._loading: set[str] = set()
        self._unread: set[str] = set()

    # --- what TransactionIdTranslator and the state file use

    def started(self, station_id: str, tx: int, ids: Mapping[str, int]) -> dict[str, int] | None:
        earlier = self.local.started(station_id, tx, ids)
        self._share(station_id, tx)
        return earlier

    def add_id(self, station_id: str, tx: int, upstream: str, own_id: int) -> None:
        self.local.add_id(station_id, tx, upstream, own_id)
        self._share(station_id, tx)

    def ids(self, station_id: str, tx: Any) -> Mapping[str, int] | None:
        found = self.local.ids(station_id, tx)
        if found is None and station_id in self._loading:
            self._log.warn(
                "station {station}: transaction {transaction} reached its upstreams before their ids were read"
                " from Redis: sent with the station's id",
                station=station_id,
                transaction=tx,
            )
        return found

    def station_tx(self, station_id: str, upstream: str, own_id: Any) -> int | None:
        return self.local.station_tx(station_id, upstream, own_id)

    def records(self, station_id: str, tx: Any) -> list[dict[str, int]]:
        return self.local.records(station_id, tx)

    def replace(self, station_id: str, tx: int, records: Sequence[Mapping[str, int]]) -> None:
        self.local.replace(station_id, tx, records)
        self._share(station_id, tx)

    def finished(self, station_id: str, tx: Any) -> None:
        known = bool(self.local.records(station_id, tx))
        self.local.finished(station_id, tx)
        if known:
            self._share(station_id, tx)

    def remember(self, station_id: str, primary_id: int, secondary_id: int) -> None:
        self.local.remember(station_id, primary_id, secondary_id)
        self._share(station_id, primary_id)

    def forget(self, station_id: str, primary_id: Any) -> None:
        self.finished(station_id, primary_id)

    def secondary_id(self, station_id: str, primary_id: Any) -> int | None:
        return self.local.secondary_id(station_id, primary_id)

    def primary_id(self, station_id: str, secondary_id: Any) -> int | None:
        return self.local.primary_id(station_id, secondary_id)

    def dump(self) -> dict[str, list[list]]:
        return self.local.dump()

    def load(self, data: Any) -> None:
        self.local.load(data)

    # --- Redis

    def _share(self, station_id: str, tx: int) -> None:
        """Send what the local store holds under C{tx} now (nothing: the field is deleted)."""
        records = self.local.records(station_id, tx)
        self._write(station_id, {tx: records_value(records) if records else None})

    def read(self, station_id: str) -> None:
        """
        A station connected here: merge its records from Redis into the local store (sent
        and forgotten), its hash of the release before named upstreams converted first.
        """
        if not self._redis.up:
            self._unread.add(station_id)
            return
        self._loading.add(station_id)
        reading = self._redis.execute(
            READ_SCRIPT,
            [transactions_key(station_id), legacy_transactions_key(station_id)],
            [self._ttl, json.dumps(LEGACY_PRIMARY), json.dumps(LEGACY_SECONDARY)],
        )
        reading.addCallbacks(self._read, self._read_failed, (station_id,), errbackArgs=(station_id,))

    def left(self, station_id: str) -> None:
        """A station's last connection here ended: no read is owed to it any more."""
        self._unread.discard(station_id)

    def _read(self, flat, station_id: str) -> None:
        self._loading.discard(station_id)
        for tx, records in parse_records(flat).items():
            if tx in self._unsent.get(station_id, ()):
                continue  # changed here meanwhile: ours is newer
            if self.local.records(station_id, tx) != records:
                self.local.replace(station_id, tx, records)

    def _read_failed(self, failure, station_id: str) -> None:
        self._loading.discard(station_id)
        self._unread.add(station_id)
        self._complain(failure, "read", station_id)

    def _write(self, station_id: str, changes: dict[int, str | None]) -> None:
        if not self._redis.up:
            self._keep(station_id, changes)
            return
        args: list = [self._ttl, PER_STATION_LIMIT]
        for tx, value in changes.items():
            args += [tx, "" if value is None else value]
        writing = self._redis.execute(WRITE_SCRIPT, [transactions_key(station_id)], args)
        writing.addErrback(self._write_failed, station_id, changes)

    def _write_failed(self, failure, station_id: str, changes: dict[int, str | None]) -> None:
        self._keep(station_id, changes)
        self._complain(failure, "write", station_id)

    def _keep(self, station_id: str, changes: dict[int, str | None]) -> None:
        unsent = self._unsent.setdefault(station_id, OrderedDict())
        for tx, value in changes.items():
            unsent.pop(tx, None)
            unsent[tx] = value
        # Bounded like the store itself, plus as many forgotten ids.
        while len(unsent) > 2 * PER_STATION_LIMIT:
            unsent.popitem(last=False)

    def write_back(self) -> None:
        """Redis is reachable (again): send the changes it missed, then read the stations it could not answer for."""
        unsent, self._unsent = self._unsent, {}
        if unsent:
            self._log.info("cluster: writing back the transaction ids of {count} stations", count=len(unsent))
        for station_id, changes in unsent.items():
            self._write(station_id, dict(changes))
        unread, self._unread = self._unread, set()
        for station_id in unread:
            self.read(station_id)

    def _complain(self, failure, what: str, station_id: str) -> None:
        if failure.check(RedisUnavailable) or not self._redis.up:
            return  # the outage was logged once by the link
        self._log.warn(
            "cluster: transaction ids {what} failed for station {station}: {reason}",
            what=what,
            station=station_id,
            reason=failure.getErrorMessage(),
        )
