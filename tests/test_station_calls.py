"""Upstream CALLs towards the station: one at a time, in order, bounded, with a policy."""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.routing import PRIMARY, SECONDARY, STATION, StationRouter
from ocppproxy.core.station_calls import StationBoundCalls


def call(message_id, action="TriggerMessage"):
    payload = json.dumps([2, message_id, action, {}]).encode()
    return parse_frame(payload), payload


def targets(sends):
    return [(send.target, json.loads(send.payload)[:3]) for send in sends]


class OneAtATimeTests(SynchronousTestCase):
    def setUp(self):
        self.calls = StationBoundCalls(timeout=40.0, waiting_limit=3)

    def offer(self, upstream, message_id, now=0.0, action="TriggerMessage"):
        frame, payload = call(message_id, action)
        return self.calls.offer(upstream, frame, payload, now)

    def test_first_call_goes_out(self):
        """With nothing outstanding, an upstream CALL goes to the station at once."""
        outcome, sends = self.offer(PRIMARY, "1")
        self.assertEqual(outcome, "sent")
        self.assertEqual(targets(sends), [(STATION, [2, "1", "TriggerMessage"])])

    def test_same_id_from_both_upstreams_is_never_ambiguous(self):
        """Both upstreams using id "1" at once: the second waits; each answer goes to its own upstream."""
        self.offer(PRIMARY, "1")
        outcome, sends = self.offer(SECONDARY, "1")
        self.assertEqual((outcome, sends), ("waiting", []))
        upstream, sends = self.calls.answer("1", b'[3,"1",{"a":"p"}]', 1.0)
        self.assertEqual(upstream, PRIMARY)
        self.assertEqual([send.target for send in sends], [PRIMARY, STATION])
        upstream, sends = self.calls.answer("1", b'[3,"1",{"a":"s"}]', 2.0)
        self.assertEqual(upstream, SECONDARY)
        self.assertEqual([send.target for send in sends], [SECONDARY])

    def test_waiting_too_long_is_answered_with_callerror(self):
        """A CALL that waits past the timeout gets a CALLERROR to its upstream, and goes no further."""
        self.offer(PRIMARY, "1", now=0.0)
        self.offer(SECONDARY, "2", now=1.0)
        sends = self.calls.expire(41.0)
        self.assertEqual(targets(sends), [(SECONDARY, [4, "2", "GenericError"])])

    def test_outstanding_timeout_releases_the_next(self):
        """An outstanding CALL unanswered after the timeout is forgotten, the next one goes out, its late answer dropped."""
        self.offer(PRIMARY, "1", now=0.0)
        self.offer(SECONDARY, "2", now=30.0)
        sends = self.calls.expire(40.0)
        self.assertEqual(targets(sends), [(STATION, [2, "2", "TriggerMessage"])])
        self.assertEqual(self.calls.answer("1", b'[3,"1",{}]', 41.0), (None, []))

    def test_waiting_is_bounded(self):
        """Beyond the waiting limit, a CALL is refused with a CALLERROR at once."""
        self.offer(PRIMARY, "0")
        for number in range(3):
            self.assertEqual(self.offer(SECONDARY, str(number + 1))[0], "waiting")
        outcome, sends = self.offer(SECONDARY, "4")
        self.assertEqual(outcome, "refused")
        self.assertEqual(targets(sends), [(SECONDARY, [4, "4", "GenericError"])])

    def test_ten_thousand_unanswered_calls_stay_bounded(self):
        """A station that never answers cannot make the bookkeeping grow: 10,000 CALLs, at most limit + 1 kept."""
        for number in range(10_000):
            self.offer(PRIMARY if number % 2 else SECONDARY, f"c{number}", now=number * 0.01)
            self.assertLessEqual(len(self.calls), 4)
        self.calls.expire(10_000.0)
        self.assertEqual(len(self.calls), 0)

    def test_policy_refuses_actions(self):
        """A CALL whose action the upstream's policy does not allow gets CALLERROR SecurityError."""
        calls = StationBoundCalls(timeout=40.0, policies={SECONDARY: frozenset({"GetConfiguration"})})
        frame, payload = call("9", "Reset")
        outcome, sends = calls.offer(SECONDARY, frame, payload, 0.0)
        self.assertEqual(outcome, "refused")
        self.assertEqual(targets(sends), [(SECONDARY, [4, "9", "SecurityError"])])
        frame, payload = call("10", "GetConfiguration")
        self.assertEqual(calls.offer(SECONDARY, frame, payload, 0.0)[0], "sent")
        frame, payload = call("11", "Reset")
        self.assertEqual(calls.offer(PRIMARY, frame, payload, 0.0)[0], "waiting")


