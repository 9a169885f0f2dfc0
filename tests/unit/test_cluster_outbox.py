"""
Cluster mode's outbox without Redis: the pure encodings (core/outbox_streams), the memory
queues following a station (Outbox.begin_load/load_station/unload_station) and the
Redis Streams store's grouping and outage path with a Clock and a stand-in for Redis.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.cluster.outbox_follow import LOAD_TIMEOUT, UNDRAINED_PAUSE, OutboxFollower
from ocppproxy.cluster.outbox_streams import AWAY, MAX_GROUP, UP, StreamsStore, moved_operations
from ocppproxy.config.model import OutboxConfig
from ocppproxy.core import outbox_streams
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.outbox import Entry
from ocppproxy.core.outbox_streams import (
    decode_absent,
    decode_dropped,
    decode_head,
    decode_page,
    encode_operations,
    seq_base,
)
from ocppproxy.relay import outbox_db
from ocppproxy.relay.outbox import Outbox
from ocppproxy.relay.outbox_db import DELETE, PUT, Loaded

from ..harness import DOWN
from ..harness import UP as LINK_UP
from .test_relay_outbox import OutboxFixture


def frame(message_id: str, action: str = "MeterValues", body: dict | None = None) -> tuple:
    payload = json.dumps([2, message_id, action, body or {"transactionId": 1}]).encode()
    return parse_frame(payload), payload


class Recorded:
    """A store that records the operations written."""

    def __init__(self) -> None:
        self.operations: list[tuple] = []
        self.db = SimpleNamespace(path="/nowhere")

    def write(self, operation: tuple) -> None:
        self.operations.append(operation)

    def delete(self, station: str, upstream: str, entry: Entry) -> None:
        self.write((DELETE, station, upstream, entry.seq, entry))


class EncodingTests(SynchronousTestCase):
    def test_operation_names_are_the_store_s(self):
        """The core's operation names are those of the SQLite store."""
        for name in ("PUT", "DELETE", "START_TX", "OWN_ID", "TRIM", "STATION"):
            self.assertEqual(getattr(outbox_streams, name), getattr(outbox_db, name))

    def test_each_operation_is_encoded_flat(self):
        """Every operation becomes its code and fields; TRIM none; an unknown one is refused."""
        entry = Entry(7, "m1", "MeterValues", b"[2]", 12.5, 2, None)
        self.assertEqual(
            encode_operations([
                (PUT, "CP", "up", entry), (DELETE, "CP", "up", 7), ("start_tx", "CP", "up", 7, 42),
                ("own_id", "CP", "up", 42, 9), ("trim",), ("station", "CP", None, None, True),
            ]),
            ["P", "CP", "up", "7", "m1", "MeterValues", "2", b"[2]", "12.5", "", "D", "CP", "up", "7",
             "S", "CP", "up", "7", "42", "O", "CP", "up", "42", "9", "F", "CP", "", b"", "1"],
        )
        self.assertRaises(ValueError, encode_operations, [("bogus",)])

    def test_decode_dropped(self):
        """The apply script's reply: flat triples as JSON, or nothing."""
        self.assertEqual(decode_dropped('["CP","up","3","CP 2","up","4"]'), [("CP", "up", 3), ("CP 2", "up", 4)])
        self.assertEqual(decode_dropped(""), [])

    def test_decode_head(self):
        """A station's upstreams, ids learnt and drain facts; none kept: None."""
        reply = json.dumps([["ocpp1.6", "[boot]", "1"], ["mirror"], [["mirror", ["77", "9"]], ["other", {}]]])
        self.assertEqual(decode_head(reply), (["mirror"], {"mirror": {77: 9}}, ("ocpp1.6", b"[boot]", True)))
        self.assertEqual(decode_head('[["","",""],{},{}]'), ([], {}, None))

    def test_decode_page(self):
        """A page of a stream: its entries (a StartTransaction's station id kept) and where the next page starts."""
        reply = json.dumps([["1-0", "3", "m3", "StartTransaction", "2", "[2]", "1.5", "77"],
                            ["2-0", "5", "m5", "", "6", "[6]", "2.5", ""]])
        entries, last = decode_page(reply)
        self.assertEqual([(e.seq, e.message_id, e.action, e.kind, e.payload, e.written_at, e.station_tx)
                          for e in entries],
                         [(3, "m3", "StartTransaction", 2, b"[2]", 1.5, 77), (5, "m5", None, 6, b"[6]", 2.5, None)])
        self.assertEqual(last, "2-0")
        self.assertEqual(decode_page("[]"), ([], None))

    def test_decode_absent(self):
        """The absent script's reply: the stations found and where to look next."""
        self.assertEqual(decode_absent('[["CP 1"],5000]'), (["CP 1"], 5000))
        self.assertEqual(decode_absent("[{},0]"), ([], 0))

    def test_seq_base(self):
        """New entries are numbered above the loaded ones and from the clock in microseconds."""
        self.assertEqual(seq_base(10.0, 5), 10_000_000)
        self.assertEqual(seq_base(10.0, 20_000_000), 20_000_001)


class FollowTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(100)
        self.store = Recorded()
        self.outbox = Outbox(self.store, self.clock.seconds)

    def test_live_entries_wait_behind_the_loaded_backlog(self):
        """While a station's backlog loads, its live entries are neither queued nor written; then they follow it."""
        self.outbox.begin_load("CP")
        live = self.outbox.owed("CP", "mirror", *frame("live"))
        self.assertEqual(self.store.operations, [])
        self.assertEqual(len(self.outbox.queue("CP", "mirror")), 0)
        loaded = [Entry(seq, f"old{seq}", "MeterValues", b"[2]", 1.0) for seq in (4, 9)]
        self.outbox.load_station("CP", {"mirror": loaded}, {"mirror": {1: 2}}, ("ocpp1.6", None, False))
        queue = self.outbox.queue("CP", "mirror")
        self.assertEqual([e.message_id for e in queue.entries()], ["old4", "old9", "live"])
        self.assertEqual(live.seq, 100_000_000)
        self.assertEqual(self.store.operations, [(PUT, "CP", "mirror", live)])
        self.assertEqual(queue.own_id(1), 2)
        self.assertEqual(self.outbox.stations["CP"], ("ocpp1.6", None, False))
        other = self.outbox.owed("CP", "analytics", *frame("next"))
        self.assertEqual(other.seq, 100_000_001)  # one counter for every station and upstream

    def test_a_station_s_queues_are_found_without_a_scan(self):
        """queues_of and stations_queued answer from an index kept as queues are made and unloaded."""
        self.outbox.owed("CP", "mirror", *frame("a"))
        self.outbox.owed("CP", "feed", *frame("a"))
        self.outbox.owed("CP2", "mirror", *frame("b"))
        self.assertEqual([name for name, _ in self.outbox.queues_of("CP")], ["mirror", "feed"])
        self.outbox.unload_station("CP")
        self.assertEqual((self.outbox.queues_of("CP"), self.outbox.stations_queued()), ([], ["CP2"]))

    def test_facts_loaded_keep_what_this_instance_saw(self):
        """The station's subprotocol and credentials seen here stay; its last BootNotification comes from Redis."""
        self.outbox.begin_load("CP")
        self.outbox.station_connected("CP", "ocpp2.0.1", True)
        self.outbox.load_station("CP", {}, {}, ("ocpp1.6", b"[boot]", False))
        self.assertEqual(self.outbox.stations["CP"], ("ocpp2.0.1", b"[boot]", True))

    def test_station_started_while_loading(self):
        """The primary's answer to a StartTransaction waiting for the load is kept on its entry."""
        self.outbox.begin_load("CP")
        start = self.outbox.owed("CP", "mirror", *frame("s1", "StartTransaction", {"connectorId": 1}))
        self.outbox.station_started("CP", "s1", 55)
        self.outbox.load_station("CP", {}, {}, None)
        self.assertEqual(start.station_tx, 55)

    def test_unload_forgets_the_memory_copy(self):
        """Unloading drops the station's queues (its waiting live entries written first), not the others'."""
        self.outbox.owed("CP", "mirror", *frame("a"))
        self.outbox.owed("CP2", "mirror", *frame("b"))
        self.outbox.begin_load("CP3")
        waiting = self.outbox.owed("CP3", "mirror", *frame("c"))
        self.outbox.unload_station("CP")
        self.outbox.unload_station("CP3")
        self.assertEqual(sorted(self.outbox.queues), [("CP2", "mirror")])
        self.assertIn((PUT, "CP3", "mirror", waiting), self.store.operations)
        self.assertEqual(self.outbox.loading, {})


