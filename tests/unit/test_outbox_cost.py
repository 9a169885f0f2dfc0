"""
What keeps the outbox cheap per frame, and the guarantees each shortcut must keep: a
frame parsed once on its way through the outbox, the backlog's bytes kept as entries
come and go (no sum per scrape), one counter numbering every station's entries (each
station's still in its order, above anything restored), the age bound skipped only
while no entry can be older than C{max_age}, and the lean lane of a live CALL to a
connected mirror keeping up (sent at once by the queue's own rules, answered through the
relay only if the same session owed it).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core import routing
from ocppproxy.core.ocppj import CALL, SEND
from ocppproxy.core.outbox import Entry, OutboxQueue
from ocppproxy.relay import outbox_links

from .test_core_outbox import Backlog
from .test_outbox_store import Fixture
from .test_relay_outbox import A, C, OutboxFixture


class ParsedOnceTests(OutboxFixture, SynchronousTestCase):
    """Each frame of a round through the outbox (station CALL, both answers) is parsed once."""

    def test_one_parse_per_frame(self):
        harness = self.harness
        station = harness.connect_station("CP_1")
        harness.flush()
        parsed = []

        def counting(parse):
            def parse_frame(data):
                parsed.append(data)
                return parse(data)

            return parse_frame

        self.patch(routing, "parse_frame", counting(routing.parse_frame))
        self.patch(outbox_links, "parse_frame", counting(outbox_links.parse_frame))
        station.send('[2,"h-1","Heartbeat",{}]')
        harness.flush()
        self.assertEqual(len(parsed), 3)  # the CALL, the primary's answer, the mirror's answer
        self.assertEqual(len(self.outbox.queue("CP_1", "c")), 0)  # the mirror's answer delivered the entry
        self.assertEqual([frame[1] for frame in station.frames()][-1:], ["h-1"])
        # A mirror writing its answers with spaces (json.dumps's default, a Python central system): the same.
        harness.third.separators = (", ", ": ")
        del parsed[:]
        station.send('[2,"h-2","Heartbeat",{}]')
        harness.flush()
        self.assertEqual(len(parsed), 3)
        self.assertEqual(len(self.outbox.queue("CP_1", "c")), 0)


def heartbeat_in_flight(case):
    """Station CP_1 connected, its Heartbeat h-1 sent at once (live) to mirror c, which answers nothing itself: c's queue."""
    harness = case.harness
    harness.third.answer_calls = False
    station = harness.connect_station("CP_1")
    harness.flush()
    station.send('[2,"h-1","Heartbeat",{}]')
    harness.flush()
    queue = case.outbox.queue("CP_1", "c")
    case.assertEqual(list(queue.in_flight), ["h-1"])
    return queue


class AnswerShapeTests(OutboxFixture, SynchronousTestCase):
    """An answer is known as one whatever JSON white space the mirror writes."""

    def test_spaced_answer_delivers_its_entry(self):
        harness = self.harness
        queue = heartbeat_in_flight(self)
        harness.third.connection.send(' [ 3 ,\n "h-1", {} ]')
        harness.flush()
        self.assertEqual(len(queue), 0)


class QueueBytesTests(SynchronousTestCase):
    """A queue's bytes follow its entries through every way in and out."""

    def test_bytes_follow_the_entries(self):
        clock = Clock()
        backlog = Backlog(clock)
        queue = OutboxQueue("CP1", "mirror")
        entries = [backlog.entry(f"h{index}", "Heartbeat", {}) for index in range(4)]
        entries.append(backlog.entry("s", "Notify", {}, kind=SEND))
        for entry in entries:
            queue.append(entry)

        def expected():
            return sum(entry.size for entry in queue.entries())

        self.assertEqual(queue.bytes, expected())
        for entry in queue.ready():
            queue.sent(entry)  # the SEND leaves here
        self.assertEqual(queue.bytes, expected())
        queue.answered("h0")
        self.assertEqual(queue.bytes, expected())
        queue.dropped([2, 99])
        self.assertEqual(queue.bytes, expected())
        restored = OutboxQueue("CP1", "mirror")
        restored.restore(queue.entries())
        self.assertEqual((restored.bytes, len(restored)), (expected(), 2))


