"""The durable outbox's rules for one station and one upstream (L{ocppproxy.core.outbox}), time from a Clock."""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.ocppj import CALL, SEND
from ocppproxy.core.outbox import DropEpisodes, Entry, OutboxQueue, drain_frames, offline_answer


def call(message_id, action, body):
    return json.dumps([CALL, message_id, action, body], separators=(",", ":")).encode()


class Backlog:
    """Entries numbered as the store numbers them, written at the clock's time."""

    def __init__(self, clock):
        self.clock = clock
        self.seq = 0

    def entry(self, message_id, action, body, kind=CALL):
        self.seq += 1
        payload = (json.dumps([kind, message_id, action, body], separators=(",", ":")).encode())
        return Entry(self.seq, message_id, action, payload, self.clock.seconds(), kind)


def transaction(backlog, meter_values=3, tx=17):
    """A whole 1.6 transaction as the station sent it (its ids those of its primary)."""
    entries = [backlog.entry("s", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0,
                                                        "timestamp": "2026-01-01T00:00:00Z"})]
    for index in range(meter_values):
        entries.append(backlog.entry(f"m{index}", "MeterValues", {"connectorId": 1, "transactionId": tx,
                                                                  "meterValue": []}))
    entries.append(backlog.entry("e", "StopTransaction", {"transactionId": tx, "meterStop": 9,
                                                          "timestamp": "2026-01-01T01:00:00Z"}))
    return entries


def send_all(queue):
    """Send what is ready; returns the payloads sent, as the upstream gets them."""
    out = []
    for entry in queue.ready():
        out.append(queue.payload_for(entry))
        queue.sent(entry)
    return out


class OrderAndTranslationTests(SynchronousTestCase):
    """The backlog goes out in order, and the ids it carries are the upstream's own, translated at send time."""

    def setUp(self):
        self.clock = Clock()
        self.backlog = Backlog(self.clock)
        self.queue = OutboxQueue("CP1", "mirror", window=4)

    def test_whole_transaction_queued_then_delivered_with_the_mirrors_ids(self):
        for entry in transaction(self.backlog, meter_values=5):
            self.queue.append(entry)
            self.clock.advance(1)
        # The primary answered the station's StartTransaction with 17 while the mirror was down.
        self.queue.start_answered_by_station("s", 17)
        first = send_all(self.queue)
        self.assertEqual([json.loads(each)[1] for each in first], ["s"])  # waits for the start's answer
        self.assertEqual(send_all(self.queue), [])
        self.assertIsNotNone(self.queue.answered("s", own_tx=905))
        delivered = []
        while len(self.queue):
            sent = send_all(self.queue)
            delivered.extend(json.loads(each) for each in sent)
            for frame in delivered[-len(sent):]:
                self.queue.answered(frame[1])
        self.assertEqual([frame[1] for frame in delivered], ["m0", "m1", "m2", "m3", "m4", "e"])
        self.assertEqual({frame[3]["transactionId"] for frame in delivered}, {905})
        self.assertEqual(self.queue.replayed, 7)

    def test_translated_when_sent_not_when_queued(self):
        entries = transaction(self.backlog, meter_values=1)
        for entry in entries:
            self.queue.append(entry)
        self.queue.start_answered_by_station("s", 17)
        self.assertEqual(self.queue.payload_for(entries[1]), entries[1].payload)  # no id known yet: as it is
        send_all(self.queue)
        self.queue.answered("s", own_tx=3)
        self.assertEqual(json.loads(self.queue.payload_for(entries[1]))[3]["transactionId"], 3)
        self.assertEqual(json.loads(entries[1].payload)[3]["transactionId"], 17)  # the stored entry is untouched

    def test_mirror_answer_before_the_primarys(self):
        entries = transaction(self.backlog, meter_values=1)
        for entry in entries:
            self.queue.append(entry)
        send_all(self.queue)
        self.queue.answered("s", own_tx=8)
        self.queue.start_answered_by_station("s", 17)
        self.assertEqual(self.queue.own_id(17), 8)

    def test_window_bounds_the_calls_in_flight(self):
        for index in range(10):
            self.queue.append(self.backlog.entry(f"h{index}", "Heartbeat", {}))
        self.assertEqual(len(send_all(self.queue)), 4)
        self.assertEqual(send_all(self.queue), [])
        self.queue.answered("h0")
        self.assertEqual([json.loads(each)[1] for each in send_all(self.queue)], ["h4"])

    def test_send_leaves_once_written(self):
        self.queue.append(self.backlog.entry("n1", "NotifyPeriodicEventStream", {}, kind=SEND))
        entry = self.queue.ready()[0]
        self.assertEqual(self.queue.sent(entry), [entry])
        self.assertEqual(len(self.queue), 0)

    def test_lost_link_sends_again_with_the_same_ids(self):
        for index in range(3):
            self.queue.append(self.backlog.entry(f"h{index}", "Heartbeat", {}))
        send_all(self.queue)
        self.queue.answered("h0")
        self.queue.link_lost()
        self.assertEqual([json.loads(each)[1] for each in send_all(self.queue)], ["h1", "h2"])

    def test_unknown_answer_is_not_ours(self):
        self.assertIsNone(self.queue.answered("live-1"))

    def test_restore_in_seq_order_with_known_ids(self):
        entries = transaction(self.backlog, meter_values=1)[1:]
        self.queue.restore(reversed(entries), {17: 44})
        sent = [json.loads(each) for each in send_all(self.queue)]
        self.assertEqual([(frame[1], frame[3]["transactionId"]) for frame in sent], [("m0", 44), ("e", 44)])

    def test_dropped_entries_forgotten(self):
        for index in range(3):
            self.queue.append(self.backlog.entry(f"h{index}", "Heartbeat", {}))
        self.assertEqual([entry.message_id for entry in self.queue.dropped([1, 2, 99])], ["h0", "h1"])
        self.assertEqual(len(self.queue), 1)

    def test_sizes_and_oldest(self):
        self.assertIsNone(self.queue.oldest())
        first = self.backlog.entry("h0", "Heartbeat", {})
        self.queue.append(first)
        self.clock.advance(5)
        self.queue.append(self.backlog.entry("h1", "Heartbeat", {}))
        self.assertEqual(self.queue.oldest(), 0)
        self.assertEqual(self.queue.bytes, 2 * first.size)


