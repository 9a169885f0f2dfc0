"""
The OCPP 1.6 transaction ids for the secondary, shared through Redis (issue 15, point 2):
a station whose transaction started through one instance may stop it through another,
and the secondary must still get its own transaction id.

Each station's pairs live in one Redis hash, C{ocppproxy:transactions:<station id>},
primary id -> secondary id, kept for L{TRANSACTIONS_TTL} after its last change. Every
change is sent and forgotten; nothing on the way of a frame waits for Redis.

When they are read: as soon as a station's handshake arrives (L{SharedTransactions.load},
called with the claim), before the primary link even starts. The station cannot send a
frame before the proxy has answered its handshake, and that answer waits for the
primary's own handshake (a TCP connect and an HTTP upgrade to the central system), while
a Redis next to the instances answers one HGETALL well within a millisecond. Holding the
secondary's frames until the read is back would need a queue on the relaying path of
every station for the rare one whose Redis answers slower than its central system; a
frame translated before its pairs arrived goes out with the primary's id (as without a
state file) and is named in a warning.

With Redis away, changes are kept per station and field (the last one wins) and written
when Redis is back, and the stations whose read failed are read then.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ..core.transactions import LEGACY_SECONDARY, PER_STATION_LIMIT, TransactionStore
from ..logs import proxy_logger
from .claims import KEY_PREFIX
from .redis import RedisLink, RedisUnavailable

# A charging session rarely lasts a week; a station silent that long starts afresh.
TRANSACTIONS_TTL = 7 * 24 * 3600

# Apply changes to one station's hash: ARGV[1] the TTL, ARGV[2] how many pairs to keep,
# then (primary id, secondary id or '' to forget it) pairs. The hash keeps the PER_STATION_LIMIT highest primary ids: a
# central system numbers its transactions upwards, so those are the newest.
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
  table.sort(fields, function(a, b) return tonumber(a) < tonumber(b) end)
  for i = 1, #fields - limit do
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
if #fields > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return #fields
"""

READ_SCRIPT = "return redis.call('HGETALL', KEYS[1])"


def transactions_key(station_id: str) -> str:
    """The Redis hash of C{station_id}'s transaction-id pairs."""
    return f"{KEY_PREFIX}transactions:{station_id}"


def parse_pairs(flat: Any) -> dict[int, int]:
    """HGETALL's flat answer (field, value, field, value...) as primary id -> secondary id; malformed pairs skipped."""
    pairs: dict[int, int] = {}
    if not isinstance(flat, list):
        return pairs
    for index in range(0, len(flat) - 1, 2):
        field, value = flat[index], flat[index + 1]
        if isinstance(field, bytes):
            field = field.decode("ascii", "replace")
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        try:
            pairs[int(field)] = int(value)
        except (TypeError, ValueError):
            continue
    return pairs


class SharedTransactions:
    """
    The proxy's transaction store in cluster mode: the L{TransactionStore} it wraps (the
    one a state file keeps, if any) answers every lookup; each change is also sent to
    Redis, and L{load} merges a station's pairs from Redis into it. It has the methods
    of a L{TransactionStore} that sessions and the state file use.
    """

    _log = proxy_logger()

    def __init__(self, local: TransactionStore, redis: RedisLink, ttl: int = TRANSACTIONS_TTL) -> None:
        self.local = local
        self._redis = redis
        self._ttl = ttl
        # station id -> primary id -> secondary id, or None to forget: changes Redis has not taken yet.
        self._unsent: dict[str, OrderedDict[int, int | None]] = {}
        # Stations whose pairs are being read from Redis, and those whose read waits for Redis.
        self._loading: set[str] = set()
        self._unread: set[str] = set()

    # --- what TransactionIdTranslator and the state file use. Redis holds the ids of the
    # upstream named "secondary" only (the hash's shape before named upstreams); the ids
    # of other upstreams stay on this instance.

    def started(self, station_id: str, tx: int, ids: Mapping[str, int]) -> dict[str, int] | None:
        earlier = self.local.started(station_id, tx, ids)
        if LEGACY_SECONDARY in ids:
            self._write(station_id, {tx: ids[LEGACY_SECONDARY]})
        return earlier

    def add_id(self, station_id: str, tx: int, upstream: str, own_id: int) -> None:
        self.local.add_id(station_id, tx, upstream, own_id)
        if upstream == LEGACY_SECONDARY:
            self._write(station_id, {tx: own_id})

    def ids(self, station_id: str, tx: Any) -> Mapping[str, int] | None:
        found = self.local.ids(station_id, tx)
        if found is None and station_id in self._loading:
            self._log.warn(
                "station {station}: transaction {transaction} reached the secondary before its ids were read"
                " from Redis: sent with the primary's id",
                station=station_id,
                transaction=tx,
            )
        return found

    def station_tx(self, station_id: str, upstream: str, own_id: Any) -> int | None:
        return self.local.station_tx(station_id, upstream, own_id)

    def finished(self, station_id: str, tx: Any) -> None:
        known = self.local.secondary_id(station_id, tx) is not None
        self.local.finished(station_id, tx)
        if known:
            self._write(station_id, {tx: None})

    def remember(self, station_id: str, primary_id: int, secondary_id: int) -> None:
        self.local.remember(station_id, primary_id, secondary_id)
        self._write(station_id, {primary_id: secondary_id})

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

    def read(self, station_id: str) -> None:
        """A station connected here: merge its pairs from Redis into the local store (sent and forgotten)."""
        if not self._redis.up:
            self._unread.add(station_id)
            return
        self._loading.add(station_id)
        reading = self._redis.execute(READ_SCRIPT, [transactions_key(station_id)], [])
        reading.addCallbacks(self._read, self._read_failed, (station_id,), errbackArgs=(station_id,))

    def left(self, station_id: str) -> None:
        """A station's last connection here ended: no read is owed to it any more."""
        self._unread.discard(station_id)

    def _read(self, flat, station_id: str) -> None:
        self._loading.discard(station_id)
        for primary, secondary in parse_pairs(flat).items():
            if primary in self._unsent.get(station_id, ()):
                continue  # changed here meanwhile: ours is newer
            if self.local.secondary_id(station_id, primary) != secondary:
                self.local.remember(station_id, primary, secondary)

    def _read_failed(self, failure, station_id: str) -> None:
        self._loading.discard(station_id)
        self._unread.add(station_id)
        self._complain(failure, "read", station_id)

    def _write(self, station_id: str, changes: dict[int, int | None]) -> None:
        if not self._redis.up:
            self._keep(station_id, changes)
            return
        args: list = [self._ttl, PER_STATION_LIMIT]
        for primary, secondary in changes.items():
            args += [primary, "" if secondary is None else secondary]
        writing = self._redis.execute(WRITE_SCRIPT, [transactions_key(station_id)], args)
        writing.addErrback(self._write_failed, station_id, changes)

    def _write_failed(self, failure, station_id: str, changes: dict[int, int | None]) -> None:
        self._keep(station_id, changes)
        self._complain(failure, "write", station_id)

    def _keep(self, station_id: str, changes: dict[int, int | None]) -> None:
        unsent = self._unsent.setdefault(station_id, OrderedDict())
        for primary, secondary in changes.items():
            unsent.pop(primary, None)
            unsent[primary] = secondary
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
