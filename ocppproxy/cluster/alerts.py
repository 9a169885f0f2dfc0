"""
L{ClusterAlerts}: the notifier's L{ocppproxy.notify.sharing.AlertSharing} in cluster mode,
on the Redis connection of L{ocppproxy.cluster.service.ClusterService}, so the alerts are
the cluster's, not each instance's:

- an alert that concerns the whole cluster (upstream_down) is claimed in Redis first
  (C{SET NX} with an expiry): only the instance that wins sends it;
- a station's presence is kept in a last-seen key (written when it arrives, every
  L{SEEN_REFRESH} seconds while it stays, and when it leaves, expiring about a flap
  window later): a station reaching another instance within the flap window is
  returning, not new; and the claims other instances announce tell an instance that a
  station it lost went elsewhere;
- the last status of each connector is kept in a hash per station (a few days), read
  when a station arrives, so a moved station's repeated statuses raise nothing;
- the alerts of one kind are counted in a counter that the first of them opens for a
  summary window: the burst limit is the cluster's; the stations held back go to a set
  that the first summary at the end of a window reads and empties, so it names the
  stations held back on every instance (a later summary names only those held back since).

Nothing here is on the relaying path, and no alert waits on Redis for more than
C{reply_wait} seconds: a Redis that is away, slow or failing gets the single
instance's answer (send the alert; judge with local state). For the claim that means an
alert may then go out twice, never not at all.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed

from ..logs import proxy_logger
from ..periodic import Periodic
from ..notify.sharing import Place, Status
from .claims import KEY_PREFIX, Claim
from .redis import RedisUnavailable

REPLY_WAIT = 0.5
"""Seconds an alert waits at most for Redis's answer before the single instance's answer is taken."""
SEEN_REFRESH = 10.0
"""Seconds between two writes of the last-seen keys of the stations connected here."""
STATUS_DAYS = 7
"""Days the last statuses of a station stay in Redis after their last change."""
HEARD_FOR = 3600.0
"""Seconds the claims other instances announced are remembered (longer than any sensible flap window)."""
_BATCH = 500

CLAIM_ALERT_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return 1
end
return 0
"""

# Whether another instance had the station within the window, and it is ours from now on.
ARRIVED_SCRIPT = """
local seen = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if seen and seen ~= ARGV[1] then
  return 1
end
return 0
"""

SEEN_SCRIPT = """
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
end
return #KEYS
"""

SAVE_STATUS_SCRIPT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('EXPIRE', KEYS[1], ARGV[3])
"""

LOAD_STATUSES_SCRIPT = "return redis.call('HGETALL', KEYS[1])"

HELD_BACK_SCRIPT = """
redis.call('SADD', KEYS[1], ARGV[1])
return redis.call('EXPIRE', KEYS[1], ARGV[2])
"""

# The stations held back and not summarised yet: the summary that reads them names them.
GATHER_SCRIPT = """
local ids = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return ids
"""

# The first alert of a kind opens the cluster's window: the counter lives that long.
COUNT_ALERT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""


def alert_key(kind: str, subject: str) -> str:
    """The key of the claim on alert C{kind} about C{subject} (an upstream URL, which may be long: hashed)."""
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:32]
    return f"{KEY_PREFIX}alert:{kind}:{digest}"


def burst_key(kind: str, subject: str) -> str:
    """The counter of the alerts of C{kind} about C{subject} (an upstream name, or empty) in the current window."""
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:32]
    return f"{KEY_PREFIX}burst:{kind}:{digest}"


def held_key(kind: str, subject: str) -> str:
    """The set of the stations held back from alerts of C{kind} about C{subject}, waiting for a summary."""
    return burst_key(kind, subject) + ":held"


def seen_key(station_id: str) -> str:
    """The key naming the instance that last had C{station_id}, while it is there and a flap window after."""
    return f"{KEY_PREFIX}seen:{station_id}"


def statuses_key(station_id: str) -> str:
    """The hash of C{station_id}'s last statuses, one field per place."""
    return f"{KEY_PREFIX}statuses:{station_id}"


def status_field(place: Place) -> str:
    """A place as a hash field: C{"evse/connector"}, each empty when unknown."""
    return "/".join("" if part is None else str(part) for part in place)


