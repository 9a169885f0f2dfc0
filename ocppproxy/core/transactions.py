"""
OCPP 1.6 transaction ids the secondary can understand.

The station uses the primary's transactionId in MeterValues and StopTransaction; the
secondary gave its own id in its StartTransaction answer. Per station we remember
primary id -> secondary id, translate the frames sent to the secondary, and translate
back the secondary's CALLs that carry an id (RemoteStopTransaction, SetChargingProfile).
Pure: the store reports changes through a callback so a state file can keep them.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .ocppj import CALL, CALLRESULT, Frame

_TO_SECONDARY = frozenset(("MeterValues", "StopTransaction"))
_FROM_SECONDARY = frozenset(("RemoteStopTransaction", "SetChargingProfile"))
PER_STATION_LIMIT = 64


class TransactionStore:
    """primary id -> secondary id per station, bounded; C{on_change} is called after each change."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self._stations: dict[str, OrderedDict[int, int]] = {}
        self._on_change = on_change

    def load(self, data: Any) -> int:
        """
        Restore from L{dump}'s shape (None: nothing to restore). Anything malformed is
        skipped; returns how many entries were (the whole of C{data} counts as one when it
        is not a mapping, else each station whose value is not a list, and each pair that
        is not two integers).
        """
        if data is None:
            return 0
        if not isinstance(data, dict):
            return 1
        skipped = 0
        for station_id, pairs in data.items():
            if not isinstance(pairs, list):
                skipped += 1
                continue
            mapping = self._stations.setdefault(str(station_id), OrderedDict())
            for pair in pairs[-PER_STATION_LIMIT:]:
                if isinstance(pair, list) and len(pair) == 2 and all(type(value) is int for value in pair):
                    mapping[pair[0]] = pair[1]
                else:
                    skipped += 1
        return skipped

    def dump(self) -> dict[str, list[list[int]]]:
        """A JSON-ready copy."""
        return {station: [[p, s] for p, s in pairs.items()] for station, pairs in self._stations.items() if pairs}

    def remember(self, station_id: str, primary_id: int, secondary_id: int) -> None:
        mapping = self._stations.setdefault(station_id, OrderedDict())
        mapping[primary_id] = secondary_id
        while len(mapping) > PER_STATION_LIMIT:
            mapping.popitem(last=False)
        self._on_change()

    def secondary_id(self, station_id: str, primary_id: Any) -> int | None:
        return self._stations.get(station_id, {}).get(primary_id)

    def primary_id(self, station_id: str, secondary_id: Any) -> int | None:
        for primary, secondary in self._stations.get(station_id, {}).items():
            if secondary == secondary_id:
                return primary
        return None

    def forget(self, station_id: str, primary_id: Any) -> None:
        mapping = self._stations.get(station_id)
        if mapping is not None and mapping.pop(primary_id, None) is not None:
            self._on_change()


class TransactionIdTranslator:
    """One station's translation between the primary's and the secondary's transaction ids."""

    def __init__(self, station_id: str, store: TransactionStore) -> None:
        self.station_id = station_id
        self._store = store
        self._starts: OrderedDict[str, dict[str, int]] = OrderedDict()

    def station_frame(self, frame: Frame) -> None:
        """Note the station's StartTransaction CALLs, whose answers carry the ids."""
        if frame.kind == CALL and frame.action == "StartTransaction":
            self._starts[frame.message_id] = {}
            while len(self._starts) > PER_STATION_LIMIT:
                self._starts.popitem(last=False)

    def upstream_frame(self, upstream: str, frame: Frame) -> None:
        """Take the transactionId from each upstream's StartTransaction answer."""
        if frame.kind != CALLRESULT or frame.message_id not in self._starts:
            return
        ids = self._starts[frame.message_id]
        body = frame.body
        if isinstance(body, dict) and type(body.get("transactionId")) is int:
            ids[upstream] = body["transactionId"]
        if "primary" in ids and "secondary" in ids:
            del self._starts[frame.message_id]
            self._store.remember(self.station_id, ids["primary"], ids["secondary"])

    def to_secondary(self, frame: Frame, payload: bytes) -> bytes:
        """The station's frame as the secondary must see it (its own transaction id)."""
        if frame.kind != CALL or frame.action not in _TO_SECONDARY or not isinstance(frame.body, dict):
            return payload
        primary_id = frame.body.get("transactionId")
        secondary_id = self._store.secondary_id(self.station_id, primary_id)
        if frame.action == "StopTransaction":
            self._store.forget(self.station_id, primary_id)
        if secondary_id is None:
            return payload
        return _with_transaction_id(frame, secondary_id)

    def from_secondary(self, frame: Frame, payload: bytes) -> bytes:
        """The secondary's CALL as the station must see it (the primary's transaction id)."""
        if frame.kind != CALL or frame.action not in _FROM_SECONDARY or not isinstance(frame.body, dict):
            return payload
        body = frame.body
        if frame.action == "SetChargingProfile":
            profile = body.get("csChargingProfiles")
            if not isinstance(profile, dict) or "transactionId" not in profile:
                return payload
            primary_id = self._store.primary_id(self.station_id, profile["transactionId"])
            if primary_id is None:
                return payload
            body = {**body, "csChargingProfiles": {**profile, "transactionId": primary_id}}
            return json.dumps([CALL, frame.message_id, frame.action, body], separators=(",", ":")).encode()
        primary_id = self._store.primary_id(self.station_id, body.get("transactionId"))
        if primary_id is None:
            return payload
        return _with_transaction_id(frame, primary_id)


def _with_transaction_id(frame: Frame, transaction_id: int) -> bytes:
    body = {**frame.body, "transactionId": transaction_id}
    return json.dumps([CALL, frame.message_id, frame.action, body], separators=(",", ":")).encode()
