"""
The garbage collector kept off the stations' objects (ocppproxy.daemon.collector): every
tick freezes what survived a young collection; everything is collected, then frozen
again, once an hour or sooner when the frozen objects grew by half.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.daemon.collector import (
    FREEZE_INTERVAL,
    FULL_INTERVAL,
    MINIMUM_FROZEN,
    SOONEST,
    CollectorPolicy,
    CollectorService,
    full_collection_due,
)


class RecordedCollector:
    """The gc module's calls the policy makes, recorded; C{frozen} is what get_freeze_count answers."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.frozen = 0

    def collect(self, generation: int = 2) -> int:
        self.calls.append(("collect", generation))
        return 7

    def freeze(self) -> None:
        self.calls.append(("freeze",))

    def unfreeze(self) -> None:
        self.calls.append(("unfreeze",))

    def get_freeze_count(self) -> int:
        return self.frozen


class DueTests(SynchronousTestCase):
    def test_an_hour_after_the_last(self) -> None:
        self.assertFalse(full_collection_due(FULL_INTERVAL - 1, 0, 10, 10))
        self.assertTrue(full_collection_due(FULL_INTERVAL, 0, 10, 10))

    def test_sooner_when_the_frozen_doubled(self) -> None:
        base = MINIMUM_FROZEN * 2
        self.assertFalse(full_collection_due(SOONEST, 0, base * 2 - 1, base))
        self.assertTrue(full_collection_due(SOONEST, 0, base * 2, base))

    def test_never_in_the_middle_of_a_storm(self) -> None:
        """Growth alone asks for nothing within SOONEST seconds of the last full collection (or start-up)."""
        self.assertFalse(full_collection_due(SOONEST - 1, 0, MINIMUM_FROZEN * 10, MINIMUM_FROZEN))

    def test_never_for_growth_alone_below_the_minimum(self) -> None:
        self.assertFalse(full_collection_due(SOONEST, 0, MINIMUM_FROZEN - 1, 0))
        self.assertTrue(full_collection_due(SOONEST, 0, MINIMUM_FROZEN, 0))


class PolicyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.gc = RecordedCollector()
        self.policy = CollectorPolicy(self.clock, self.gc, timer=self.clock.seconds)
        self.logged: list[dict] = []

        def observe(event: dict) -> None:
            if event.get("log_namespace", "").endswith("CollectorPolicy"):
                self.logged.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def test_a_tick_freezes_what_survived_a_young_collection(self) -> None:
        self.policy.tick()
        self.assertEqual(self.gc.calls, [("collect", 1), ("freeze",)])
        self.assertEqual(self.logged, [])

    def test_full_collection_once_an_hour_unfreezes_collects_and_freezes(self) -> None:
        self.clock.advance(FULL_INTERVAL)
        self.gc.frozen = 1234
        self.policy.tick()
        self.assertEqual(self.gc.calls, [("unfreeze",), ("collect", 2), ("freeze",)])
        self.assertEqual(self.policy.full_collections, 1)
        (event,) = self.logged
        self.assertEqual((event["reclaimed"], event["kept"]), (7, 1234))
        self.gc.calls.clear()
        self.clock.advance(FREEZE_INTERVAL)
        self.policy.tick()
        self.assertEqual(self.gc.calls, [("collect", 1), ("freeze",)])

    def test_many_stations_came_and_went(self) -> None:
        self.gc.frozen = MINIMUM_FROZEN * 3
        self.policy.tick()  # start-up counts as a full collection: none within SOONEST
        self.assertEqual(self.policy.full_collections, 0)
        self.clock.advance(SOONEST)
        self.policy.tick()  # the growth counts from zero
        self.assertEqual(self.policy.full_collections, 1)
        self.clock.advance(SOONEST)
        self.gc.frozen = MINIMUM_FROZEN * 5
        self.policy.tick()
        self.assertEqual(self.policy.full_collections, 1)
        self.gc.frozen = MINIMUM_FROZEN * 6
        self.policy.tick()
        self.assertEqual(self.policy.full_collections, 2)


class ServiceTests(SynchronousTestCase):
    def test_ticks_every_interval(self) -> None:
        clock, collector = Clock(), RecordedCollector()
        service = CollectorService(CollectorPolicy(clock, collector), clock)
        service.startService()
        self.assertEqual(collector.calls, [])
        clock.advance(FREEZE_INTERVAL)
        self.assertEqual(collector.calls, [("collect", 1), ("freeze",)])
        service.stopService()
        clock.advance(FREEZE_INTERVAL)
        self.assertEqual(len(collector.calls), 2)
