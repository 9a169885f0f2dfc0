"""
The cluster outbox's Redis layout and its encodings, as pure functions (the Redis Streams
store, L{ocppproxy.cluster.outbox_streams}, sends and reads them).

Keys (the Lua scripts of L{ocppproxy.cluster.outbox_lua} build the same names):

- C{ocppproxy:outbox:<station>:<upstream>}: a stream, one entry per frame owed, in the
  station's order; its ids are Redis's clock (so C{XTRIM MINID} applies C{max_age}); fields
  C{seq mid action kind payload at}.
- C{ocppproxy:outbox-seqs:<station>:<upstream>}: a hash, the station's C{seq} -> C{"<stream
  id> <bytes> [<station's transaction id>]"}, to remove an entry by its C{seq}.
- C{ocppproxy:outbox-tx:<station>:<upstream>}: a hash of the transaction ids the upstream gave
  at replay (the station's -> its own), expiring C{max_age} after its last write.
- C{ocppproxy:outbox-station:<station>}: a hash of what a drain link needs (subprotocol, last
  BootNotification, whether the station sent credentials); never a secret.
- C{ocppproxy:outbox-upstreams:<station>}: the set of upstreams the station has a stream for.
- C{ocppproxy:outbox-backlogs}: a sorted set of C{"<upstream> <station>"}, one per non-empty
  stream, scored by its oldest entry's time (ms): the backlogs to drain, oldest first, those
  past C{max_age}, and the oldest to drop beyond C{max_bytes}.
- C{ocppproxy:outbox-bytes}: the payload bytes of every stream (our own accounting: streams
  trim by count or id only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .outbox import Entry

# The operation tuples of the outbox's store (ocppproxy.relay.outbox_db names them; equal, tested).
PUT, DELETE, START_TX, OWN_ID, TRIM, STATION = "put", "del", "start_tx", "own_id", "trim", "station"

BACKLOGS_KEY = "ocppproxy:outbox-backlogs"
SEQ_PER_SECOND = 1_000_000
"""A station's entries taken by an instance are numbered from its clock in microseconds on (see L{seq_base})."""


def stream_key(station: str, upstream: str) -> str:
    """The stream of C{station}'s entries owed to C{upstream}."""
    return f"ocppproxy:outbox:{station}:{upstream}"


def backlog_member(station: str, upstream: str) -> str:
    """The member of L{BACKLOGS_KEY} of that stream (the station id last: it may hold spaces)."""
    return f"{upstream} {station}"


def seq_base(now: float, loaded_max: int) -> int:
    """
    The first C{seq} an instance gives a station's new entries: above every entry loaded,
    and above what the instance that held the station before may still write (it numbered
    from its own clock when it took the station, one per frame).
    """
    return max(loaded_max + 1, int(now * SEQ_PER_SECOND))


def encode_operations(operations: Iterable[tuple]) -> list:
    """
    The operations as the apply script's arguments: a code, then its fields, flat
    (C{P} put, C{D} delete, C{S} a StartTransaction's station id, C{O} an id learnt, C{F}
    a station's drain facts; C{TRIM} needs none: every call applies the bounds).
    """
    out: list = []
    for operation in operations:
        kind = operation[0]
        if kind == PUT:
            _, station, upstream, entry = operation
            out += [
                "P", station, upstream, str(entry.seq), entry.message_id, entry.action or "", str(entry.kind),
                entry.payload, repr(entry.written_at), "" if entry.station_tx is None else str(entry.station_tx),
            ]
        elif kind == DELETE:
            out += ["D", operation[1], operation[2], str(operation[3])]
        elif kind == START_TX:
            out += ["S", operation[1], operation[2], str(operation[3]), str(operation[4])]
        elif kind == OWN_ID:
            out += ["O", operation[1], operation[2], str(operation[3]), str(operation[4])]
        elif kind == STATION:
            _, station, subprotocol, boot, sent_auth = operation
            out += ["F", station, subprotocol or "", boot or b"", "1" if sent_auth else "0"]
        elif kind != TRIM:
            raise ValueError(f"unknown outbox operation {kind!r}")
    return out


def decode_dropped(reply: str | bytes | None) -> list[tuple[str, str, int]]:
    """The apply script's reply (JSON: flat station, upstream, seq triples, or empty): the entries the bounds dropped."""
    values = json.loads(reply) if reply else []
    return [(values[i], values[i + 1], int(values[i + 2])) for i in range(0, len(values) - 2, 3)]


def decode_head(reply: str | bytes) -> tuple[
    list[str], dict[str, dict[int, int]], tuple[str | None, bytes | None, bool] | None
]:
    """
    The station script's reply (JSON): the upstreams it has a stream for, the transaction
    ids learnt by upstream, and its drain facts (None if none were kept).
    """
    facts_reply, upstreams, ids = json.loads(reply)
    facts = None
    if len(facts_reply) == 3 and facts_reply[2] in ("0", "1"):
        facts = (facts_reply[0] or None, facts_reply[1].encode("utf-8") or None, facts_reply[2] == "1")
    own_ids: dict[str, dict[int, int]] = {}
    for upstream, flat in ids or ():
        learnt = {int(flat[i]): int(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
        if learnt:
            own_ids[upstream] = learnt
    return list(upstreams or ()), own_ids, facts


def decode_page(reply: str | bytes) -> tuple[list[Entry], str | None]:
    """The page script's reply (JSON): its entries, and the stream id to read the next page after (None: empty)."""
    rows = json.loads(reply) or []
    entries = [
        Entry(int(seq), message_id, action or None, payload.encode("utf-8"), float(at), int(kind),
              int(tx) if tx.lstrip("-").isdigit() else None)
        for _, seq, message_id, action, kind, payload, at, tx in rows
    ]
    return entries, rows[-1][0] if rows else None


def decode_absent(reply: str | bytes) -> tuple[list[str], int]:
    """The absent script's reply (JSON): the stations found, and the rank to look from next."""
    found, following = json.loads(reply)
    return list(found or ()), int(following)