class OCPP21FrameTests(SynchronousTestCase):
    def test_callresulterror_routed_like_callerror(self):
        """A CALLRESULTERROR (type 5) from the station goes to the upstream whose CALL it answers."""
        router = StationRouter((PRIMARY, SECONDARY))
        frame, payload = call("21")
        router.from_upstream(SECONDARY, frame, 0.0, payload)
        answer = b'[5,"21","InternalError","oops",{}]'
        route = router.from_station(parse_frame(answer), 1.0, answer)
        self.assertEqual([send.target for send in route.also], [SECONDARY])

    def test_primary_callresulterror_reaches_station(self):
        """The primary's CALLRESULTERROR answering a station CALL goes to the station."""
        router = StationRouter((PRIMARY, SECONDARY))
        router.from_station(parse_frame('[2,"a","Heartbeat",{}]'), 0.0)
        self.assertEqual(router.from_upstream(PRIMARY, parse_frame('[5,"a","X","y",{}]'), 0.0).targets, (STATION,))

    def test_send_from_station_goes_everywhere(self):
        """A SEND (type 6) from the station goes to every upstream and expects no answer."""
        router = StationRouter((PRIMARY, SECONDARY))
        route = router.from_station(parse_frame('[6,"s1","NotifyPeriodicEventStream",{}]'), 0.0)
        self.assertEqual(route.targets, (PRIMARY, SECONDARY))


class StationCallAnswerTests(SynchronousTestCase):
    """The primary's answers to the station's CALLs, without failover: bounded and in time."""

    def call(self, router, message_id, now=0.0):
        return router.from_station(parse_frame(f'[2,"{message_id}","Heartbeat",{{}}]'), now)

    def answer(self, router, message_id, now=0.0, upstream=PRIMARY):
        return router.from_upstream(upstream, parse_frame(f'[3,"{message_id}",{{}}]'), now)

    def test_answer_in_time_reaches_station_once(self):
        router = StationRouter((PRIMARY, SECONDARY), pending_timeout=40.0)
        self.call(router, "a")
        self.assertEqual(self.answer(router, "a", 39.0).targets, (STATION,))
        second = self.answer(router, "a", 39.5)
        self.assertEqual((second.targets, second.late), ((), True))

    def test_late_answer_dropped(self):
        router = StationRouter((PRIMARY,), pending_timeout=40.0)
        self.call(router, "a")
        route = self.answer(router, "a", 40.0)
        self.assertEqual(route.targets, ())
        self.assertTrue(route.late)
        self.assertIn("late or unknown", route.dropped_because)

    def test_secondary_answer_consumed_not_late(self):
        router = StationRouter((PRIMARY, SECONDARY))
        self.call(router, "a")
        route = self.answer(router, "a", upstream=SECONDARY)
        self.assertEqual((route.targets, route.late), ((), False))
        self.assertEqual(self.answer(router, "a").targets, (STATION,))

    def test_reused_id_gets_both_answers(self):
        """A station that reuses an id before the answer gets both answers relayed."""
        router = StationRouter((PRIMARY,))
        self.call(router, "a", 0.0)
        self.call(router, "a", 1.0)
        self.assertEqual(self.answer(router, "a", 2.0).targets, (STATION,))
        self.assertEqual(self.answer(router, "a", 2.0).targets, (STATION,))
        self.assertTrue(self.answer(router, "a", 2.0).late)

    def test_unanswered_calls_bounded(self):
        """10,000 CALLs nobody answers leave at most the limit remembered, and none after the timeout."""
        clock = Clock()
        router = StationRouter((PRIMARY, SECONDARY), pending_timeout=40.0, pending_limit=1000)
        for number in range(10_000):
            self.call(router, f"c{number}", clock.seconds())
            clock.advance(0.001)
        self.assertEqual(len(router.answers), 1000)
        self.assertEqual(self.answer(router, "c9999", clock.seconds()).targets, (STATION,))
        self.assertTrue(self.answer(router, "c0", clock.seconds()).late)
        clock.advance(41)
        self.call(router, "fresh", clock.seconds())
        self.assertEqual(len(router.answers), 1)