class OneCounterTests(SynchronousTestCase):
    """Every station's entries are numbered from one counter, each station's in its order."""

    def test_numbered_in_the_order_owed(self):
        fixture = Fixture(self)
        owed = [fixture.owe(station, upstream, f"m{index}", "Heartbeat", {})
                for index, (station, upstream) in enumerate([("CP1", "a"), ("CP2", "a"), ("CP1", "b"), ("CP1", "a")])]
        self.assertEqual([entry.seq for entry in owed], [1, 2, 3, 4])

    def test_above_everything_restored(self):
        fixture = Fixture(self)
        fixture.owe("CP1", "a", "m0", "Heartbeat", {})
        fixture.owe("CP2", "a", "m1", "Heartbeat", {})
        fixture.commit()
        fixture.reopen()
        self.assertEqual(fixture.owe("CP1", "a", "m2", "Heartbeat", {}).seq, 3)
        # A queue restored from elsewhere with higher numbers: the station's order comes first.
        fixture.outbox.queue("CP9", "a").restore([Entry(100, "x", "Heartbeat", b"[]", 0.0)])
        self.assertEqual(fixture.owe("CP9", "a", "m3", "Heartbeat", {}).seq, 101)
        self.assertEqual(fixture.owe("CP1", "a", "m4", "Heartbeat", {}).seq, 102)

    def test_file_with_colliding_numbers_still_loads(self):
        """Entries of different stations may share a number (files written before the one counter)."""
        fixture = Fixture(self)
        first = fixture.owe("CP1", "a", "m0", "Heartbeat", {})
        fixture.outbox._seq = first.seq  # the next station's entry gets the same number
        self.assertEqual(fixture.owe("CP2", "a", "m1", "Heartbeat", {}).seq, first.seq)
        fixture.commit()
        fixture.reopen()
        self.assertEqual({key: len(queue) for key, queue in fixture.outbox.queues.items()},
                         {("CP1", "a"): 1, ("CP2", "a"): 1})


class AgeBoundTests(SynchronousTestCase):
    """The age query is skipped only while nothing can be too old, even when the clock went back."""

    def test_entry_written_after_the_clock_went_back(self):
        fixture = Fixture(self, max_age=60)
        fixture.owe("CP1", "mirror", "later", "Heartbeat", {})  # written at 1000
        fixture.commit()
        fixture.clock.advance(-10)
        fixture.owe("CP1", "mirror", "earlier", "Heartbeat", {})  # written at 990
        fixture.commit()
        fixture.clock.advance(65)  # 1055: "earlier" is over 60 s old, "later" is not
        fixture.store.write(("trim",))
        fixture.commit()
        self.assertEqual([entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()], ["later"])

    def test_delivered_oldest_then_the_next_ages(self):
        fixture = Fixture(self, max_age=60)
        fixture.owe("CP1", "mirror", "first", "Heartbeat", {})
        fixture.commit()
        fixture.clock.advance(30)
        fixture.owe("CP1", "mirror", "second", "Heartbeat", {})
        fixture.commit()
        fixture.outbox.queue("CP1", "mirror").dropped([1])
        fixture.store.write(("del", "CP1", "mirror", 1))
        fixture.commit()
        fixture.clock.advance(61)
        fixture.store.write(("trim",))
        fixture.commit()
        self.assertEqual(len(fixture.outbox.queue("CP1", "mirror")), 0)
        fixture.reopen()
        self.assertEqual(fixture.outbox.queues, {})