class FakeRedis:
    def __init__(self) -> None:
        self.up = True
        self.calls: list[tuple[list, Deferred]] = []

    def execute(self, script, keys, args) -> Deferred:
        if not self.up:
            return fail(RuntimeError("Redis is not reachable"))
        answer: Deferred = Deferred()
        self.calls.append((args, answer))
        return answer


class FakeLocal(Recorded):
    healthy = True
    fault_episodes = 0
    commits = 0

    def stop(self) -> Deferred:
        self.operations.append(("stopped",))
        return succeed(None)


class StreamsStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.redis = FakeRedis()
        self.local = FakeLocal()
        self.store = StreamsStore(OutboxConfig(directory="/nowhere"), self.clock, self.redis, self.local, None)
        self.store.state = UP

    def put(self, seq: int) -> tuple:
        operation = (PUT, "CP", "mirror", Entry(seq, f"m{seq}", "MeterValues", b"[2]", 1.0))
        self.store.write(operation)
        return operation

    def test_operations_are_grouped_and_never_awaited(self):
        """Writes of one interval are one script call; the next group waits for its answer."""
        for seq in range(1, 4):
            self.put(seq)
        self.assertEqual(self.redis.calls, [])
        self.clock.advance(0.005)
        self.assertEqual(len(self.redis.calls), 1)
        self.assertEqual(self.redis.calls[0][0].count("P"), 3)
        self.put(4)
        self.clock.advance(0.01)
        self.assertEqual(len(self.redis.calls), 1)
        self.redis.calls[0][1].callback('["CP","mirror","1"]')
        self.clock.advance(0.005)
        self.assertEqual(len(self.redis.calls), 2)

    def test_a_group_is_bounded(self):
        """At most MAX_GROUP operations per call; the rest follows once it is answered, deletes still elided."""
        for seq in range(1, MAX_GROUP + 501):
            self.put(seq)
        self.store.write((DELETE, "CP", "mirror", MAX_GROUP + 500))
        self.clock.advance(0.005)
        self.assertEqual(self.redis.calls[0][0].count("P"), MAX_GROUP)
        self.redis.calls[0][1].callback("")
        self.clock.advance(0.005)
        self.assertEqual(self.redis.calls[1][0].count("P"), 499)

    def test_delivered_before_sent_is_never_sent(self):
        """An entry answered before its group went costs Redis nothing."""
        self.put(1)
        self.store.write((DELETE, "CP", "mirror", 1))
        self.clock.advance(0.005)
        self.assertEqual(self.redis.calls, [])

    def test_drops_are_reported(self):
        """The entries the bounds dropped go to on_dropped."""
        dropped = []
        self.store.on_dropped = dropped.append
        self.put(1)
        self.clock.advance(0.005)
        self.redis.calls[0][1].callback('["CP","mirror","1"]')
        self.assertEqual(dropped, [[("CP", "mirror", 1)]])

    def test_a_refused_group_goes_to_the_local_file(self):
        """A group Redis does not answer, and what follows, go to the local file, in order."""
        first = self.put(1)
        self.clock.advance(0.005)
        second = self.put(2)
        self.redis.calls[0][1].errback(RuntimeError("connection lost"))
        self.assertEqual(self.store.state, AWAY)
        third = self.put(3)
        self.assertEqual(self.local.operations, [first, second, third])
        self.assertTrue(self.store.healthy)

    def test_shutdown_with_a_group_refused_writes_it_locally_first(self):
        """At shutdown a group Redis does not take (it stops too) is written to the local file before it closes."""
        first = self.put(1)
        stopped = self.store.stop()
        self.assertNoResult(stopped)
        self.redis.calls[0][1].errback(RuntimeError("connection lost"))
        self.successResultOf(stopped)
        self.assertEqual(self.local.operations, [first, ("stopped",)])

    def test_a_failed_move_is_tried_again_later(self):
        """Redis reachable but refusing the local file's entries: one line, and the next move 5 s later, not at once."""
        loaded = Loaded()
        loaded.entries[("CP", "m")] = [Entry(1, "a", None, b"", 1.0)]
        self.local.db = SimpleNamespace(path="/nowhere", open=lambda: None, load=lambda: loaded)
        self.store = StreamsStore(OutboxConfig(directory="/nowhere"), self.clock, self.redis, self.local,
                                  lambda function, *args: succeed(function(*args)))
        self.store._try_redis()
        self.assertEqual(self.store.state, "moving")
        self.redis.calls[0][1].errback(RuntimeError("OOM command not allowed"))
        self.assertEqual(self.store.state, AWAY)
        self.clock.advance(1)
        self.store._try_redis()
        self.assertEqual(len(self.redis.calls), 1)
        self.clock.advance(4)
        self.store._try_redis()
        self.assertEqual(len(self.redis.calls), 2)

    def test_moved_operations_keep_the_order(self):
        """The local file's content becomes facts, then each stream's entries in seq order, then ids."""
        loaded = Loaded()
        loaded.entries[("CP", "m")] = [Entry(2, "b", None, b"", 1.0), Entry(1, "a", None, b"", 1.0)]
        loaded.own_ids[("CP", "m")] = {5: 6}
        loaded.stations["CP"] = ("ocpp1.6", None, False)
        operations = moved_operations(loaded)
        self.assertEqual([operation[0] for operation in operations], ["station", "put", "put", "own_id"])
        self.assertEqual([operations[1][3].message_id, operations[2][3].message_id], ["a", "b"])


