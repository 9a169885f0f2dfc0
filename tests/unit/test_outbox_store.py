"""
The outbox's store (L{ocppproxy.relay.outbox_store}) and service (L{ocppproxy.relay.outbox}):
group commits, what survives a reopen, bounds and their drops, faults and recovery, a
corrupt file kept aside. The writer thread is replaced by a synchronous runner, time by a Clock.
"""

from __future__ import annotations

import json
import os

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import OutboxConfig
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.relay.outbox import Outbox
from ocppproxy.relay.outbox_db import FILE_NAME
from ocppproxy.relay.outbox_store import OutboxStore


def run_now(function, *args):
    """The writer thread, synchronous: the call's result (or failure) at once."""
    try:
        return succeed(function(*args))
    except Exception:
        return fail()


def call(message_id, action, body):
    payload = json.dumps([2, message_id, action, body], separators=(",", ":")).encode()
    return parse_frame(payload), payload


class Fixture:
    """An outbox in a fresh directory, on a Clock."""

    def __init__(self, case, directory=None, **bounds):
        self.case = case
        self.directory = directory or os.path.abspath(case.mktemp())
        os.makedirs(self.directory, exist_ok=True)
        self.clock = Clock()
        self.clock.advance(1000)
        self.config = OutboxConfig(self.directory, **bounds)
        self.open()

    def open(self):
        self.store = OutboxStore(self.config, self.clock, run_now, retry_interval=5)
        self.outbox = Outbox(self.store, self.clock.seconds, window=8)
        self.outbox.restore(self.case.successResultOf(self.store.start()))

    def owe(self, station, upstream, message_id, action, body):
        frame, payload = call(message_id, action, body)
        return self.outbox.owed(station, upstream, frame, payload)

    def commit(self):
        """The commit timer's deadline (9 ms): what was queued is written, unless in flight for less than 4 ms."""
        self.clock.advance(0.009)

    def reopen(self):
        """As after kill -9: the file is read again by a new store (the old one is simply dropped)."""
        self.store.db.close()
        self.open()


