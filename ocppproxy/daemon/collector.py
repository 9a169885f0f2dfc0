"""
The garbage collector kept off the stations' objects (L{CollectorPolicy}).

CPython 3.11 collects its oldest generation when the objects promoted since the last
such collection exceed a quarter of those already there, and each of those collections
walks every object: at 6,000 stations some 2 million, over a second during which the
reactor stands still, every 20 to 30 s under a Heartbeat a minute from each (see the
performance report). Almost all of those objects are the connected stations' and live
as long as the connection.

So every L{FREEZE_INTERVAL} seconds the young generations are collected (milliseconds),
and the oldest generation's unfrozen part too when many objects were promoted since the
last tick (L{RECLAIM_ABOVE}: stations connecting), and everything that survived is moved
out of the collector's sight (C{gc.freeze()}, a
constant-time splice): the automatic collections then only ever walk what was made
since, whatever the number of stations. Objects frozen are still freed when nothing
refers to them; what freezing holds back is garbage in cycles (a station's objects that
refer to each other after it left). To reclaim those, a full collection of everything is
run at a chosen moment instead of at the collector's: once every L{FULL_INTERVAL}
seconds, or, L{SOONEST} seconds after the last one at the earliest, once the frozen
objects have doubled since (many stations came and went); its duration is logged.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from ..logs import proxy_logger
from ..periodic import Periodic

FREEZE_INTERVAL = 1.0
"""Seconds between two freezes of what survived the young collections (each costs well under a millisecond)."""
FULL_INTERVAL = 3600.0
"""Seconds between two full collections at most."""
GROWTH = 2.0
"""A full collection comes sooner once what was frozen since the last one makes this many times what it kept..."""
SOONEST = 600.0
"""... and at least this many seconds after the last one (start-up counts as one): not in the middle of a storm."""
RECLAIM_ABOVE = 2_000
"""From this many objects promoted to the oldest generation since the last tick, the tick collects that generation's unfrozen part too."""
MINIMUM_FROZEN = 200_000
"""Below this many frozen objects (a few hundred stations), growth alone never asks for a full collection."""


def full_collection_due(now: float, last_full: float, frozen_since: int, frozen_after_full: int) -> bool:
    """
    Whether the next tick collects everything (see the module's doc): C{frozen_since}
    objects were frozen since the last full collection, which left C{frozen_after_full}.
    """
    if now - last_full >= FULL_INTERVAL:
        return True
    grown = frozen_since >= MINIMUM_FROZEN and frozen_after_full + frozen_since >= GROWTH * frozen_after_full
    return now - last_full >= SOONEST and grown


class CollectorPolicy:
    """Freezes what survives the young collections, and collects everything at chosen moments; see the module."""

    _log = proxy_logger()

    def __init__(
        self, clock: Any, collector: Any = gc, timer=time.perf_counter, reclaim_above: int | None = None
    ) -> None:
        self._clock = clock
        self._reclaim_above = RECLAIM_ABOVE if reclaim_above is None else reclaim_above
        # The first tick freezes what start-up made (imports, configuration), all of it
        # kept for good: no need to look for cycles among it.
        self._ticked = False
        self._gc = collector
        self._timer = timer
        self._last_full = clock.seconds()
        self._frozen_after_full = 0
        self._frozen_since = 0
        """Objects frozen since the last full collection, counted as they are frozen (some are gone since)."""
        self.full_collections = 0

    def tick(self) -> None:
        """Freeze what survived a young collection (and, after many promotions, the oldest generation's unfrozen part), or collect everything if it is time to."""
        collector, now = self._gc, self._clock.seconds()
        if full_collection_due(now, self._last_full, self._frozen_since, self._frozen_after_full):
            started = self._timer()
            collector.unfreeze()
            reclaimed = collector.collect()
            collector.freeze()
            self._last_full = now
            # (get_freeze_count walks every frozen object: once per full collection, never per tick.)
            self._frozen_after_full = collector.get_freeze_count()
            self._frozen_since = 0
            self.full_collections += 1
            self._log.info(
                "full garbage collection: {seconds:.3f} s, {reclaimed} objects in cycles reclaimed,"
                " {kept} objects kept",
                seconds=self._timer() - started, reclaimed=reclaimed, kept=self._frozen_after_full,
            )
        else:
            collector.collect(1)
            # What survived is in the oldest generation now, and only that is unfrozen: cheap to count.
            unfrozen = len(collector.get_objects(2))
            if unfrozen >= self._reclaim_above and self._ticked:
                # Many promoted since the last tick (stations connecting): among them the
                # cycles the automatic young collections promoted while their connection
                # attempt or handshake was in progress, garbage now, which freezing would
                # keep until the next full collection (after a connect storm, 6 KiB and
                # more per station). Collecting the oldest generation too walks only
                # what is unfrozen; not every tick, nor the first, as it also empties the
                # interpreter's free lists.
                collector.collect(2)
                unfrozen = len(collector.get_objects(2))
            self._frozen_since += unfrozen
            collector.freeze()
        self._ticked = True


class CollectorService(Periodic):
    """
    L{CollectorPolicy.tick} every L{FREEZE_INTERVAL} seconds while the daemon runs. Nothing
    is unfrozen at shutdown: that would only have the collector walk every object while
    the stations are being closed.
    """

    def __init__(self, policy: CollectorPolicy, clock: Any) -> None:
        super().__init__(FREEZE_INTERVAL, policy.tick, clock)
        self.policy = policy
        self.setName("collector")
