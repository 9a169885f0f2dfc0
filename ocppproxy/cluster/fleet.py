"""
The fleet as the whole cluster knows it, for the status page (issue 17): which stations
are connected to which instance, and which were seen by any instance and when they left.

Two things in Redis tell it. The claims (L{ocppproxy.cluster.claims}) say who holds a
station now: an instance that stops without releasing them lets them expire. And one
hash, L{FLEET_KEY}, remembers every station seen, as C{"<event> <time> <instance>"}:
C{connected} when a station's handshake on an instance is done, C{left} when its last
connection there ends (as the instance's status page counts them); written and
forgotten, like the claims, never on the relaying path; kept while Redis is away.
A C{left} never overwrites another instance's C{connected}: the station has moved there,
and the two writes may reach Redis in either order. Entries older than a day whose
station holds no claim are dropped, as the local memory forgets stations after a day.

This module imports no Redis client (it is given a L{ocppproxy.cluster.redis.RedisLink}):
the status side imports L{ClusterFleetView} from here on a single instance too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail
from twisted.internet.defer import TimeoutError as ReadTimeout
from twisted.python.failure import Failure

from ..logs import proxy_logger
from ..periodic import Periodic
from .claims import KEY_PREFIX, ClaimError, parse_claim, station_key

FLEET_KEY = KEY_PREFIX + "fleet"
CONNECTED = "connected"
LEFT = "left"
FORGET_AFTER = 86_400.0
"""Seconds after which a station that no instance holds is dropped from L{FLEET_KEY}."""
PRUNE_EVERY = 3_600.0
"""Also pruned this often, so that the hash stays bounded when nobody reads the page."""
UNSENT_LIMIT = 10_000
"""Stations whose last event is kept while Redis is away, to be written when it returns; beyond, the oldest goes."""

# Remember a station's connection or departure (ARGV: station, event, time, instance, and 'late' for a
# write kept through an outage), unless the station left here after connecting to another instance, or
# a late write finds a newer entry.
SEEN_SCRIPT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local event, time, instance = string.match(current, '^(%S+) (%S+) (%S+)$')
  if ARGV[5] == 'late' and tonumber(time) and tonumber(time) > tonumber(ARGV[3]) then
    return 0
  end
  if ARGV[2] == 'left' and event == 'connected' and instance ~= ARGV[4] then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return 1
"""

# Drop the entries older than ARGV[2] (a time) whose station holds no claim (ARGV[1] is the claims' key
# prefix). With ARGV[3] == 'read', drop nothing (reading the status page changes nothing), and return
# every claim and every entry not that old, as one JSON text:
# [[station, claim, ...], [station, entry, ...]] (one string parses in C: thousands of bulk replies would
# be parsed by txredisapi in Python, on the reactor thread). The claims are found with SCAN: a station
# without an entry (its instance has no status page, or its write was lost) is still seen connected.
READ_SCRIPT = """
local prefix, cutoff, reading = ARGV[1], tonumber(ARGV[2]), ARGV[3] == 'read'
local claims, held, cursor = {}, {}, '0'
if reading then
  repeat
    local reply = redis.call('SCAN', cursor, 'MATCH', prefix .. '*', 'COUNT', 1000)
    cursor = reply[1]
    for _, key in ipairs(reply[2]) do
      local value = redis.call('GET', key)
      if value then
        local station = string.sub(key, #prefix + 1)
        held[station] = true
        claims[#claims + 1] = station
        claims[#claims + 1] = value
      end
    end
  until cursor == '0'
end
local entries, seen = {}, redis.call('HGETALL', KEYS[1])
for i = 1, #seen, 2 do
  local station, entry = seen[i], seen[i + 1]
  local time = tonumber(string.match(entry, '^%S+ (%S+) '))
  local claimed = held[station] or (not reading and redis.call('EXISTS', prefix .. station) == 1)
  if time and time < cutoff and not claimed then
    if not reading then
      redis.call('HDEL', KEYS[1], station)
    end
  elseif reading then
    entries[#entries + 1] = station
    entries[#entries + 1] = entry
  end
end
if not reading then
  return 0
end
-- An empty Lua table would be encoded as an object.
return '[' .. (#claims > 0 and cjson.encode(claims) or '[]') .. ','
    .. (#entries > 0 and cjson.encode(entries) or '[]') .. ']'
"""


