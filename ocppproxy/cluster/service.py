"""
L{ClusterService}: one connection per station id across the cluster. The proxy tells it
when a station connects and when a connection ends; it claims and announces stations in
Redis, refreshes the claims in batches, and asks the proxy to close a local connection
that another instance replaced. Nothing here is on the relaying path.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed

from ..config.model import ClusterConfig
from ..core.transactions import TransactionStore
from ..logs import proxy_logger
from ..periodic import Periodic
from .claims import (
    CLAIMS_CHANNEL,
    ORDER_KEY,
    Claim,
    ClaimError,
    LocalClaims,
    parse_announcement,
    parse_claim,
    station_key,
)
from .fleet import ClusterFleet
from .outbox_lua import CLAIM_IF_FREE_SCRIPT, CLAIM_STORE
from .redis import REPLY_TIMEOUT, RedisLink, RedisUnavailable
from .transactions import SharedTransactions

# Claim a station: number the claim, store it with a TTL (CLAIM_STORE) and announce it,
# atomically, so that the key and the announcements agree on the order.
CLAIM_SCRIPT = CLAIM_STORE + """redis.call('PUBLISH', ARGV[4], value .. ' ' .. ARGV[5])
return order
"""

# Refresh a batch of our claims: extend the ones still ours, restore the ones expired, and
# return, for each key, '' or the other claim that holds it now.
REFRESH_SCRIPT = """
local found = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value == ARGV[i + 1] then
    redis.call('EXPIRE', key, ARGV[1])
    found[i] = ''
  elseif not value then
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
    found[i] = ''
  else
    found[i] = value
  end
