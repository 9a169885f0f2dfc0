"""
The bounded queue of frames waiting for an upstream (L{FrameQueue}), as a table.

Rows: ("push", frame) expecting whether the oldest was dropped for it; ("pop",) expecting
the oldest frame; ("drain",) expecting everything, oldest first; ("clear",) expecting how
many were discarded; ("state",) expecting (length, frames dropped since the last drain).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.frame_queue import FrameQueue

from ..tables import add_table_tests


def run_row(queue, row):
    what, *args = row
    if what == "push":
        return queue.push(args[0])
    if what == "pop":
        return queue.popleft()
    if what == "drain":
        return queue.drain()
    if what == "clear":
        return queue.clear()
    if what == "state":
        return (len(queue), queue.dropped)
    raise AssertionError(what)


# (docstring, settings, rows of (input, expected))
CASES = {
    "in_order_within_the_limit": (
        "Frames come out in the order they went in.",
        {"limit": 3},
        [
            (("state",), (0, 0)),
            (("push", "a"), False),
            (("push", "b"), False),
            (("pop",), "a"),
            (("drain",), ["b"]),
            (("state",), (0, 0)),
        ],
    ),
    "oldest_dropped_and_counted": (
        "Beyond the limit the oldest frame is dropped, and counted until the queue is drained.",
        {"limit": 2},
        [
            (("push", "a"), False),
            (("push", "b"), False),
            (("push", "c"), True),
            (("push", "d"), True),
            (("state",), (2, 2)),
            (("drain",), ["c", "d"]),
            (("state",), (0, 0)),
        ],
    ),
    "clear_discards_and_says_how_many": (
        "Clearing discards what waits (a stopped link) and says how many frames were lost.",
        {"limit": 5},
        [
            (("clear",), 0),
            (("push", "a"), False),
            (("push", "b"), False),
            (("clear",), 2),
            (("drain",), []),
        ],
    ),
}


class FrameQueueTests(SynchronousTestCase):
    """One test per case of CASES."""


add_table_tests(FrameQueueTests, CASES, lambda settings: FrameQueue(settings["limit"]), run_row)
