"""
An upstream link's decisions (L{UpstreamLinkState}) as a table: link events in, the
effects it returns out, written as plain tuples:

    ("log", level, text as formatted)    ("tell", owner method, reason)    ("flush",)
    ("give up",)    ("stop reconnecting",)    ("count stall",)    ("drop",)

and ("state",) rows reading (failed attempts, retry number, gave up, queued, stalled).
The Twisted edge that carries them out is tested in tests/unit/test_upstream_link.py.
"""

from __future__ import annotations

from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ReconnectPolicy
from ocppproxy.core.effects import Log
from ocppproxy.core.upstream_link import (
    CountStall,
    DropConnection,
    Flush,
    GiveUp,
    StopReconnecting,
    Tell,
    UpstreamLinkState,
    backoff_exponent,
    jittered,
)
from ocppproxy.wire.upstream import backoff_delay

from ..tables import add_table_tests

URL = "ws://central.example/ocpp/CP_1"
REFUSED = "Connection was refused by other side"
FAILED = ("log", "warn", f"station CP_1: connection to secondary ({URL}) failed: {REFUSED}")
ATTEMPT = [("tell", "upstream_attempt_failed", REFUSED), FAILED]
CONNECTED = ("log", "info", f"station CP_1: connected to secondary ({URL}), 0 queued frames flushed")
OPENED = [CONNECTED, ("flush",), ("tell", "upstream_connected", "")]
LOST = [
    ("log", "info", "station CP_1: disconnected from secondary (going away), reconnecting"),
    ("tell", "upstream_disconnected", "going away"),
]
FULL = ("log", "warn", "station CP_1: queue for secondary is full (2 frames), dropping the oldest")
DROPPED = ("tell", "upstream_frame_dropped", "")
STALL = [
    ("count stall",),
    (
        "log",
        "warn",
        f"station CP_1: secondary ({URL}) is not taking frames as fast as they come (over 1048576 bytes unsent):"
        " they wait in its queue",
    ),
]


def plain(effect) -> tuple:
    """An effect as a plain tuple (see the module's docstring)."""
    kind = effect.__class__
    if kind is Log:
        return ("log", effect.level, formatEvent({"log_format": effect.text, **effect.fields}))
    if kind is Tell:
        return ("tell", effect.what.value, effect.reason)
    return {
        Flush: ("flush",),
        GiveUp: ("give up",),
        StopReconnecting: ("stop reconnecting",),
        CountStall: ("count stall",),
        DropConnection: ("drop",),
    }[kind]


def link_for(settings: dict) -> UpstreamLinkState:
    return UpstreamLinkState("secondary", URL, "CP_1", settings.get("max_attempts", 3), settings.get("queue", 2))


def effects_of(link: UpstreamLinkState, row: tuple):
    event, *args = row
    if event == "state":
        return (link.failed_attempts, link.retries, link.gave_up, len(link.queue), link.stalled)
    if event == "stop":
        return link.stop()
    method = {
        "attempt failed": link.attempt_failed,
        "opened": link.opened,
        "disconnected": link.disconnected,
        "frame": link.frame_while_away,
        "flushed": link.flushed,
        "buffer full": link.buffer_full,
        "buffer drained": link.buffer_drained,
        "buffer stalled": link.buffer_stalled,
        "give up": link.give_up,
    }[event]
    return [plain(effect) for effect in method(*args)]