def status_value(status: Status) -> str:
    """A status as a hash value (JSON)."""
    return json.dumps(list(status))


def parse_statuses(flat: list) -> dict[Place, Status]:
    """The statuses of an C{HGETALL} answer (field, value, ...); what cannot be read is left out."""
    statuses: dict[Place, Status] = {}
    for field, value in zip(flat[::2], flat[1::2], strict=True):
        place, status = _place(_text(field)), _status(_text(value))
        if place is not None and status is not None:
            statuses[place] = status
    return statuses


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _place(field: str) -> Place | None:
    parts = field.split("/")
    if len(parts) != 2 or not all(part == "" or part.isdigit() for part in parts):
        return None
    evse, connector = (int(part) if part else None for part in parts)
    return evse, connector


def _status(value: str) -> Status | None:
    try:
        status = json.loads(value)
    except ValueError:
        return None
    if not isinstance(status, list) or len(status) != 3 or not isinstance(status[0], str):
        return None
    if not all(part is None or isinstance(part, str) for part in status[1:]):
        return None
    return status[0], status[1], status[2]


class ClusterAlerts(MultiService):
    """
    L{ocppproxy.notify.sharing.AlertSharing} on the Redis of C{cluster} (a
    L{ocppproxy.cluster.service.ClusterService}, whose claim announcements it hears).
    C{clock} must be the notifier's: L{moved_since} compares its times. A child of the
    cluster service: it refreshes the last-seen keys while running.
    """

    _log = proxy_logger()
    shared = True

    def __init__(self, cluster, clock, reply_wait: float = REPLY_WAIT) -> None:
        super().__init__()
        self.instance = cluster.instance
        self._redis = cluster.redis
        self._clock = clock
        self._wait = reply_wait
        self._here: set[str] = set()
        self._window = 0.0
        self._heard: OrderedDict[str, float] = OrderedDict()
        # (kind, subject) -> stations held back that Redis did not take: summarised here
        self._unshared: dict[tuple[str, str], set[str]] = {}
        cluster.listen_to_claims(self._claim_heard)
        Periodic(SEEN_REFRESH, self._refresh_seen, clock).setServiceParent(self)

    # --- AlertSharing

    def claim_alert(self, kind: str, subject: str, hold: float) -> Deferred[bool]:
        """Claim with C{SET NX EX}: True if ours, or if Redis does not answer in time (better twice than never)."""
        claiming = self._redis.execute(CLAIM_ALERT_SCRIPT, [alert_key(kind, subject)], [self.instance, _seconds(hold)])
        return self._bounded(claiming.addCallback(lambda won: int(won) == 1), True, f"the claim of {kind}")

    def station_arrived(self, station_id: str, window: float) -> Deferred[bool]:
        """
        True if the last-seen key of C{station_id} names another instance; it names this
        one from now on. Without a flap window, every arrival is new.
        """
        # Only claims heard from now on say that the station left us for another instance.
        self._heard.pop(station_id, None)
        self._window = window
        if window <= 0:
            return succeed(False)
        self._here.add(station_id)
        arriving = self._redis.execute(
            ARRIVED_SCRIPT, [seen_key(station_id)], [self.instance, _seconds(window + SEEN_REFRESH)]
        )
        return self._bounded(arriving.addCallback(lambda seen: int(seen) == 1), False, "the station's last place")

    def station_left(self, station_id: str, window: float) -> None:
        """The last-seen key of C{station_id} expires C{window} seconds from now."""
        self._here.discard(station_id)
        if window > 0:
            self._forget_outcome(
                self._redis.execute(SEEN_SCRIPT, [seen_key(station_id)], [self.instance, _seconds(window)])
            )

    def moved_since(self, station_id: str, since: float) -> bool:
        """Whether another instance announced a claim on C{station_id} at or after C{since}."""
        heard = self._heard.get(station_id)
        return heard is not None and heard >= since

    def count_alert(self, kind: str, subject: str, window: float) -> Deferred[int | None]:
        """C{INCR} of the burst's counter (which expires C{window} s after the first); None if Redis does not answer."""
        counting = self._redis.execute(COUNT_ALERT_SCRIPT, [burst_key(kind, subject)], [_seconds(window)])
        return self._bounded(counting.addCallback(int), None, f"the count of {kind}")

    def held_back(self, kind: str, subject: str, station_id: str, window: float) -> None:
        """C{SADD} to the set of the burst (kept three windows); if Redis refuses, this instance's summary names it."""
        holding = self._redis.execute(HELD_BACK_SCRIPT, [held_key(kind, subject)], [station_id, _seconds(3 * window)])
        holding.addErrback(self._not_held_back, kind, subject, station_id)

    def _not_held_back(self, failure, kind: str, subject: str, station_id: str) -> None:
        self._unshared.setdefault((kind, subject), set()).add(station_id)
        self._failed(failure, "a held-back alert")

    def gather_held(self, kind: str, subject: str, station_ids: list[str]) -> Deferred[list[str]]:
        """
        The set of the burst, read and emptied at once (so no two summaries name a
        station), with the ones Redis refused; C{station_ids} if Redis does not answer.
        """
        unshared = self._unshared.pop((kind, subject), set())
        gathering = self._redis.execute(GATHER_SCRIPT, [held_key(kind, subject)], [])
        gathering.addCallback(lambda found: sorted(unshared.union(_text(station) for station in found)))
        return self._bounded(gathering, station_ids, "the stations held back")

    def load_statuses(self, station_id: str) -> Deferred[dict[Place, Status]]:
        """The hash of C{station_id}'s statuses; none if Redis does not answer in time."""
        loading = self._redis.execute(LOAD_STATUSES_SCRIPT, [statuses_key(station_id)], [])
        return self._bounded(loading.addCallback(parse_statuses), {}, "the station's last statuses")

    def save_status(self, station_id: str, place: Place, status: Status) -> None:
        """Write C{status} into the hash of C{station_id} and extend its life; the outcome is only logged."""
        saving = self._redis.execute(
            SAVE_STATUS_SCRIPT,
            [statuses_key(station_id)],
            [status_field(place), status_value(status), STATUS_DAYS * 86400],
        )
        self._forget_outcome(saving)

    # --- the rest

    def _claim_heard(self, claim: Claim) -> None:
        """A claim announced by any instance: if another's, remember when, for L{moved_since}."""
        if claim.instance == self.instance:
            return
        now = self._clock.seconds()
        self._heard.pop(claim.station, None)
        self._heard[claim.station] = now
        while self._heard and next(iter(self._heard.values())) < now - HEARD_FOR:
            self._heard.popitem(last=False)

    def _refresh_seen(self) -> None:
        if not self._redis.up or not self._here:
            return
        stations = list(self._here)
        expiry = _seconds(self._window + 2 * SEEN_REFRESH)
        for start in range(0, len(stations), _BATCH):
            keys = [seen_key(station) for station in stations[start : start + _BATCH]]
            self._forget_outcome(self._redis.execute(SEEN_SCRIPT, keys, [self.instance, expiry]))

    def _bounded(self, asking: Deferred, fallback, what: str) -> Deferred:
        """A Deferred that fires with C{asking}'s result, or C{fallback} if it fails or takes over C{reply_wait} s."""
        answer: Deferred = Deferred()

        def settle(value) -> None:
            if not answer.called:
                answer.callback(value)

        def too_late() -> None:
            self._log.info(
                "alerts: Redis did not answer {what} within {wait} s; deciding with local state",
                what=what,
                wait=self._wait,
            )
            settle(fallback)

        timer = self._clock.callLater(self._wait, too_late)

        def done(value) -> None:
            if timer.active():
                timer.cancel()
            settle(value)

        def failed(failure) -> None:
            if timer.active():
                timer.cancel()
            self._failed(failure, what)
            settle(fallback)

        asking.addCallbacks(done, failed)
        return answer

    def _forget_outcome(self, writing: Deferred) -> None:
        writing.addErrback(self._failed, "a write")

    def _failed(self, failure, what: str) -> None:
        # Redis away: its outage is logged once by the link; each refused command says nothing new.
        if failure.check(RedisUnavailable) or not self._redis.up:
            self._log.debug("alerts: {what} not asked: Redis unreachable", what=what)
            return
        self._log.warn("alerts: Redis failed {what}: {reason}", what=what, reason=failure.getErrorMessage())


def _seconds(delay: float) -> int:
    """An expiry for Redis: whole seconds, at least one."""
    return max(1, math.ceil(delay))