class StoredBytesTests(SynchronousTestCase):
    """The file's payload bytes stay right (kept per group), through runs of writes, deletes, bounds and reopens."""

    def assert_bytes_right(self, fixture):
        db = fixture.store.db
        counted = db._db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM entries").fetchone()[0]
        self.assertEqual(db.total_bytes, counted)

    def test_through_writes_deletes_and_bounds(self):
        frame_size = len(b'[2,"h00","Heartbeat",{}]')
        fixture = Fixture(self, max_bytes=frame_size * 6)
        for index in range(4):
            fixture.owe("CP1", "mirror", f"h{index:02d}", "Heartbeat", {})
        fixture.commit()
        self.assert_bytes_right(fixture)
        for seq in (1, 2):
            fixture.store.write(("del", "CP1", "mirror", seq))
        fixture.owe("CP2", "mirror", "h10", "Heartbeat", {})
        fixture.store.write(("del", "CP1", "mirror", 3))
        fixture.commit()
        self.assert_bytes_right(fixture)
        for index in range(6):
            fixture.owe("CP3", "mirror", f"h2{index}", "Heartbeat", {})
        fixture.commit()  # over max_bytes: the oldest go
        self.assert_bytes_right(fixture)
        self.assertLessEqual(fixture.store.db.total_bytes, frame_size * 6)
        fixture.reopen()
        self.assert_bytes_right(fixture)

    def test_runs_of_every_length_in_chunks(self):
        """A group's runs are written 64 rows a statement, then in powers of two: every length comes out whole."""
        fixture = Fixture(self)
        owed = [fixture.owe("CP1", "mirror", f"h{index:03d}", "Heartbeat", {}) for index in range(150)]
        fixture.commit()
        self.assert_bytes_right(fixture)
        delivered = {entry.seq for entry in owed[:101]} | {owed[120].seq}
        for seq in sorted(delivered):
            fixture.store.write(("del", "CP1", "mirror", seq))
        for index in range(7):
            fixture.owe("CP2", "mirror", f"n{index}", "Heartbeat", {})
        fixture.store.write(("del", "CP1", "mirror", owed[149].seq))
        fixture.commit()
        self.assert_bytes_right(fixture)
        fixture.reopen()
        kept = [entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()]
        self.assertEqual(kept, [f"h{index:03d}" for index in range(101, 149) if index != 120])
        self.assertEqual(len(fixture.outbox.queue("CP2", "mirror")), 7)
        self.assert_bytes_right(fixture)

    def test_rows_with_and_without_station_tx(self):
        """Rows with a StartTransaction's station id and rows without (NULL by default) in one group, both kept."""
        fixture = Fixture(self)
        fixture.owe("CP1", "mirror", "h0", "Heartbeat", {})
        started = Entry(50, "s", "StartTransaction", b'[2,"s","StartTransaction",{}]', 1000.0, station_tx=17)
        fixture.store.write(("put", "CP1", "mirror", started))  # (as the cluster's store moves one to the file)
        fixture.owe("CP1", "mirror", "h1", "Heartbeat", {})
        fixture.commit()
        self.assert_bytes_right(fixture)
        fixture.reopen()
        entries = fixture.outbox.queue("CP1", "mirror").entries()
        self.assertEqual([(entry.message_id, entry.station_tx, type(entry.payload)) for entry in entries],
                         [("h0", None, bytes), ("h1", None, bytes), ("s", 17, bytes)])

    def test_counts_off_are_summed_again(self):
        """A delete of a row not in the file, or an insert SQLite ignores, leaves the bytes right (summed again)."""
        fixture = Fixture(self)
        first = fixture.owe("CP1", "mirror", "h0", "Heartbeat", {})
        fixture.commit()
        missing = Entry(999, "gone", "Heartbeat", b"x" * 50, 1000.0)
        fixture.store.write(("del", "CP1", "mirror", missing.seq, missing))
        fixture.commit()
        self.assert_bytes_right(fixture)
        twin = Entry(first.seq, "twin", "Heartbeat", b"y" * 70, 1000.0)  # the same key: ignored by SQLite
        fixture.store.write(("put", "CP1", "mirror", twin))
        fixture.commit()
        self.assert_bytes_right(fixture)

    def test_a_group_of_entries_owed_is_one_statement(self):
        """Entries owed and nothing else: one INSERT, its own transaction; with a delete: BEGIN ... COMMIT."""
        fixture = Fixture(self)
        fixture.owe("CP1", "mirror", "h0", "Heartbeat", {})
        fixture.commit()  # (the first group after opening applies the age bound: the general way)
        statements = []
        fixture.store.db._db.set_trace_callback(statements.append)
        for index in range(1, 20):
            fixture.owe("CP1", "mirror", f"h{index}", "Heartbeat", {})
        fixture.commit()
        self.assertEqual([statement.split(" ", 1)[0] for statement in statements], ["INSERT"])
        self.assert_bytes_right(fixture)
        del statements[:]
        fixture.store.write(("del", "CP1", "mirror", 1))
        fixture.owe("CP1", "mirror", "h20", "Heartbeat", {})
        fixture.commit()
        verbs = [statement.split(" ", 1)[0] for statement in statements]
        self.assertEqual((verbs[0], verbs[-1]), ("BEGIN", "COMMIT"))
        self.assertEqual(verbs.count("INSERT"), 1)
        self.assert_bytes_right(fixture)
        fixture.reopen()
        self.assertEqual(len(fixture.outbox.queue("CP1", "mirror")), 20)
        self.assert_bytes_right(fixture)

    def test_a_failed_group_leaves_the_bytes_as_before(self):
        """A group rolled back (here an operation the file does not know, after a row) counts nothing of itself."""
        fixture = Fixture(self)
        fixture.owe("CP1", "mirror", "h0", "Heartbeat", {})
        fixture.commit()
        db = fixture.store.db
        before = db.total_bytes
        extra = Entry(500, "x", "Heartbeat", b"z" * 40, 1000.0)
        with self.assertRaises(ValueError):
            db.apply([("put", "CP1", "mirror", extra), ("bogus",)], 1000.0, 1 << 30, 1e9)
        self.assertEqual(db.total_bytes, before)
        self.assert_bytes_right(fixture)

    def test_no_trigger_left_in_a_file_that_had_them(self):
        """A file of the release that kept the bytes with triggers loses them at open, its bytes still right."""
        fixture = Fixture(self)
        fixture.owe("CP1", "mirror", "h0", "Heartbeat", {})
        fixture.commit()
        db = fixture.store.db._db
        db.execute("CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 1), bytes INTEGER NOT NULL)")
        db.execute("INSERT INTO totals VALUES (1, 0)")
        db.execute("CREATE TRIGGER entries_put AFTER INSERT ON entries"
                   " BEGIN UPDATE totals SET bytes = bytes + LENGTH(new.payload) WHERE id = 1; END")
        fixture.reopen()
        names = fixture.store.db._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' OR name = 'totals'"
        ).fetchall()
        self.assertEqual(names, [])
        fixture.owe("CP1", "mirror", "h1", "Heartbeat", {})
        fixture.commit()
        self.assert_bytes_right(fixture)

    def test_file_of_the_former_layout(self):
        """A file written before the key and the totals changed opens, loads and is kept right."""
        import os
        import sqlite3

        from ocppproxy.relay.outbox_db import FILE_NAME

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        db = sqlite3.connect(os.path.join(directory, FILE_NAME), isolation_level=None)
        db.execute(
            "CREATE TABLE entries (station TEXT NOT NULL, upstream TEXT NOT NULL, seq INTEGER NOT NULL,"
            " message_id TEXT NOT NULL, action TEXT, kind INTEGER NOT NULL, payload BLOB NOT NULL,"
            " written_at REAL NOT NULL, station_tx INTEGER, PRIMARY KEY (station, upstream, seq)) WITHOUT ROWID"
        )
        for station in ("CP1", "CP2"):
            db.execute("INSERT INTO entries VALUES (?, 'mirror', 1, 'h', 'Heartbeat', 2, ?, 1000.0, NULL)",
                       (station, b'[2,"h","Heartbeat",{}]'))
        db.close()
        fixture = Fixture(self, directory=directory)
        self.assertEqual({key: len(queue) for key, queue in fixture.outbox.queues.items()},
                         {("CP1", "mirror"): 1, ("CP2", "mirror"): 1})
        self.assert_bytes_right(fixture)
        self.assertEqual(fixture.owe("CP1", "mirror", "n", "Heartbeat", {}).seq, 2)
        fixture.store.write(("del", "CP2", "mirror", 1))
        fixture.commit()
        self.assert_bytes_right(fixture)
        fixture.reopen()
        self.assertEqual({key: len(queue) for key, queue in fixture.outbox.queues.items() if len(queue)},
                         {("CP1", "mirror"): 2})