end
return found
"""

# Release a claim only if it is still ours.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

REFRESH_BATCH = 500


class ClusterService(MultiService):
    """
    The proxy's ownership hook in cluster mode: L{station_connected} and
    L{station_ended} are called by the proxy; C{replace(session, instance)} is the
    proxy's way to close a session another instance replaced (see
    L{ocppproxy.relay.registry.close_replaced}). C{redis_up} says whether Redis is
    reachable. Claims are refreshed every third of C{ownership_ttl}, all in a few
    batches, and written back each time Redis becomes reachable. A Redis command
    unanswered for C{reply_timeout} seconds counts as an outage.
    """

    _log = proxy_logger()

    def __init__(
        self,
        settings: ClusterConfig,
        reactor,
        replace: Callable[[object, str], None],
        reply_timeout: float = REPLY_TIMEOUT,
    ) -> None:
        super().__init__()
        self.instance = settings.instance
        self._ttl = settings.ownership_ttl
        self._replace_session = replace
        self._claims = LocalClaims(settings.instance)
        # station id -> (session, serial of its claim)
        self._sessions: dict[str, tuple[object, int]] = {}
        self.redis = RedisLink(
            settings.redis_url, CLAIMS_CHANNEL, reactor, self._write_back, self._announced, reply_timeout
        )
        self.redis.setServiceParent(self)
        # The cluster-wide record of stations seen, for the status page (written by its activity).
        self.fleet = ClusterFleet(self.redis, reactor, settings.instance)
        self.fleet.setServiceParent(self)
        refresh = Periodic(settings.ownership_ttl / 3, self._refresh, reactor)
        refresh.setName("refresh")
        refresh.setServiceParent(self)
        # The transaction ids for the secondary, once shared (L{share_transactions}).
        self.transactions: SharedTransactions | None = None
        # Called with each claim announced by any instance (the cluster's alerts hear where stations go).
        self._claim_listeners: list[Callable[[Claim], None]] = []
        # Told of each station this instance starts or stops holding (the outbox follows the station).
        self._hold_watchers: list[tuple[Callable[[str], None], Callable[[str], None]]] = []

    def listen_to_claims(self, listener: Callable[[Claim], None]) -> None:
        """Call C{listener} with each claim any instance announces (where stations go)."""
        self._claim_listeners.append(listener)

    def watch_holds(self, held: Callable[[str], None], released: Callable[[str], None]) -> None:
        """
        Call C{held(station)} when a station connects here, C{released(station)} when this
        instance no longer holds it (it left, or another instance's newer claim replaced it).
        """
        self._hold_watchers.append((held, released))

    def claim_absent(self, holder) -> Deferred:
        """
        Claim C{holder.station_id} for C{holder} (a drain of its backlog) only if no
        instance claims it; fires with whether it did. The claim is then refreshed and
        replaced like a connection's: C{holder.close(code, reason)} when a newer claim comes.
        """
        station = holder.station_id
        if not self.redis.up or station in self._sessions:
            return succeed(False)
        claim = self._claims.connected(station)
        claiming = self.redis.execute(
            CLAIM_IF_FREE_SCRIPT,
            [station_key(station), ORDER_KEY],
            [self.instance, claim.serial, self._ttl],
        )

        def numbered(order) -> bool:
            if order is None or station in self._sessions:
                self._claims.ended(station, claim.serial)
                return False
            self._sessions[station] = (holder, claim.serial)
            if self._claims.numbered(station, claim.serial, int(order)):
                self._replaced(station, "another instance")
                return False
            return True

        def failed(failure) -> bool:
            self._claims.ended(station, claim.serial)
            self._failed(failure, "drain claim", station)
            return False

        return claiming.addCallbacks(numbered, failed)

    def share_transactions(self, local: TransactionStore) -> SharedTransactions:
        """
        The store the proxy must use instead of C{local}: the same pairs, also kept in
        Redis, and read from it for each station that connects here.
        """
        self.transactions = SharedTransactions(local, self.redis)
        return self.transactions

    @property
    def redis_up(self) -> bool:
        """Whether Redis is reachable now (both connections ready)."""
        return self.redis.up

    def startService(self) -> None:
        super().startService()
        self._log.info("cluster: this is instance {instance}", instance=self.instance)

    # --- what the proxy calls

    def station_connected(self, session) -> None:
        """A station connected here (a new session): claim it; an older session of it elsewhere will close."""
        claim = self._claims.connected(session.station_id)
        self._sessions[session.station_id] = (session, claim.serial)
        self._claim(claim)
        if self.transactions is not None:
            self.transactions.read(session.station_id)
        for held, _ in self._hold_watchers:
            held(session.station_id)

    def station_ended(self, session) -> None:
        """A session ended: release its claim if it was the station's current one here."""
        held = self._sessions.get(session.station_id)
        if held is None or held[0] is not session:
            return
        del self._sessions[session.station_id]
        if self.transactions is not None:
            self.transactions.left(session.station_id)
        claim = self._claims.ended(session.station_id, held[1])
        if claim is not None and claim.order is not None and self.redis.up and self.running:
            released = self.redis.execute(RELEASE_SCRIPT, [station_key(claim.station)], [claim.value()])
            released.addErrback(self._failed, "release", claim.station)
        for _, gone in self._hold_watchers:
            gone(session.station_id)

    # --- claims

    def _claim(self, claim: Claim) -> None:
        if not self.redis.up:
            return  # written back when Redis returns
        numbering = self.redis.execute(
            CLAIM_SCRIPT,
            [station_key(claim.station), ORDER_KEY],
            [self.instance, claim.serial, self._ttl, CLAIMS_CHANNEL, claim.station],
        )
        numbering.addCallbacks(self._numbered, self._failed, (claim,), errbackArgs=("claim", claim.station))

    def _numbered(self, order, claim: Claim) -> None:
        self._log.debug("cluster: station {station} claimed, order {order}", station=claim.station, order=order)
        if self._claims.numbered(claim.station, claim.serial, int(order)):
            self._replaced(claim.station, "another instance")

    def _announced(self, message: str) -> None:
        try:
            remote = parse_announcement(message)
        except ClaimError as error:
            self._log.warn("cluster: ignoring an announcement: {reason}", reason=str(error))
            return
        for listener in self._claim_listeners:
            listener(remote)
        if self._claims.heard(remote):
            self._replaced(remote.station, remote.instance)

    def _replaced(self, station: str, instance: str) -> None:
        """Another instance holds a newer connection of C{station}: close ours, leaving its claim alone."""
        session, serial = self._sessions.pop(station)
        self._claims.ended(station, serial)
        if self.transactions is not None:
            self.transactions.left(station)
        self._replace_session(session, instance)
        for _, gone in self._hold_watchers:
            gone(station)

    def _refresh(self) -> None:
        if not self.redis.up:
            return
        claims = self._claims.numbered_claims()
        for start in range(0, len(claims), REFRESH_BATCH):
            batch = claims[start : start + REFRESH_BATCH]
            refreshing = self.redis.execute(
                REFRESH_SCRIPT,
                [station_key(claim.station) for claim in batch],
                [self._ttl] + [c.value() for c in batch],
            )
            refreshing.addCallbacks(self._refreshed, self._failed, (batch,), errbackArgs=("refresh", None))

    def _refreshed(self, found: list, batch: list[Claim]) -> None:
        for claim, value in zip(batch, found, strict=True):
            if not value:
                continue
            try:
                holder = parse_claim(claim.station, value)
            except ClaimError as error:
                self._log.warn("cluster: station {station}: {reason}", station=claim.station, reason=str(error))
                continue
            if self._claims.holder_found(claim.station, claim.serial, holder):
                self._replaced(claim.station, holder.instance)

    def _write_back(self) -> None:
        """Redis is reachable (again): claim every station we hold, so that Redis knows them."""
        claims = self._claims.claims()
        if claims:
            self._log.info("cluster: writing back {count} station claims", count=len(claims))
        for claim in claims:
            self._claim(claim)
        if self.transactions is not None:
            self.transactions.write_back()
        self.fleet.redis_back()

    def _failed(self, failure, what: str, station: str | None) -> None:
        # While Redis is away the outage was logged once; each refused command says nothing new.
        if failure.check(RedisUnavailable) or not self.redis.up:
            self._log.debug("cluster: {what} not sent: Redis unreachable", what=what)
            return
        self._log.warn(
            "cluster: {what} failed{for_station}: {reason}",
            what=what,
            for_station=f" for station {station}" if station else "",
            reason=failure.getErrorMessage(),
        )