CASES = {
    "failed_attempts_count_then_give_up": (
        """Each failed attempt is told and logged and numbers the next retry; at max_attempts, give up (next turn).""",
        {"max_attempts": 3},
        [
            (("attempt failed", REFUSED), ATTEMPT),
            (("state",), (1, 1, False, 0, False)),
            (("attempt failed", REFUSED), ATTEMPT),
            (("attempt failed", REFUSED), [*ATTEMPT, ("give up",)]),
            (("state",), (3, 3, False, 0, False)),
            (
                ("give up",),
                [
                    (
                        "log",
                        "error",
                        f"station CP_1: giving up on secondary ({URL}) after 3 failed attempts, last: {REFUSED}",
                    ),
                    ("stop reconnecting",),
                    ("tell", "upstream_gave_up", ""),
                ],
            ),
            (("state",), (3, 3, True, 0, False)),
            (("give up",), []),  # once
            (("frame", b"[2]"), []),  # nothing queued once given up
            (("attempt failed", REFUSED), ATTEMPT),  # told, no longer counted
            (("state",), (3, 3, True, 0, False)),
        ],
    ),
    "opening_starts_the_counts_again": (
        """A connection that opens resets attempts and retries; a lost one numbers retry 1 and is not an attempt.""",
        {"max_attempts": 3},
        [
            (("attempt failed", REFUSED), ATTEMPT),
            (("attempt failed", REFUSED), ATTEMPT),
            (("opened",), OPENED),
            (("state",), (0, 0, False, 0, False)),
            (("disconnected", "going away"), LOST),
            (("state",), (0, 1, False, 0, False)),
            (("attempt failed", REFUSED), ATTEMPT),
            (("attempt failed", REFUSED), ATTEMPT),
            (("state",), (2, 3, False, 0, False)),
            (("attempt failed", REFUSED), [*ATTEMPT, ("give up",)]),
        ],
    ),
    "queue_keeps_the_newest": (
        """Frames while away are queued, the oldest dropped: the owner told each time, the log once per outage.""",
        {"queue": 2},
        [
            (("frame", b"[1]"), []),
            (("frame", b"[2]"), []),
            (("frame", b"[3]"), [FULL, DROPPED]),
            (("frame", b"[4]"), [DROPPED]),
            (("state",), (0, 0, False, 2, False)),
            (("opened",), [("log", "info", CONNECTED[2].replace("0 queued", "2 queued")), *OPENED[1:]]),
            (
                ("flushed", 10.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: 2 frames for secondary were dropped while it was away or stalled (queue full)",
                    )
                ],
            ),
            (("state",), (0, 0, False, 0, False)),
            (("frame", b"[5]"), []),
            (("frame", b"[6]"), []),
            (("frame", b"[7]"), [FULL, DROPPED]),  # a new outage: logged again
        ],
    ),
    "stall_counted_once_and_ended_by_a_flush": (
        """A full buffer starts one stall (counted, logged) until the queue is flushed; a stall past its timeout drops.""",
        {},
        [
            (("buffer full", 100.0, 1048576), STALL),
            (("buffer full", 101.0, 1048576), []),
            (("state",), (0, 0, False, 0, True)),
            (("buffer drained",), [("flush",)]),
            (("flushed", 102.5), [("log", "info", "station CP_1: secondary takes frames again after a 2.5 s stall")]),
            (("state",), (0, 0, False, 0, False)),
            (("buffer full", 200.0, 1048576), STALL),
            (
                ("buffer stalled", 30.0),
                [
                    (
                        "log",
                        "warn",
                        f"station CP_1: secondary ({URL}) has not taken its unsent frames in 30 s (stalled):"
                        " dropping the connection and reconnecting",
                    ),
                    ("drop",),
                ],
            ),
            (("disconnected", "going away"), LOST),
            (("state",), (0, 1, False, 0, False)),  # the stall ended with the connection
        ],
    ),
    "stopping_silences_the_link": (
        """Once stopping: the queue dropped, nothing queued, no attempt told or counted, no giving up.""",
        {"max_attempts": 1},
        [
            (("frame", b"[1]"), []),
            (("buffer full", 5.0, 1048576), STALL),
            (("stop",), None),
            (("state",), (0, 0, False, 0, False)),
            (("frame", b"[2]"), []),
            (("attempt failed", "cancelled"), []),
            (("give up",), []),
            (("state",), (0, 0, False, 0, False)),
        ],
    ),
}


class UpstreamLinkStateTests(SynchronousTestCase):
    """The link's rules, case by case."""


add_table_tests(UpstreamLinkStateTests, CASES, link_for, effects_of)


POLICY = ReconnectPolicy(initial_delay=5.0, factor=2.0, max_delay=12.0, max_attempts=10)
# (policy, retry, jitter) -> seconds: initial_delay * factor^(n-1), capped at max_delay, less up to 20%.
DELAYS = [
    (POLICY, 1, 0.0, 5.0),
    (POLICY, 2, 0.0, 10.0),
    (POLICY, 3, 0.0, 12.0),
    (POLICY, 50, 0.0, 12.0),
    (POLICY, 1, 0.5, 4.5),
    (POLICY, 3, 0.999, 12.0 * (1 - 0.2 * 0.999)),
    (POLICY, 0, 0.0, 5.0),  # no retry counted yet (a report out of order): the first delay
    (ReconnectPolicy(initial_delay=0.5, factor=1.5, max_delay=60.0), 4, 0.0, 0.5 * 1.5**3),
    (ReconnectPolicy(initial_delay=1.0, factor=1.0, max_delay=1.0), 1000, 0.25, 0.95),
    (ReconnectPolicy(initial_delay=1.0, factor=1e6, max_delay=30.0), 500, 0.0, 30.0),  # no overflow
]


class BackoffTests(SynchronousTestCase):
    def test_documented_delays(self):
        """The n-th retry waits initial_delay * factor^(n-1), capped at max_delay, less up to 20% jitter."""
        for policy, retry, jitter, expected in DELAYS:
            self.assertAlmostEqual(backoff_delay(policy, retry, jitter), expected, places=9, msg=(policy, retry, jitter))

    def test_pure_parts(self):
        """The power of the factor is the retry number less one, within 0..64; the jitter takes at most a fifth off."""
        self.assertEqual([backoff_exponent(retry) for retry in (-1, 0, 1, 2, 65, 66, 10**6)], [0, 0, 0, 1, 64, 64, 64])
        self.assertEqual((jittered(10.0, 0.0), jittered(10.0, 0.5)), (10.0, 9.0))