class HoldLiveTests(SynchronousTestCase):
    """hold_live: live CALLs behind the backlog of an upstream now answering, from the first one, for timeout."""

    def test_held_until_the_timeout_then_never_again(self):
        clock = Clock()
        queue = OutboxQueue("CP1", "mirror")
        queue.append(Backlog(clock).entry("h0", "Heartbeat", {}))
        self.assertTrue(queue.hold_live(clock.seconds(), 10))
        clock.advance(9)
        self.assertTrue(queue.hold_live(clock.seconds(), 10))
        clock.advance(1)
        self.assertFalse(queue.hold_live(clock.seconds(), 10))
        self.assertFalse(queue.hold_live(clock.seconds(), 10))

    def test_not_held_without_backlog(self):
        self.assertFalse(OutboxQueue("CP1", "mirror").hold_live(0, 10))


class DrainTests(SynchronousTestCase):
    """A drain link starts with the station's last BootNotification and answers CALLs with 'station offline'."""

    def test_boot_first_unless_the_backlog_has_one(self):
        backlog = Backlog(Clock())
        boot = call("b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        heartbeat = backlog.entry("h0", "Heartbeat", {})
        self.assertEqual(drain_frames([heartbeat], boot), [boot])
        self.assertEqual(drain_frames([backlog.entry("b2", "BootNotification", {}), heartbeat], boot), [])
        self.assertEqual(drain_frames([heartbeat], None), [])

    def test_offline_answer(self):
        answer = offline_answer(call("x1", "Reset", {"type": "Soft"}))
        self.assertEqual(json.loads(answer), [4, "x1", "GenericError", "station offline", {}])
        self.assertIsNone(offline_answer(b'[3,"x1",{}]'))
        self.assertIsNone(offline_answer(b"not json"))


class DropEpisodeTests(SynchronousTestCase):
    """Drops are counted per upstream and alerted once per episode."""

    def test_once_per_episode(self):
        episodes = DropEpisodes()
        self.assertTrue(episodes.dropped("a", 2))
        self.assertFalse(episodes.dropped("a", 3))
        self.assertTrue(episodes.dropped("b", 1))
        episodes.emptied("a")
        self.assertTrue(episodes.dropped("a", 1))
        self.assertEqual(episodes.counts, {"a": 6, "b": 1})
