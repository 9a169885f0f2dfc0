"""
OCPP 1.6 transaction ids for every upstream that is not the one the station took its id
from.

In 1.6 the central system numbers a transaction: the station uses the id in the answer
it received (its primary's) in MeterValues and StopTransaction, while each mirror gave its
own id in its own StartTransaction answer. Per station, the L{TransactionStore} keeps, for
each id the station uses, every upstream's own id by upstream name; the
L{TransactionIdTranslator} rewrites the frames each upstream gets and translates back the
CALLs that name a transaction (RemoteStopTransaction, SetChargingProfile). An upstream
that never saw the transaction start gets the station's id as it is. Pure: the store
reports changes through a callback so a state file can keep them.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .effects import Log
from .ocppj import CALL, CALLRESULT, Frame

START = "StartTransaction"
TO_UPSTREAMS = frozenset(("MeterValues", "StopTransaction"))
"""The station's CALLs that carry the station's transaction id."""
FROM_UPSTREAMS = frozenset(("RemoteStopTransaction", "SetChargingProfile"))
"""The upstreams' CALLs that carry their own transaction id."""
STATION_ACTIONS = TO_UPSTREAMS | {START}
"""The station's CALLs the translator must see."""
PER_STATION_LIMIT = 64
# Records of one station id open at once (a switch of primary can open the same id twice).
_SAME_ID_LIMIT = 4
LEGACY_PRIMARY = "primary"
LEGACY_SECONDARY = "secondary"


def _valid_ids(ids: Any) -> bool:
    return (
        isinstance(ids, dict)
        and bool(ids)
        and all(isinstance(name, str) and type(value) is int for name, value in ids.items())
    )


class TransactionStore:
    """
    Per station, for each transaction id the station uses (newest last, bounded): every
    upstream's own id, by name, the upstream that gave the station its id first. The
    same id may be open twice at a station after a change of primary: lookups take the
    most recently started. C{on_change} is called after each change.

    L{dump} writes C{{station: [[station's id, {upstream: own id, ...}], ...]}}; L{load}
    also reads the shape written before named upstreams (C{[[primary id, secondary id],
    ...]}) as upstreams C{primary} and C{secondary}.
    """

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self._stations: dict[str, OrderedDict[int, list[dict[str, int]]]] = {}
        self._on_change = on_change

    def load(self, data: Any) -> int:
        """
        Restore from L{dump}'s shape or the older one (None: nothing to restore). Anything
        malformed is skipped; returns how many entries were (the whole of C{data} counts as
        one when it is not a mapping, else each station whose value is not a list, and each
        entry that is neither two integers nor an integer and a mapping of names to integers).
        """
        if data is None:
            return 0
        if not isinstance(data, dict):
            return 1
        skipped = 0
        for station_id, entries in data.items():
            if not isinstance(entries, list):
                skipped += 1
                continue
            for entry in entries[-PER_STATION_LIMIT * _SAME_ID_LIMIT :]:
                if not isinstance(entry, list) or len(entry) != 2 or type(entry[0]) is not int:
                    skipped += 1
                elif type(entry[1]) is int:
                    self._add(str(station_id), entry[0], {LEGACY_PRIMARY: entry[0], LEGACY_SECONDARY: entry[1]})
                elif _valid_ids(entry[1]):
                    self._add(str(station_id), entry[0], dict(entry[1]))
                else:
                    skipped += 1
        return skipped

    def dump(self) -> dict[str, list[list]]:
        """A JSON-ready copy."""
        return {
            station: [[tx, dict(ids)] for tx, records in mapping.items() for ids in records]
            for station, mapping in self._stations.items()
            if mapping
        }

    def _add(self, station_id: str, tx: int, ids: dict[str, int]) -> list[dict[str, int]]:
        mapping = self._stations.setdefault(station_id, OrderedDict())
        records = mapping.pop(tx, [])
        records.append(ids)
        del records[:-_SAME_ID_LIMIT]
        mapping[tx] = records
        while len(mapping) > PER_STATION_LIMIT:
            mapping.popitem(last=False)
        return records

    def started(self, station_id: str, tx: int, ids: Mapping[str, int]) -> dict[str, int] | None:
        """
        A transaction the station knows as C{tx} started, with these upstreams' own ids
        (the one that gave C{tx} first); returns the ids of an earlier transaction still
        open under the same id (then ambiguous), or None.
        """
        records = self._add(station_id, tx, dict(ids))
        self._on_change()
        return records[-2] if len(records) > 1 else None

    def add_id(self, station_id: str, tx: int, upstream: str, own_id: int) -> None:
        """C{upstream}'s own id for the (most recent) transaction the station knows as C{tx}."""
        records = self._stations.get(station_id, {}).get(tx)
        if records:
            records[-1][upstream] = own_id
            self._on_change()

    def ids(self, station_id: str, tx: Any) -> Mapping[str, int] | None:
        """Every upstream's own id for the (most recent) transaction the station knows as C{tx}, or None."""
        records = self._stations.get(station_id, {}).get(tx)
        return records[-1] if records else None

    def records(self, station_id: str, tx: Any) -> list[dict[str, int]]:
        """Every record open under the id the station knows as C{tx} (oldest first), as copies; empty if none."""
        return [dict(ids) for ids in self._stations.get(station_id, {}).get(tx, ())]

    def replace(self, station_id: str, tx: int, records: Sequence[Mapping[str, int]]) -> None:
        """Put C{records} (oldest first; empty: none) in place of what is open under C{tx} (a shared store's copy)."""
        mapping = self._stations.get(station_id)
        if mapping is not None:
            mapping.pop(tx, None)
        for ids in records:
            self._add(station_id, tx, dict(ids))
        self._on_change()

    def station_tx(self, station_id: str, upstream: str, own_id: Any) -> int | None:
        """The id the station uses for the transaction C{upstream} knows as C{own_id} (newest first), or None."""
        for tx, records in reversed(self._stations.get(station_id, {}).items()):
            for ids in reversed(records):
                if ids.get(upstream) == own_id:
                    return tx
        return None

    def finished(self, station_id: str, tx: Any) -> None:
        """The (most recent) transaction the station knows as C{tx} stopped: forgotten."""
        mapping = self._stations.get(station_id)
        records = mapping.get(tx) if mapping is not None else None
        if records:
            records.pop()
            if not records:
                del mapping[tx]
            self._on_change()

    # --- the shape of primary_url / secondary_url (and of cluster mode's Redis hashes)

    def remember(self, station_id: str, primary_id: int, secondary_id: int) -> None:
        """The secondary's own id for the transaction the station knows as C{primary_id}."""
        if self.ids(station_id, primary_id) is None:
            self.started(station_id, primary_id, {LEGACY_PRIMARY: primary_id, LEGACY_SECONDARY: secondary_id})
        else:
            self.add_id(station_id, primary_id, LEGACY_SECONDARY, secondary_id)

    def secondary_id(self, station_id: str, primary_id: Any) -> int | None:
        """The secondary's own id for the transaction the station knows as C{primary_id}, or None."""
        ids = self.ids(station_id, primary_id)
        return None if ids is None else ids.get(LEGACY_SECONDARY)

    def primary_id(self, station_id: str, secondary_id: Any) -> int | None:
        """The station's id for the transaction the secondary knows as C{secondary_id}, or None."""
        return self.station_tx(station_id, LEGACY_SECONDARY, secondary_id)

    def forget(self, station_id: str, primary_id: Any) -> None:
        """The transaction the station knows as C{primary_id} stopped."""
        self.finished(station_id, primary_id)