class StationFrameTests(SynchronousTestCase):
    """The station's frame comes from the relay's effects, never parsed again; a frame the relay refused has none."""

    def test_taken_from_the_effects(self):
        from ocppproxy.core.effects import Close
        from ocppproxy.core.observer import StationFrame
        from ocppproxy.core.ocppj import parse_frame

        links = outbox_links.OutboxLinks()
        payload = b'[2,"m-1","MeterValues",{"transactionId":17}]'
        frame = parse_frame(payload)
        links._outbox_station_frame(payload, [StationFrame("CP1", frame, payload)])
        self.assertIs(links._station_frame, frame)
        self.assertEqual(links._station_payload, payload)  # untranslated: what the station sent
        answer = b'[3,"m-1",{}]'
        links._outbox_station_frame(answer, [StationFrame("CP1", parse_frame(answer), answer)])
        self.assertIsNone(links._station_frame)  # an answer is owed to nobody
        links._outbox_station_frame(b"[2,", [Close(1007, "bad")])
        self.assertIsNone(links._station_frame)
        links._outbox_station_frame(b"[2,", [])
        self.assertIsNone(links._station_frame)


class LeanLaneTests(SynchronousTestCase):
    """A live CALL to a connected mirror keeping up goes at once (append, connected), by the same rules as ready()."""

    def setUp(self):
        self.backlog = Backlog(Clock())
        self.queue = OutboxQueue("CP1", "mirror", window=2)

    def owe(self, message_id, action="Heartbeat", kind=CALL, connected=True):
        """The entry appended; whether it goes at once."""
        entry = self.backlog.entry(message_id, action, {}, kind=kind)
        self.queue.append(entry, connected)
        return entry.sent

    def test_goes_at_once_when_nothing_waits(self):
        self.assertTrue(self.owe("h0"))
        self.assertEqual((self.queue.unsent, self.queue.ready()), (0, []))
        entry = self.queue.in_flight["h0"]
        self.queue.delivered(entry)
        self.assertEqual((len(self.queue), self.queue.in_flight, self.queue.bytes), (0, {}, 0))

    def test_not_while_the_link_is_down(self):
        self.assertFalse(self.owe("h0", connected=False))
        self.assertEqual([each.message_id for each in self.queue.ready()], ["h0"])

    def test_not_before_a_backlog(self):
        self.owe("old", connected=False)
        self.assertFalse(self.owe("new"))
        self.assertEqual([each.message_id for each in self.queue.ready()], ["old", "new"])

    def test_not_behind_an_unanswered_start_transaction(self):
        self.assertTrue(self.owe("s", "StartTransaction"))
        self.assertFalse(self.owe("m", "MeterValues"))
        self.assertEqual(self.queue.ready(), [])
        self.queue.answered("s", 905)
        self.assertEqual([each.message_id for each in self.queue.ready()], ["m"])

    def test_not_beyond_the_window_nor_a_send(self):
        for message_id in ("h0", "h1"):
            self.assertTrue(self.owe(message_id))
        self.assertFalse(self.owe("h2"))
        self.queue.answered("h0")
        self.queue.answered("h1")
        self.assertEqual([each.message_id for each in self.queue.ready()], ["h2"])
        self.queue.sent(self.queue.ready()[0], backlog=False)
        self.assertFalse(self.owe("n", "Notify", kind=SEND))

    def test_link_lost_sends_again_in_order(self):
        for message_id in ("h0", "h1"):
            self.owe(message_id)
        self.owe("h2")
        self.queue.link_lost()
        self.assertEqual([each.message_id for each in self.queue.ready()], ["h0", "h1"])  # the window of 2
        self.queue.dropped([1])
        self.assertEqual((self.queue.unsent, len(self.queue.in_flight)), (2, 0))


