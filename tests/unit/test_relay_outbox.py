"""
The outbox through the real proxy between in-memory stations and central systems
(tests/harness.py): a mirror down gets, once back, every frame the station sent, in order,
with its own transaction ids; its answers to the backlog never reach the station; the
backlog survives a new proxy on the same file (a restart).
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import OutboxConfig
from ocppproxy.relay.outbox import Outbox
from ocppproxy.relay.outbox_store import OutboxStore

from ..harness import DOWN, PRIMARY_PORT, THIRD_PORT, UP, RelayHarness
from .test_outbox_store import run_now

A = f"ws://127.0.0.1:{PRIMARY_PORT}/ocpp/"
C = f"ws://127.0.0.1:{THIRD_PORT}/feed/"
START = '[2,"s-1","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,"timestamp":"2026-01-01T00:00:00Z"}]'
STOP = '[2,"e-1","StopTransaction",{"transactionId":17,"meterStop":9,"timestamp":"2026-01-01T01:00:00Z"}]'


def meter(index: int) -> str:
    return json.dumps([2, f"m-{index}", "MeterValues", {"connectorId": 1, "transactionId": 17, "meterValue": []}],
                      separators=(",", ":"))


class OutboxFixture:
    """A proxy with primary a and mirror c (the harness's third central system) through an outbox on a Clock."""

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.harness = self.make_harness()

    def make_harness(self):
        harness = RelayHarness(
            self,
            upstreams={"a": {"url": A}, "c": {"url": C}},
            routes=[{"stations": ["*"], "primary": "a", "mirrors": ["c"]}],
            reconnect={"initial_delay": 0.5, "factor": 2, "max_delay": 4, "max_attempts": 1000},
        )
        self.store = OutboxStore(OutboxConfig(self.directory), harness.clock, run_now)
        self.outbox = Outbox(self.store, harness.clock.seconds)
        self.outbox.restore(self.successResultOf(self.store.start()))
        harness.proxy.use_outbox(self.outbox)
        return harness

    def station_sends_a_transaction(self, meter_values: int):
        harness = self.harness
        harness.primary.answer_calls = False
        station = harness.connect_station("CP_1")
        primary = harness.primary.connection
        station.send(START)
        harness.flush()
        primary.send('[3,"s-1",{"transactionId":17,"idTagInfo":{"status":"Accepted"}}]')
        for index in range(meter_values):
            station.send(meter(index))
            harness.flush()
            primary.send(json.dumps([3, f"m-{index}", {}]))
        station.send(STOP)
        harness.flush()
        primary.send('[3,"e-1",{}]')
        harness.flush()
        return station

    def mirror_comes_back(self):
        """The mirror is up, answering StartTransaction with its own id 905 and the rest with {}."""
        harness, third = self.harness, self.harness.third
        third.state = UP
        third.answer_calls = False
        delivered = []
        for _ in range(200):
            harness.advance(0.5)
            if not third.connections:
                continue
            connection = third.connection
            while len(delivered) < len(connection.received):
                frame = json.loads(connection.received[len(delivered)])
                delivered.append(frame)
                if frame[0] == 2:
                    body = {"transactionId": 905, "idTagInfo": {"status": "Accepted"}} if frame[2] == "StartTransaction" else {}
                    connection.send(json.dumps([3, frame[1], body]))
                harness.flush()
            if not len(self.outbox.queue("CP_1", "c")):
                return delivered
        raise AssertionError(f"backlog not delivered: {len(self.outbox.queue('CP_1', 'c'))} left")


class OutboxRelayTests(OutboxFixture, SynchronousTestCase):
    """A mirror that is down accumulates; back, it gets the backlog first, in order, with its own ids."""

    def test_whole_transaction_delivered_in_order_with_the_mirrors_ids(self):
        self.harness.third.state = DOWN
        station = self.station_sends_a_transaction(20)
        self.assertEqual(len(self.outbox.queue("CP_1", "c")), 22)
        delivered = self.mirror_comes_back()
        calls = [frame for frame in delivered if frame[0] == 2 and frame[2] != "BootNotification"]
        self.assertEqual([frame[1] for frame in calls], ["s-1"] + [f"m-{index}" for index in range(20)] + ["e-1"])
        self.assertEqual({frame[3]["transactionId"] for frame in calls[1:]}, {905})
        # The station heard its primary's answers only.
        self.assertEqual([frame[1] for frame in station.frames()], ["s-1"] + [f"m-{index}" for index in range(20)] + ["e-1"])

    def test_backlog_survives_a_restart(self):
        self.harness.third.state = DOWN
        self.station_sends_a_transaction(5)
        self.harness.advance(0.1)  # the group commits
        # A new proxy on the same file; the old one's file left as kill -9 would leave it.
        self.store.db.close()
        self.harness = self.make_harness()
        self.harness.third.state = DOWN
        self.assertEqual(len(self.outbox.queue("CP_1", "c")), 7)
        self.harness.connect_station("CP_1")
        delivered = self.mirror_comes_back()
        calls = [frame for frame in delivered if frame[0] == 2 and frame[2] != "BootNotification"]
        self.assertEqual([frame[1] for frame in calls], ["s-1"] + [f"m-{index}" for index in range(5)] + ["e-1"])
        self.assertEqual({frame[3]["transactionId"] for frame in calls[1:]}, {905})


class DrainTests(OutboxFixture, SynchronousTestCase):
    """A station that went away still has its backlog delivered, on a link the proxy opens itself."""

    def test_away_station_drained_then_no_link_left(self):
        harness = self.harness
        harness.third.state = DOWN
        station = self.station_sends_a_transaction(3)
        station.sendClose(1000)
        harness.flush()
        self.assertNotIn("CP_1", harness.proxy.sessions)
        delivered = self.mirror_comes_back()
        self.assertEqual([frame[1] for frame in delivered], ["s-1", "m-0", "m-1", "m-2", "e-1"])
        self.assertEqual({frame[3]["transactionId"] for frame in delivered[1:]}, {905})
        harness.advance(1)
        self.assertTrue(harness.third.connection.closed)
        self.assertEqual(harness.proxy.drains.drains, {})
        self.assertEqual(len(harness.third.connections), 1)

    def test_boot_first_and_mirror_calls_refused(self):
        harness = self.harness
        harness.third.state = DOWN
        station = harness.connect_station("CP_1")
        station.send('[2,"b-1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        harness.flush()
        # The mirror got the BootNotification once (delivered); then it went away again.
        self.outbox.queue("CP_1", "c").dropped([1])
        station.send('[2,"h-1","Heartbeat",{}]')
        harness.flush()
        station.sendClose(1000)
        harness.flush()
        third = harness.third
        third.state = UP
        third.answer_calls = False
        harness.advance(5)
        connection = third.connection
        self.assertEqual([json.loads(text)[2] for text in connection.received], ["BootNotification", "Heartbeat"])
        connection.send('[2,"r-1","Reset",{"type":"Soft"}]')
        harness.flush()
        self.assertEqual(json.loads(connection.received[-1]), [4, "r-1", "GenericError", "station offline", {}])
        connection.send('[3,"b-1",{}]')
        connection.send('[3,"h-1",{}]')
        harness.advance(1)
        self.assertTrue(connection.closed)

    def test_station_connecting_takes_over(self):
        harness = self.harness
        harness.third.state = DOWN
        station = self.station_sends_a_transaction(2)
        station.sendClose(1000)
        harness.advance(5)  # the next look for backlogs (reconnect.max_delay)
        self.assertIn("CP_1", harness.proxy.drains.drains)
        harness.connect_station("CP_1")
        self.assertEqual(harness.proxy.drains.drains, {})
        delivered = self.mirror_comes_back()
        self.assertEqual([frame[1] for frame in delivered if frame[2] != "BootNotification"],
                         ["s-1", "m-0", "m-1", "e-1"])
        self.assertEqual(len(harness.third.connections), 1)


class UnreachableMirrorTests(OutboxFixture, SynchronousTestCase):
    """Stations away while their mirror is down: one drain link tries it, not one per station."""

    STATIONS = [f"CP_{number}" for number in range(1, 7)]

    def stations_leave_with_a_backlog(self):
        harness = self.harness
        harness.third.state = DOWN
        for station_id in self.STATIONS:
            station = harness.connect_station(station_id)
            station.send(f'[2,"h-{station_id}","Heartbeat",{{}}]')
            harness.flush()
            station.sendClose(1000)
            harness.flush()
        self.assertEqual(harness.proxy.sessions, {})

    def test_one_probe_while_down_then_every_backlog_drains(self):
        harness, third = self.harness, self.harness.third
        self.stations_leave_with_a_backlog()
        harness.advance(5)  # the first look: each drain link tries once, then all but one stop
        first = third.attempts
        (probe,) = harness.proxy.drains.probes.values()
        self.assertEqual([name for name, drain in harness.proxy.drains.drains.items() if drain.links], [probe])
        drains = harness.proxy.drains
        self.assertEqual([each for each in self.STATIONS if drains.waits_for_probe(each)],
                         [each for each in self.STATIONS if each != probe])
        harness.advance(40)  # ten times reconnect.max_delay
        self.assertLessEqual(third.attempts - first, 11, "every station away tried the mirror on its own")
        self.assertGreaterEqual(third.attempts - first, 9, "the probe stopped trying")
        self.assertEqual(len(harness.logged("cannot be reached from the drain links")), 1)
        third.state = UP
        harness.advance(5)  # the probe connects; the others open at once
        self.assertEqual(sorted(json.loads(text)[1] for text in third.received() if '"Heartbeat"' in text),
                         sorted(f"h-{station_id}" for station_id in self.STATIONS))
        harness.advance(1)
        self.assertEqual(harness.proxy.drains.drains, {})
        self.assertEqual(harness.proxy.drains.probes, {})
        self.assertTrue(all(connection.closed for connection in third.connections))
        self.assertEqual(len(harness.logged("reachable again")), 1)

    def test_the_probe_s_station_connecting_hands_the_probe_on(self):
        harness, third = self.harness, self.harness.third
        self.stations_leave_with_a_backlog()
        harness.advance(5)
        (probe,) = harness.proxy.drains.probes.values()
        harness.connect_station(probe)  # its own session takes over; another station probes at the next look
        harness.advance(5)
        (second,) = harness.proxy.drains.probes.values()
        self.assertNotEqual(second, probe)
        self.assertEqual([name for name, drain in harness.proxy.drains.drains.items() if drain.links], [second])
        third.state = UP
        harness.advance(5)
        self.assertEqual(sorted(json.loads(text)[1] for text in third.received() if '"Heartbeat"' in text),
                         sorted(f"h-{station_id}" for station_id in self.STATIONS))
        harness.advance(1)
        self.assertEqual(harness.proxy.drains.drains, {})

    def test_a_refusal_parks_nothing(self):
        harness, third = self.harness, self.harness.third
        self.stations_leave_with_a_backlog()
        third.state = UP
        third.refuse_status = 404  # the mirror knows none of these stations: each says so for itself
        harness.advance(5)
        self.assertEqual(harness.proxy.drains.probes, {})
        self.assertEqual(len([drain for drain in harness.proxy.drains.drains.values() if drain.links]), len(self.STATIONS))


class BecomesPrimaryTests(OutboxFixture, SynchronousTestCase):
    """A mirror that becomes the station's primary (a migration) still gets its backlog, its answers consumed."""

    def test_backlog_delivered_to_the_new_primary(self):
        harness = self.harness
        harness.third.state = DOWN
        station = harness.connect_station("CP_1")
        for index in range(3):
            station.send(json.dumps([2, f"h-{index}", "Heartbeat", {}]))
        harness.flush()
        self.assertEqual(len(self.outbox.queue("CP_1", "c")), 3)
        harness.reroute(routes=[{"stations": ["*"], "primary": "c", "mirrors": ["a"]}])
        harness.third.state = UP
        harness.advance(10, step=0.5)
        received = [json.loads(text)[1] for text in harness.third.connection.received]
        self.assertEqual([each for each in received if each.startswith("h-")], ["h-0", "h-1", "h-2"])
        self.assertEqual(len(self.outbox.queue("CP_1", "c")), 0)
        # The station heard the answers of its primary of the time (a), once each; none of c's to the backlog.
        self.assertEqual([frame[1] for frame in station.frames()], ["h-0", "h-1", "h-2"])
        self.assertFalse(station.closed)

    def test_live_calls_wait_behind_the_backlog_for_handshake_timeout(self):
        harness = self.harness
        harness.third.state = DOWN
        station = harness.connect_station("CP_1")
        for index in range(2):
            station.send(json.dumps([2, f"h-{index}", "Heartbeat", {}]))
        harness.flush()
        harness.reroute(routes=[{"stations": ["*"], "primary": "c", "mirrors": ["a"]}])
        harness.third.state = UP
        harness.third.answer_calls = False
        harness.advance(5, step=0.5)
        third = harness.third.connection
        self.assertEqual([json.loads(text)[1] for text in third.received if '"h-' in text], ["h-0", "h-1"])
        station.send('[2,"live-1","Heartbeat",{}]')
        harness.advance(9, step=0.5)
        self.assertNotIn("live-1", "".join(third.received))  # behind the backlog, unanswered so far
        harness.advance(1.5, step=0.5)  # handshake_timeout (10 s) is up: live traffic goes first
        self.assertIn("live-1", third.received[-1])
        third.send('[3,"live-1",{"currentTime":"2026-01-01T00:00:00Z"}]')
        third.send('[3,"h-0",{}]')
        harness.flush()
        self.assertEqual([frame[1] for frame in station.frames()], ["h-0", "h-1", "live-1"])
        self.assertEqual(len(self.outbox.queue("CP_1", "c")), 1)

    def test_live_calls_follow_once_the_backlog_is_answered(self):
        harness = self.harness
        harness.third.state = DOWN
        station = harness.connect_station("CP_1")
        station.send('[2,"h-0","Heartbeat",{}]')
        harness.flush()
        harness.reroute(routes=[{"stations": ["*"], "primary": "c", "mirrors": ["a"]}])
        harness.third.state = UP
        harness.third.answer_calls = False
        harness.advance(5, step=0.5)
        third = harness.third.connection
        station.send('[2,"live-1","Heartbeat",{}]')
        harness.flush()
        self.assertNotIn("live-1", "".join(third.received))
        third.send('[3,"h-0",{}]')
        harness.flush()
        self.assertIn("live-1", third.received[-1])


class FailoverTests(SynchronousTestCase):
    """While the failover mirror answers, the primary's frames are the outbox's; back, it gets them first, in order."""

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        harness = self.harness = RelayHarness(
            self,
            upstreams={"a": {"url": A}, "c": {"url": C}},
            routes=[{"stations": ["*"], "primary": "a", "mirrors": ["c"], "failover": "c"}],
            reconnect={"initial_delay": 1, "factor": 2, "max_delay": 1, "max_attempts": 1000},
        )
        store = OutboxStore(OutboxConfig(self.directory), harness.clock, run_now)
        self.outbox = Outbox(store, harness.clock.seconds)
        self.outbox.restore(self.successResultOf(store.start()))
        harness.proxy.use_outbox(self.outbox)

    def test_primary_gets_the_failover_frames_first(self):
        harness = self.harness
        station = harness.connect_station("CP_1")
        harness.primary.state = DOWN
        harness.primary.connection.sendClose(3000, "central system restarting")
        harness.flush()
        for index in range(3):
            station.send(json.dumps([2, f"f-{index}", "Heartbeat", {}]))
        harness.flush()
        self.assertEqual([frame[2]["answeredBy"] for frame in station.frames()], ["third"] * 3)
        self.assertEqual(len(self.outbox.queue("CP_1", "a")), 3)
        harness.primary.state = UP
        harness.advance(2, step=0.5)
        station.send('[2,"live-1","Heartbeat",{}]')
        harness.flush()
        received = [json.loads(text)[1] for text in harness.primary.connection.received]
        self.assertEqual([each for each in received if each[0] in "fl"], ["f-0", "f-1", "f-2", "live-1"])
        self.assertEqual(len(self.outbox.queue("CP_1", "a")), 0)
        # The station got one answer per CALL: the failover mirror's, then the primary's to its live CALL.
        self.assertEqual([frame[1] for frame in station.frames()], ["f-0", "f-1", "f-2", "live-1"])
        self.assertEqual(station.frames()[-1][2]["answeredBy"], "primary")


class DrainHandoverTests(OutboxFixture, SynchronousTestCase):
    """The central system never sees two connections of one station: a drain's link is gone before the station's."""

    def test_station_s_mirror_link_waits_for_the_drain_link_to_close(self):
        harness, third = self.harness, self.harness.third
        third.state = DOWN
        station = self.station_sends_a_transaction(2)
        station.sendClose(1000)
        harness.flush()
        third.state = UP
        third.answer_calls = False  # the drain's backlog stays unanswered: its link stays open
        harness.advance(5)
        (drain_connection,) = third.connections
        self.assertFalse(drain_connection.closed)
        harness.unplug(drain_connection)  # its closing handshake will not complete
        harness.connect_station("CP_1")
        harness.advance(1)
        self.assertEqual(third.connections, [drain_connection], "the station's mirror link opened beside the drain's")
        harness.advance(30)  # the drain link gives up its closing handshake and drops
        self.assertTrue(drain_connection.closed)
        self.assertEqual(len(third.connections), 2)
        self.assertFalse(third.connection.closed)