class GroupCommitTests(SynchronousTestCase):
    """Many operations, one commit; what is committed is there after a reopen."""

    def test_one_commit_serves_many_frames(self):
        fixture = Fixture(self)
        for index in range(100):
            fixture.owe("CP1", "mirror", f"m{index}", "Heartbeat", {})
        self.assertEqual(fixture.store.commits, 0)
        fixture.commit()
        self.assertEqual(fixture.store.commits, 1)
        fixture.reopen()
        self.assertEqual([entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()],
                         [f"m{index}" for index in range(100)])

    def test_uncommitted_group_is_the_only_loss(self):
        fixture = Fixture(self)
        fixture.owe("CP1", "mirror", "a", "Heartbeat", {})
        fixture.commit()
        fixture.owe("CP1", "mirror", "b", "Heartbeat", {})
        fixture.reopen()  # before b's group was committed
        self.assertEqual([entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()], ["a"])

    def test_answer_removes_and_ids_survive(self):
        fixture = Fixture(self)
        fixture.owe("CP1", "mirror", "s", "StartTransaction", {"connectorId": 1})
        fixture.owe("CP1", "mirror", "m", "MeterValues", {"connectorId": 1, "transactionId": 17, "meterValue": []})
        fixture.outbox.station_started("CP1", "s", 17)
        queue = fixture.outbox.queue("CP1", "mirror")
        [start] = queue.ready()
        fixture.outbox.sent("CP1", "mirror", start, backlog=True)
        answer = parse_frame(b'[3,"s",{"transactionId":905,"idTagInfo":{"status":"Accepted"}}]')
        self.assertIs(fixture.outbox.answered("CP1", "mirror", answer), start)
        fixture.commit()
        fixture.reopen()
        queue = fixture.outbox.queue("CP1", "mirror")
        [meter] = queue.ready()
        self.assertEqual(json.loads(queue.payload_for(meter))[3]["transactionId"], 905)
        self.assertEqual(fixture.outbox.totals()["mirror"]["entries"], 1)

    def test_station_facts_kept_for_drains(self):
        fixture = Fixture(self)
        fixture.outbox.station_connected("CP1", "ocpp1.6", True)
        fixture.owe("CP1", "mirror", "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        fixture.commit()
        fixture.reopen()
        subprotocol, boot, sent_auth = fixture.outbox.stations["CP1"]
        self.assertEqual((subprotocol, json.loads(boot)[2], sent_auth), ("ocpp1.6", "BootNotification", True))


class BoundsTests(SynchronousTestCase):
    """max_age and max_bytes drop the oldest entries, counted per upstream, alerted once per episode."""

    def test_max_age(self):
        fixture = Fixture(self, max_age=60)
        alerts = []
        fixture.outbox.on_alert = lambda upstream, count: alerts.append((upstream, count))
        fixture.owe("CP1", "mirror", "old", "Heartbeat", {})
        fixture.commit()
        fixture.clock.advance(61)
        fixture.owe("CP1", "mirror", "new", "Heartbeat", {})
        fixture.commit()
        self.assertEqual([entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()], ["new"])
        self.assertEqual(alerts, [("mirror", 1)])
        self.assertEqual(fixture.outbox.totals()["mirror"]["dropped"], 1)

    def test_max_bytes_oldest_first_one_alert_per_episode(self):
        frame, payload = call("h0", "Heartbeat", {})
        fixture = Fixture(self, max_bytes=len(payload) * 3)
        alerts = []
        fixture.outbox.on_alert = lambda upstream, count: alerts.append(upstream)
        for index in range(5):
            fixture.owe("CP1", "mirror", f"h{index}", "Heartbeat", {})
            fixture.clock.advance(1)
            fixture.commit()
        self.assertEqual([entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()],
                         ["h2", "h3", "h4"])
        self.assertEqual(alerts, ["mirror"])
        self.assertEqual(fixture.outbox.totals()["mirror"]["dropped"], 2)


class FaultTests(SynchronousTestCase):
    """A store that cannot write never stops the queues; it says so once, and once when it is back."""

    def _committed_then_directory_removed(self):
        """A fixture whose entry "a" is committed, then its directory removed."""
        fixture = Fixture(self)
        fixture.owe("CP1", "mirror", "a", "Heartbeat", {})
        fixture.commit()
        for name in os.listdir(fixture.directory):
            os.remove(os.path.join(fixture.directory, name))
        os.rmdir(fixture.directory)
        return fixture

    def test_directory_removed_then_back(self):
        fixture = self._committed_then_directory_removed()
        fixture.owe("CP1", "mirror", "b", "Heartbeat", {})
        fixture.commit()
        self.assertFalse(fixture.store.healthy)
        errors = [event for event in self.flushLoggedErrors()]
        self.assertEqual(errors, [])
        fixture.owe("CP1", "mirror", "c", "Heartbeat", {})  # memory queue only
        fixture.clock.advance(5)  # directory still missing
        self.assertFalse(fixture.store.healthy)
        os.makedirs(fixture.directory)
        fixture.clock.advance(5)
        self.assertTrue(fixture.store.healthy)
        self.assertEqual(fixture.store.fault_episodes, 1)
        fixture.reopen()
        self.assertEqual([entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()],
                         ["a", "b", "c"])

    def test_entry_waiting_at_the_fault_is_deleted_once_answered(self):
        """An entry whose write was still waiting when the fault came is rewritten, then deleted by its answer."""
        fixture = self._committed_then_directory_removed()
        queue = fixture.outbox.queue("CP1", "mirror")
        fixture.owe("CP1", "mirror", "b", "Heartbeat", {})
        fixture.clock.advance(0.006)
        fixture.owe("CP1", "mirror", "c", "Heartbeat", {})
        for ready in queue.ready():
            fixture.outbox.sent("CP1", "mirror", ready, backlog=False)
        fixture.clock.advance(0.003)  # b's group fails; c (in flight for 3 ms) is still waiting
        self.assertFalse(fixture.store.healthy)
        os.makedirs(fixture.directory)
        fixture.clock.advance(5)
        self.assertTrue(fixture.store.healthy)
        fixture.outbox.answered("CP1", "mirror", parse_frame(b'[3,"c",{}]'))
        fixture.commit()
        fixture.reopen()
        self.assertEqual([entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()], ["a", "b"])

    def test_corrupt_file_kept_aside(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, FILE_NAME), "wb") as stream:
            stream.write(b"this is not a database" * 100)
        fixture = Fixture(self, directory=directory)
        self.assertTrue(fixture.store.healthy)
        aside = [name for name in os.listdir(directory) if ".corrupt-" in name]
        self.assertEqual(aside, [f"{FILE_NAME}.corrupt-1000"])
        fixture.owe("CP1", "mirror", "a", "Heartbeat", {})
        fixture.commit()
        fixture.reopen()
        self.assertEqual(len(fixture.outbox.queue("CP1", "mirror")), 1)