@dataclass(frozen=True, slots=True)
class FleetEntry:
    """What L{FLEET_KEY} remembers of a station: its last C{event} (connected or left), when, on which instance."""

    event: str
    time: float
    instance: str


@dataclass(frozen=True)
class ClusterFleetView:
    """
    The cluster's fleet at one moment: C{holders}, the instance holding each connected
    station (its claim), and C{seen}, the last event of every station remembered.
    """

    holders: dict[str, str] = field(default_factory=dict)
    seen: dict[str, FleetEntry] = field(default_factory=dict)


class FleetReadError(Exception):
    """The cluster's fleet could not be read (Redis away, too slow, or an answer out of shape)."""


def parse_entry(value: str) -> FleetEntry:
    """An entry of L{FLEET_KEY}; raises ValueError."""
    event, time, instance = value.split(" ")
    if event not in (CONNECTED, LEFT):
        raise ValueError(f"unknown event {event[:20]!r}")
    return FleetEntry(event, float(time), instance)


def parse_fleet(reply: str | bytes) -> tuple[ClusterFleetView, list[str]]:
    """
    The view from L{READ_SCRIPT}'s answer, and what was wrong with it (claims and entries
    out of shape are left out and named). Raises L{FleetReadError} if the answer is not
    JSON holding two lists of pairs of strings.
    """
    try:
        claims, entries = json.loads(reply)
        if len(claims) % 2 or len(entries) % 2 or not all(isinstance(item, str) for item in (*claims, *entries)):
            raise ValueError("not two lists of pairs of strings")
    except (ValueError, TypeError) as error:
        raise FleetReadError(f"unexpected answer from Redis ({error}): {str(reply)[:80]}") from None
    view, problems = ClusterFleetView(), []
    for station, value in zip(claims[::2], claims[1::2], strict=True):
        try:
            view.holders[station] = parse_claim(station, value).instance
        except ClaimError as error:
            problems.append(f"station {station}: {error}")
    for station, value in zip(entries[::2], entries[1::2], strict=True):
        try:
            view.seen[station] = parse_entry(value)
        except ValueError as error:
            problems.append(f"station {station}: not a fleet entry ({error}): {value[:80]!r}")
    return view, problems


def _first_of(reading: Deferred, timeout: float, clock) -> Deferred:
    """
    A Deferred with C{reading}'s outcome, or failing with C{ReadTimeout} after C{timeout}
    seconds. Unlike C{addTimeout}, C{reading} is not cancelled: txredisapi would cancel
    its own reply timeout with it, and a Redis that hangs would go unnoticed.
    """
    answer: Deferred = Deferred()
    timer = clock.callLater(timeout, lambda: answer.errback(ReadTimeout()))

    def settle(outcome) -> None:
        if timer.active():
            timer.cancel()
            if isinstance(outcome, Failure):
                answer.errback(outcome)
            else:
                answer.callback(outcome)
        # Too late: the answer or failure is dropped.

    reading.addBoth(settle)
    return answer


