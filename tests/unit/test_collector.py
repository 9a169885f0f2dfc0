"""
The garbage collector kept off the stations' objects (ocppproxy.daemon.collector): every
tick freezes what survived a young collection (after many promotions, of the oldest
generation's unfrozen part too); everything is collected, then frozen
again, once an hour or sooner when the frozen objects grew by half.
"""

from __future__ import annotations

import gc
import weakref

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.daemon.collector import (
    FREEZE_INTERVAL,
    FULL_INTERVAL,
    MINIMUM_FROZEN,
    RECLAIM_ABOVE,
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
        self.surviving = 0
        """How many objects a young collection leaves in the oldest generation (unfrozen)."""

    def collect(self, generation: int = 2) -> int:
        self.calls.append(("collect", generation))
        return 7

    def freeze(self) -> None:
        self.calls.append(("freeze",))

    def unfreeze(self) -> None:
        self.calls.append(("unfreeze",))

    def get_freeze_count(self) -> int:
        self.calls.append(("get_freeze_count",))
        return self.frozen

    def get_objects(self, generation: int) -> list:
        self.calls.append(("get_objects", generation))
        return [None] * self.surviving


class DueTests(SynchronousTestCase):
    def test_an_hour_after_the_last(self) -> None:
        self.assertFalse(full_collection_due(FULL_INTERVAL - 1, 0, 10, 10))
        self.assertTrue(full_collection_due(FULL_INTERVAL, 0, 10, 10))

    def test_sooner_when_the_frozen_doubled(self) -> None:
        base = MINIMUM_FROZEN * 2
        self.assertFalse(full_collection_due(SOONEST, 0, base - 1, base))
        self.assertTrue(full_collection_due(SOONEST, 0, base, base))

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
        """Counted from the oldest generation's few unfrozen objects: never by walking every frozen one."""
        self.policy.tick()
        self.assertEqual(self.gc.calls, [("collect", 1), ("get_objects", 2), ("freeze",)])
        self.assertEqual(self.logged, [])

    def test_many_promoted_the_oldest_unfrozen_collected_too(self) -> None:
        """
        From RECLAIM_ABOVE objects promoted since the last tick, the oldest generation's
        unfrozen part is collected before freezing; not at the first tick (start-up's objects).
        """
        self.gc.surviving = RECLAIM_ABOVE
        self.policy.tick()
        self.assertEqual(self.gc.calls, [("collect", 1), ("get_objects", 2), ("freeze",)])
        self.gc.calls.clear()
        self.policy.tick()
        self.assertEqual(
            self.gc.calls,
            [("collect", 1), ("get_objects", 2), ("collect", 2), ("get_objects", 2), ("freeze",)],
        )

    def test_full_collection_once_an_hour_unfreezes_collects_and_freezes(self) -> None:
        self.clock.advance(FULL_INTERVAL)
        self.gc.frozen = 1234
        self.policy.tick()
        self.assertEqual(self.gc.calls, [("unfreeze",), ("collect", 2), ("freeze",), ("get_freeze_count",)])
        self.assertEqual(self.policy.full_collections, 1)
        (event,) = self.logged
        self.assertEqual((event["reclaimed"], event["kept"]), (7, 1234))
        self.gc.calls.clear()
        self.clock.advance(FREEZE_INTERVAL)
        self.policy.tick()
        self.assertEqual(self.gc.calls, [("collect", 1), ("get_objects", 2), ("freeze",)])

    def test_many_stations_came_and_went(self) -> None:
        """Growth is what was frozen since the last full collection, against what that one kept."""
        self.gc.surviving = MINIMUM_FROZEN * 3
        self.policy.tick()  # start-up counts as a full collection: none within SOONEST
        self.assertEqual(self.policy.full_collections, 0)
        self.gc.surviving = 0
        self.clock.advance(SOONEST)
        self.policy.tick()  # 3 x MINIMUM_FROZEN frozen since start-up, which kept none
        self.assertEqual(self.policy.full_collections, 1)
        self.gc.frozen = MINIMUM_FROZEN * 3  # what that full collection kept
        self.clock.advance(SOONEST)
        self.gc.surviving = MINIMUM_FROZEN * 2
        self.policy.tick()
        self.assertEqual(self.policy.full_collections, 1)
        self.gc.surviving = MINIMUM_FROZEN
        self.policy.tick()  # 3 x MINIMUM_FROZEN frozen since: doubled
        self.assertEqual(self.policy.full_collections, 2)


class _Cycle:
    def __init__(self) -> None:
        self.me = self


class RealCollectorTests(SynchronousTestCase):
    def test_promoted_cycle_reclaimed_not_frozen(self) -> None:
        """
        A cycle the automatic collections promoted to the oldest generation while it was
        alive (a handshake's, say), garbage by the next tick: after enough promotions,
        that tick reclaims it instead of freezing it until the next full collection.
        """
        if gc.isenabled():
            gc.disable()
            self.addCleanup(gc.enable)
        self.addCleanup(gc.unfreeze)
        policy = CollectorPolicy(Clock(), gc, reclaim_above=1)
        policy.tick()  # the first: start-up's objects, frozen as they are
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        gc.collect(1)  # alive: promoted to the oldest generation
        del cycle
        policy.tick()
        self.assertIsNone(gone())


class ServiceTests(SynchronousTestCase):
    def test_ticks_every_interval(self) -> None:
        clock, collector = Clock(), RecordedCollector()
        service = CollectorService(CollectorPolicy(clock, collector), clock)
        service.startService()
        self.assertEqual(collector.calls, [])
        clock.advance(FREEZE_INTERVAL)
        self.assertEqual(collector.calls, [("collect", 1), ("get_objects", 2), ("freeze",)])
        service.stopService()
        clock.advance(FREEZE_INTERVAL)
        self.assertEqual(len(collector.calls), 3)