class FakeCluster:
    def __init__(self) -> None:
        self.redis_up = True
        self.watchers: list = []
        self.claimed: list = []
        self.ended: list = []

    def watch_holds(self, held, released) -> None:
        self.watchers.append((held, released))

    def claim_absent(self, holder) -> Deferred:
        self.claimed.append(holder)
        return succeed(True)

    def station_ended(self, holder) -> None:
        self.ended.append(holder)


class FakeDrains:
    def __init__(self) -> None:
        self.drains: dict = {}
        self.opened = 0
        self.stopped: list[str] = []

        self.waiting: set[str] = set()

    def open_drains(self) -> None:
        self.opened += 1

    def waits_for_probe(self, station: str) -> bool:
        return station in self.waiting

    def stop_for(self, station: str) -> Deferred:
        self.stopped.append(station)
        return succeed(None)


class FollowerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.outbox = Outbox(Recorded(), self.clock.seconds)
        self.loads: dict[str, Deferred] = {}
        self.absent: list[str] = []
        self.starts: list[int] = []
        self.next_rank = 0
        store = SimpleNamespace(load=self.load, absent=self.find_absent)
        self.cluster = FakeCluster()
        self.drains = FakeDrains()
        self.sessions: dict = {}
        self.follower = OutboxFollower(self.outbox, store, self.cluster, self.sessions, lambda: self.drains,
                                       self.clock, 3.0)

    def find_absent(self, limit: int, start: int) -> Deferred:
        self.starts.append(start)
        return succeed((list(self.absent), self.next_rank))

    def load(self, station: str) -> Deferred:
        self.loads[station] = Deferred()
        return self.loads[station]

    def claimed_and_loaded(self, station: str) -> None:
        """An absent C{station} with a backlog, claimed by this instance once Redis settled, its backlog read."""
        self.absent.append(station)
        self.follower.look()
        self.clock.advance(5)
        self.follower.look()
        self.loads[station].callback((self.backlog("a"), {}, None))

    def backlog(self, *message_ids: str) -> dict:
        return {"mirror": [Entry(n + 1, m, "MeterValues", b"[2]", 1.0) for n, m in enumerate(message_ids)]}

    def test_a_station_held_loads_then_its_session_sends(self):
        """A station connecting here: its backlog is read (live entries wait); loaded, its session is told."""
        loaded = []
        self.sessions["CP"] = SimpleNamespace(outbox_loaded=lambda: loaded.append(True))
        self.follower.station_held("CP")
        self.assertIn("CP", self.outbox.loading)
        self.follower.station_held("CP")  # a new connection replacing one here: no second read
        self.assertEqual(list(self.loads), ["CP"])
        self.loads["CP"].callback((self.backlog("a"), {}, None))
        self.assertEqual(loaded, [True])
        self.assertEqual(len(self.outbox.queue("CP", "mirror")), 1)
        self.follower.station_released("CP")
        self.assertEqual(self.outbox.queues, {})

    def test_live_entries_wait_for_the_backlog_at_most_load_timeout(self):
        """Redis slow to answer: the live entries go on after LOAD_TIMEOUT; the late backlog stays in Redis."""
        loaded = []
        self.sessions["CP"] = SimpleNamespace(outbox_loaded=lambda: loaded.append(True))
        self.follower.station_held("CP")
        live = self.outbox.owed("CP", "mirror", *frame("live"))
        self.clock.advance(LOAD_TIMEOUT)
        self.assertEqual(loaded, [True])
        self.assertEqual([e.message_id for e in self.outbox.queue("CP", "mirror").entries()], ["live"])
        self.assertIn((PUT, "CP", "mirror", live), self.outbox.store.operations)
        self.loads["CP"].callback((self.backlog("late"), {}, None))
        self.assertEqual([e.message_id for e in self.outbox.queue("CP", "mirror").entries()], ["live"])
        self.assertEqual(loaded, [True])

    def test_released_before_loaded(self):
        """A station replaced while its backlog was being read: nothing of it stays in memory."""
        self.follower.station_held("CP")
        self.follower.station_released("CP")
        self.loads["CP"].callback((self.backlog("a"), {}, None))
        self.assertEqual(self.outbox.queues, {})

    def test_absent_station_claimed_drained_released(self):
        """After Redis has been up a while, an absent backlog is claimed, loaded, drained, and its claim released."""
        self.absent.append("GONE")
        self.follower.look()
        self.clock.advance(1)
        self.follower.look()
        self.assertEqual(self.cluster.claimed, [])  # claims are written back first
        self.clock.advance(3)
        self.follower.look()
        (hold,) = self.cluster.claimed
        self.loads["GONE"].callback((self.backlog("a"), {}, None))
        self.assertEqual(self.drains.opened, 1)
        self.drains.drains["GONE"] = object()
        self.follower.look()
        self.assertEqual(self.cluster.ended, [])
        del self.drains.drains["GONE"]
        queue = self.outbox.queue("GONE", "mirror")
        for entry in queue.ready():
            self.outbox.sent("GONE", "mirror", entry, True)
        self.outbox.answered("GONE", "mirror", parse_frame(b'[3,"a",{}]'))
        self.follower.look()
        self.assertEqual(self.cluster.ended, [hold])
        self.assertEqual(self.outbox.queues, {})

    def test_a_backlog_waiting_for_its_upstream_keeps_its_claim(self):
        """Claimed, loaded, its upstream unreachable (another drain link probes it): held until it drains."""
        self.claimed_and_loaded("WAIT")
        self.drains.waiting.add("WAIT")
        for _ in range(5):
            self.clock.advance(4)
            self.follower.look()
        self.assertEqual(self.cluster.ended, [])
        self.assertIn("WAIT", self.follower.held)
        self.drains.waiting.discard("WAIT")  # the upstream is back: its drain link opens
        self.drains.drains["WAIT"] = object()
        self.follower.look()
        self.assertIn("WAIT", self.follower.held)

    def test_each_look_goes_on_where_the_last_stopped(self):
        """Many backlogs (mostly held): each look checks the next window of them, then starts again."""
        self.follower.look()
        self.clock.advance(5)
        self.next_rank = 5000
        self.follower.look()
        self.next_rank = 0
        self.follower.look()
        self.follower.look()
        self.assertEqual(self.starts, [0, 5000, 0])

    def test_a_backlog_that_cannot_drain_is_left_alone_a_while(self):
        """Claimed, loaded, no drain link opens: released after a while, not claimed again for UNDRAINED_PAUSE."""
        self.claimed_and_loaded("PASS")
        self.follower.look()
        self.assertEqual(self.cluster.ended, [])
        self.clock.advance(4)
        self.follower.look()
        self.assertEqual(len(self.cluster.ended), 1)
        self.clock.advance(10)
        self.follower.look()
        self.assertEqual(len(self.cluster.claimed), 1)
        self.clock.advance(UNDRAINED_PAUSE)
        self.follower.look()
        self.assertEqual(len(self.cluster.claimed), 2)

    def test_cluster_mode_numbers_from_the_clock_and_drains_only_what_it_claimed(self):
        """The follower makes the outbox number a station's first entries from the clock and drain only its holds."""
        self.clock.advance(7)
        self.assertEqual(self.outbox.owed("CP", "mirror", *frame("a")).seq, 7_000_000)
        self.assertFalse(self.outbox.drainable("CP"))

    def test_strays_are_forgotten(self):
        """Entries of a station not held here (a replaced connection still closing) leave memory at the next look."""
        self.follower.station_held("CP")
        self.loads["CP"].callback(({}, {}, None))
        self.outbox.owed("CP", "mirror", *frame("kept"))
        self.outbox.owed("GONE", "mirror", *frame("stray"))
        self.follower.look()
        self.assertEqual(list(self.outbox.queues), [("CP", "mirror")])

    def test_a_drain_replaced_closes_first(self):
        """Another instance's claim (the station connected there): the drain stops, the memory copy goes."""
        self.absent.append("CP")
        self.follower.look()
        self.clock.advance(5)
        self.follower.look()
        (hold,) = self.cluster.claimed
        self.loads["CP"].callback((self.backlog("a"), {}, None))
        hold.close(4000, "replaced")
        self.assertEqual(self.drains.stopped, ["CP"])
        self.assertEqual(self.outbox.queues, {})
        self.assertEqual(self.follower.holds, {})


class DrainableTests(OutboxFixture, SynchronousTestCase):
    """Through the real proxy in memory: an instance drains only the absent stations the outbox says it may."""

    def test_a_backlog_this_instance_did_not_claim_opens_no_link(self):
        harness = self.harness
        harness.third.state = DOWN
        claimed = set()
        self.outbox.drainable = claimed.__contains__
        station = self.station_sends_a_transaction(1)
        station.sendClose(1000)
        harness.flush()
        harness.third.state = LINK_UP
        harness.advance(10)
        self.assertEqual((harness.third.connections, harness.proxy.drains.drains), ([], {}))
        claimed.add("CP_1")
        delivered = self.mirror_comes_back()
        self.assertEqual([frame[1] for frame in delivered], ["s-1", "m-0", "e-1"])