class IdleTrimTests(SynchronousTestCase):
    """An idle outbox still drops what max_age says, once a minute."""

    def test_trimmed_without_traffic(self):
        from ocppproxy.relay.outbox_service import OutboxService

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        clock = Clock()
        clock.advance(1000)
        service = OutboxService(OutboxConfig(directory, max_age=90), clock)
        service._writer.start = lambda: None  # (the writer's work done at once in this thread)
        service._run = run_now
        service.store._run = run_now
        service.startService()
        frame, payload = call("h0", "Heartbeat", {})
        service.outbox.owed("CP1", "mirror", frame, payload)
        clock.advance(0.01)
        self.assertEqual(len(service.outbox.queue("CP1", "mirror")), 1)
        clock.advance(60)
        self.assertEqual(len(service.outbox.queue("CP1", "mirror")), 1)
        clock.advance(60)
        clock.advance(0.01)
        self.assertEqual(len(service.outbox.queue("CP1", "mirror")), 0)
        service.store.db.close()
        service._trim.stop()


class DeliveredBeforeWrittenTests(SynchronousTestCase):
    """An entry answered before its group is written costs the disk nothing."""

    def test_never_written(self):
        fixture = Fixture(self)
        entry = fixture.owe("CP1", "mirror", "h0", "Heartbeat", {})
        fixture.owe("CP1", "mirror", "h1", "Heartbeat", {})
        queue = fixture.outbox.queue("CP1", "mirror")
        for ready in queue.ready():
            fixture.outbox.sent("CP1", "mirror", ready, backlog=False)
        fixture.outbox.answered("CP1", "mirror", parse_frame(b'[3,"h0",{}]'))
        self.assertEqual([operation[0] for operation in fixture.store._pending], ["put", "put"])
        self.assertEqual([operation[3].message_id for operation in fixture.store._pending if operation[3].stored == 1],
                         ["h1"])
        fixture.commit()  # h1, still unanswered, is written; h0 never
        self.assertEqual(fixture.store.commits, 1)
        fixture.outbox.answered("CP1", "mirror", parse_frame(b'[3,"h1",{}]'))
        fixture.commit()
        fixture.reopen()
        self.assertEqual(len(fixture.outbox.queue("CP1", "mirror")), 0)
        self.assertEqual(entry.message_id, "h0")

    def test_late_answers_cost_no_commit(self):
        """
        With nothing else to write, an entry in flight is written only at its own deadline:
        a mirror answering 6 or 7 ms late costs no commit; one not answering by then does.
        """
        fixture = Fixture(self)
        queue = fixture.outbox.queue("CP1", "mirror")

        def owe_and_send(message_id):
            fixture.owe("CP1", "mirror", message_id, "Heartbeat", {})
            for ready in queue.ready():
                fixture.outbox.sent("CP1", "mirror", ready, backlog=False)

        owe_and_send("h0")
        fixture.clock.advance(0.003)
        owe_and_send("h1")
        fixture.clock.advance(0.003)
        fixture.outbox.answered("CP1", "mirror", parse_frame(b'[3,"h0",{}]'))  # 6 ms late
        fixture.clock.advance(0.003)  # h0's deadline: h1 (6 ms in flight) is not due, nothing to write
        fixture.outbox.answered("CP1", "mirror", parse_frame(b'[3,"h1",{}]'))  # 7 ms late
        fixture.clock.advance(0.009)
        self.assertEqual(fixture.store.commits, 0)
        owe_and_send("h2")
        fixture.clock.advance(0.009)  # h2's deadline, unanswered: written
        self.assertEqual(fixture.store.commits, 1)
        fixture.reopen()
        self.assertEqual([entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()], ["h2"])

    def test_in_flight_waits_4_ms_unsent_does_not(self):
        """
        An entry is written by its deadline (9 ms); one in flight to its mirror waits at
        least 4 ms for its answer (answered meanwhile: never written), one not sent does not.
        """
        fixture = Fixture(self)
        queue = fixture.outbox.queue("CP1", "mirror")

        def send_ready():
            for ready in queue.ready():
                fixture.outbox.sent("CP1", "mirror", ready, backlog=False)

        fixture.owe("CP1", "mirror", "h0", "Heartbeat", {})
        send_ready()
        fixture.clock.advance(0.006)
        fixture.owe("CP1", "mirror", "h1", "Heartbeat", {})
        send_ready()
        fixture.clock.advance(0.003)  # h0's deadline: h0 written, h1 (in flight for 3 ms) waits
        self.assertEqual((fixture.store.commits, [op[3].message_id for op in fixture.store._pending]), (1, ["h1"]))
        fixture.outbox.answered("CP1", "mirror", parse_frame(b'[3,"h1",{}]'))  # never written
        fixture.owe("CP1", "mirror", "h2", "Heartbeat", {})  # not sent (its mirror away, say)
        fixture.clock.advance(0.006)  # h1's deadline: h2 goes too, however young
        self.assertEqual((fixture.store.commits, fixture.store._pending), (2, []))
        fixture.reopen()
        self.assertEqual([entry.message_id for entry in fixture.outbox.queue("CP1", "mirror").entries()], ["h0", "h2"])