@dataclass(slots=True)
class _Start:
    """A station's StartTransaction waiting for its answers: the ids given so far, the station's once relayed."""

    waiting: int
    ids: dict[str, int] = field(default_factory=dict)
    tx: int | None = None


class TransactionIdTranslator:
    """
    One station's translation of transaction ids between the station and each upstream.
    The station's id is the one in the StartTransaction answer it received; an upstream
    with an id of its own for that transaction sees its own id, whatever its role now.
    """

    def __init__(self, station_id: str, store: TransactionStore, primary: str = LEGACY_PRIMARY) -> None:
        self.station_id = station_id
        self._store = store
        # Whose answers the station takes, for the methods of primary_url / secondary_url.
        self._legacy_primary = primary
        # Plain dicts (insertion-ordered): an empty one is 64 bytes, an empty OrderedDict
        # 128 and an empty set 216, and every station of a proxy with mirrors has these.
        self.starts: dict[str, _Start] = {}
        self._warned: dict[int, None] = {}

    def start_sent(self, message_id: str, upstreams: int) -> None:
        """The station's StartTransaction C{message_id} went to this many upstreams."""
        self.starts[message_id] = _Start(upstreams)
        while len(self.starts) > PER_STATION_LIMIT:
            del self.starts[next(iter(self.starts))]

    def answer(self, name: str, frame: Frame, relayed: bool) -> list[Log]:
        """
        Upstream C{name} answered a StartTransaction (C{relayed}: its answer is the one the
        station received, so its id is the station's); returns warnings, if any.
        """
        start = self.starts.get(frame.message_id)
        if start is None:
            return []
        start.waiting -= 1
        body = frame.body
        own = body.get("transactionId") if frame.kind == CALLRESULT and isinstance(body, dict) else None
        logs: list[Log] = []
        if type(own) is not int:
            if relayed:
                start.waiting = 0  # the station has no transaction
        elif relayed:
            start.tx = own
            earlier = self._store.started(self.station_id, own, {name: own, **start.ids})
            if earlier is not None:
                logs.append(self._ambiguous(own, earlier, name))
        elif start.tx is not None:
            self._store.add_id(self.station_id, start.tx, name, own)
        else:
            start.ids[name] = own
        if start.waiting <= 0:
            del self.starts[frame.message_id]
        return logs

    def _ambiguous(self, tx: int, earlier: Mapping[str, int], giver: str) -> Log:
        return Log(
            "warn",
            "station {station}: transaction id {transaction} is open twice, started under {earlier} and under {later}:"
            " frames naming it are taken as meant for the most recent (under {later})",
            {"station": self.station_id, "transaction": tx, "earlier": next(iter(earlier)), "later": giver},
        )

    def outgoing(
        self, frame: Frame, payload: bytes, targets: Sequence[str], primary: str
    ) -> tuple[list[bytes] | None, list[Log]]:
        """
        The station's MeterValues or StopTransaction as each of C{targets} must see it (None:
        the payload unchanged for all), and warnings: the primary C{primary} never saw the
        transaction start. A StopTransaction forgets the transaction.
        """
        body = frame.body
        if frame.kind != CALL or frame.action not in TO_UPSTREAMS or not isinstance(body, dict):
            return None, []
        tx = body.get("transactionId")
        ids = self._store.ids(self.station_id, tx) if type(tx) is int else None
        if ids is None:
            return None, []
        logs: list[Log] = []
        payloads = []
        for name in targets:
            own = ids.get(name)
            if own is None or own == tx:
                if own is None and name == primary and tx not in self._warned:
                    self._warned[tx] = None
                    logs.append(self._unseen(tx, name))
                payloads.append(payload)
            else:
                payloads.append(_with_transaction_id(frame, own))
        if frame.action == "StopTransaction":
            self._store.finished(self.station_id, tx)
            self._warned.pop(tx, None)
        return payloads, logs

    def _unseen(self, tx: int, primary: str) -> Log:
        return Log(
            "warn",
            "station {station}: transaction {transaction} started before {upstream} was its primary:"
            " relayed to {upstream} with the station's id",
            {"station": self.station_id, "transaction": tx, "upstream": primary},
        )

    def incoming(self, name: str, frame: Frame, payload: bytes) -> bytes:
        """Upstream C{name}'s CALL as the station must see it (the station's transaction id)."""
        body = frame.body
        if frame.kind != CALL or frame.action not in FROM_UPSTREAMS or not isinstance(body, dict):
            return payload
        if frame.action == "SetChargingProfile":
            profile = body.get("csChargingProfiles")
            if not isinstance(profile, dict) or "transactionId" not in profile:
                return payload
            tx = self._store.station_tx(self.station_id, name, profile["transactionId"])
            if tx is None or tx == profile["transactionId"]:
                return payload
            body = {**body, "csChargingProfiles": {**profile, "transactionId": tx}}
            return json.dumps([CALL, frame.message_id, frame.action, body], separators=(",", ":")).encode()
        tx = self._store.station_tx(self.station_id, name, body.get("transactionId"))
        if tx is None or tx == body.get("transactionId"):
            return payload
        return _with_transaction_id(frame, tx)

    # --- one primary named "primary", one secondary named "secondary"

    def station_frame(self, frame: Frame) -> None:
        """Note the station's StartTransaction CALLs (to the primary and the secondary)."""
        if frame.kind == CALL and frame.action == START:
            self.start_sent(frame.message_id, 2)

    def upstream_frame(self, upstream: str, frame: Frame) -> None:
        """Take the transactionId from each upstream's StartTransaction answer (the primary's is the station's)."""
        self.answer(upstream, frame, upstream == self._legacy_primary)

    def to_secondary(self, frame: Frame, payload: bytes) -> bytes:
        """The station's frame as the secondary must see it (its own transaction id)."""
        payloads, _ = self.outgoing(frame, payload, (LEGACY_SECONDARY,), self._legacy_primary)
        return payload if payloads is None else payloads[0]

    def from_secondary(self, frame: Frame, payload: bytes) -> bytes:
        """The secondary's CALL as the station must see it (the station's transaction id)."""
        return self.incoming(LEGACY_SECONDARY, frame, payload)


def _with_transaction_id(frame: Frame, transaction_id: int) -> bytes:
    body = {**frame.body, "transactionId": transaction_id}
    return json.dumps([CALL, frame.message_id, frame.action, body], separators=(",", ":")).encode()