class ClusterFleet(MultiService):
    """
    This instance's part of the cluster's fleet record in Redis, through C{redis} (a
    L{ocppproxy.cluster.redis.RedisLink}): L{station_connected} and L{station_left} (called
    by the status page's L{ocppproxy.status.activity.StationActivity}, so that a station
    counts as seen exactly when it does on a single instance: once its handshake is done) write
    (sent and forgotten; while Redis is away, each station's last event is kept and written
    by L{redis_back}), L{read} reads. Prunes the record every L{PRUNE_EVERY} seconds while
    running. Times come from C{clock}.
    """

    _log = proxy_logger()

    def __init__(self, redis, clock, instance: str) -> None:
        super().__init__()
        self._redis = redis
        self._clock = clock
        self.instance = instance
        Periodic(PRUNE_EVERY, self._prune, clock).setServiceParent(self)
        # Whether the last read failed for another reason than Redis being away (logged once until one succeeds).
        self._read_failing = False
        # What the last read found out of shape (logged when it changes, not every read).
        self._problems: list[str] = []
        # station id -> (event, time): what happened while Redis was away, oldest first.
        self._unsent: dict[str, tuple[str, float]] = {}

    def station_connected(self, station_id: str) -> None:
        """C{station_id} is connected here (its first connection here opened)."""
        self._write(station_id, CONNECTED)

    def station_left(self, station_id: str) -> None:
        """The last connection of C{station_id} here ended."""
        self._write(station_id, LEFT)

    def redis_back(self) -> None:
        """Redis is reachable (again): write what happened while it was away, with the times it happened."""
        unsent, self._unsent = self._unsent, {}
        for station_id, (event, when) in unsent.items():
            self._write(station_id, event, when)

    def _write(self, station_id: str, event: str, happened: float | None = None) -> None:
        """Write C{event} now, or keep it while Redis is away; C{happened} is the time of a kept one."""
        when = self._clock.seconds() if happened is None else happened
        if not self._redis.up:
            self._unsent.pop(station_id, None)
            self._unsent[station_id] = (event, when)
            if len(self._unsent) > UNSENT_LIMIT:
                del self._unsent[next(iter(self._unsent))]
            return
        written = self._redis.execute(
            SEEN_SCRIPT,
            [FLEET_KEY],
            [station_id, event, f"{when:.3f}", self.instance, "live" if happened is None else "late"],
        )
        written.addErrback(self._write_failed, event, station_id)

    def _write_failed(self, failure, event: str, station_id: str) -> None:
        # An outage is logged once by the Redis link; a refused command adds nothing.
        if self._redis.up:
            self._log.warn(
                "cluster: fleet record of {station} ({event}) not written: {reason}",
                station=station_id,
                event=event,
                reason=failure.getErrorMessage(),
            )

    def read(self, timeout: float) -> Deferred[ClusterFleetView]:
        """
        The cluster's fleet now (entries past C{FORGET_AFTER} left out: reading changes
        nothing, the periodic prune deletes them); fails with L{FleetReadError} at once
        while Redis is away, and when Redis has not answered within C{timeout} seconds.
        """
        if not self._redis.up:
            return fail(FleetReadError("Redis unreachable"))
        reading = self._redis.execute(READ_SCRIPT, [FLEET_KEY], self._script_args("read"))
        return _first_of(reading, timeout, self._clock).addCallback(self._read).addErrback(self._read_failed, timeout)

    def _script_args(self, mode: str) -> list:
        return [station_key(""), f"{self._clock.seconds() - FORGET_AFTER:.3f}", mode]

    def _read(self, reply) -> ClusterFleetView:
        view, problems = parse_fleet(reply)
        if problems and problems != self._problems:
            self._log.warn(
                "cluster: fleet record: {count} entries out of shape, left out: {problems}",
                count=len(problems),
                problems="; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else ""),
            )
        self._problems = problems
        self._read_failing = False
        return view

    def _read_failed(self, failure, timeout: float):
        if not self._redis.up:
            raise FleetReadError("Redis unreachable")  # the outage is logged once by the Redis link
        if failure.check(ReadTimeout):
            reason = f"Redis did not answer within {timeout:g} s"
        else:
            reason = failure.getErrorMessage()
        if not self._read_failing:
            self._read_failing = True
            self._log.warn(
                "cluster: cannot read the fleet record: {reason}; the status shows the local view", reason=reason
            )
        raise FleetReadError(reason)

    def _prune(self) -> None:
        if self._redis.up:
            pruned = self._redis.execute(READ_SCRIPT, [FLEET_KEY], self._script_args("prune"))
            pruned.addErrback(self._write_failed, "prune", "every station")