class SessionTokenTests(OutboxFixture, SynchronousTestCase):
    """A mirror's answer goes to the relay only for CALLs the same session owed; older ones are the outbox's."""

    def test_answer_to_an_earlier_sessions_call_is_consumed(self):
        harness = self.harness
        queue = heartbeat_in_flight(self)
        entry = queue.in_flight["h-1"]
        live = entry.live
        self.assertTrue(live)
        entry.live = live + 1000  # as if a session before this one had owed it
        relayed = []
        self.patch(harness.proxy.sessions["CP_1"].relay, "from_upstream",
                   lambda *args: relayed.append(args) or [])
        harness.third.connection.send('[3,"h-1",{}]')
        harness.flush()
        self.assertEqual((relayed, len(queue)), ([], 0))  # consumed by the outbox, not given to the relay


class OptOutTests(OutboxFixture, SynchronousTestCase):
    """Which mirrors go through the outbox is read from a table kept with the routing, reloads included."""

    def test_opted_out_mirror_then_a_reload_opts_it_in(self):
        harness = self.harness
        harness.reroute(upstreams={"a": {"url": A}, "c": {"url": C, "outbox": False}})
        station = harness.connect_station("CP_1")
        harness.flush()
        station.send('[2,"h-1","Heartbeat",{}]')
        harness.flush()
        self.assertNotIn(("CP_1", "c"), self.outbox.queues)  # sent as without the outbox
        self.assertIn("h-1", [frame[1] for frame in harness.third.connection.frames()])
        harness.reroute(upstreams={"a": {"url": A}, "c": {"url": C}})
        harness.third.answer_calls = False
        station.send('[2,"h-2","Heartbeat",{}]')
        harness.flush()
        self.assertEqual(list(self.outbox.queue("CP_1", "c").in_flight), ["h-2"])
