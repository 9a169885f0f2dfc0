"""Failover routing decisions: who answers the station while the primary is away."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.routing import PRIMARY, SECONDARY, STATION, StationRouter


def frame(*parts):
    return parse_frame(json.dumps(list(parts)))


def answer(message_id, who):
    payload = json.dumps([3, message_id, {"by": who}]).encode()
    return parse_frame(payload), payload


class FailoverRoutingTests(SynchronousTestCase):
    def setUp(self):
        self.router = StationRouter((PRIMARY, SECONDARY), pending_timeout=40.0, failover=True)
        self.router.failover.primary_connected = True

    def station_call(self, message_id, now=0.0):
        return self.router.from_station(frame(2, message_id, "Authorize", {"idTag": "T"}), now)

    def upstream_answer(self, who, message_id, now=0.0):
        parsed, payload = answer(message_id, who)
        return self.router.from_upstream(who, parsed, now, payload)

    def test_primary_connected_primary_answers(self):
        """With the primary connected, its answer goes to the station and the secondary's is not relayed."""
        self.station_call("1")
        self.assertEqual(self.upstream_answer(SECONDARY, "1").targets, ())
        self.assertEqual(self.upstream_answer(PRIMARY, "1").targets, (STATION,))
        self.assertEqual(self.router.failover.primary_lost(1.0), [])

    def test_primary_away_secondary_answers(self):
        """With the primary away, the secondary's answer goes to the station at once."""
        self.router.failover.primary_lost(0.0)
        self.station_call("2")
        self.assertEqual(self.upstream_answer(SECONDARY, "2").targets, (STATION,))

    def test_held_answer_released_when_primary_drops(self):
        """A CALL pending at the primary when it drops gets the secondary's held answer, once."""
        self.station_call("3")
        self.assertEqual(self.upstream_answer(SECONDARY, "3").targets, ())
        released = self.router.failover.primary_lost(1.0)
        self.assertEqual([json.loads(payload)[2]["by"] for payload in released], [SECONDARY])
        self.assertEqual(self.router.failover.primary_lost(2.0), [])

    def test_pending_call_answered_by_secondary_after_primary_drops(self):
        """A CALL pending when the primary drops is answered by the secondary's later answer."""
        self.station_call("4")
        self.router.failover.primary_lost(1.0)
        self.assertEqual(self.upstream_answer(SECONDARY, "4").targets, (STATION,))

    def test_primary_back_its_answers_to_answered_calls_dropped(self):
        """Back from an outage, the primary's answers to CALLs the secondary answered are dropped."""
        self.router.failover.primary_lost(0.0)
        self.station_call("5")
        self.assertEqual(self.upstream_answer(SECONDARY, "5").targets, (STATION,))
        self.router.failover.primary_connected = True
        self.assertEqual(self.upstream_answer(PRIMARY, "5").targets, ())
        self.station_call("6")
        self.assertEqual(self.upstream_answer(PRIMARY, "6").targets, (STATION,))
        self.assertEqual(self.upstream_answer(SECONDARY, "6").targets, ())

    def test_never_two_answers(self):
        """Whatever the order, each station CALL gets exactly one answer."""
        orders = [
            [PRIMARY, SECONDARY, "lost"],
            [SECONDARY, "lost", PRIMARY],
            ["lost", SECONDARY, PRIMARY],
            ["lost", PRIMARY, SECONDARY],
            [SECONDARY, PRIMARY, "lost"],
        ]
        for order in orders:
            router = StationRouter((PRIMARY, SECONDARY), failover=True)
            router.failover.primary_connected = True
            router.from_station(frame(2, "x", "Authorize", {"idTag": "T"}), 0.0)
            delivered = 0
            for step in order:
                if step == "lost":
                    delivered += len(router.failover.primary_lost(0.0))
                else:
                    parsed, payload = answer("x", step)
                    delivered += len(router.from_upstream(step, parsed, 0.0, payload).targets)
            self.assertEqual(delivered, 1, order)

    def test_held_answers_expire(self):
        """A held answer older than the pending-call timeout is forgotten, not released."""
        self.station_call("7", now=0.0)
        self.upstream_answer(SECONDARY, "7", now=1.0)
        self.assertEqual(self.router.failover.primary_lost(100.0), [])
        self.assertEqual(len(self.router.failover), 0)

    def test_without_failover_secondary_never_answers(self):
        """With failover off, the secondary's answers are never relayed, primary up or not."""
        router = StationRouter((PRIMARY, SECONDARY))
        router.from_station(frame(2, "8", "Heartbeat", {}), 0.0)
        parsed, payload = answer("8", SECONDARY)
        self.assertEqual(router.from_upstream(SECONDARY, parsed, 0.0, payload).targets, ())
        self.assertIsNone(router.failover)
