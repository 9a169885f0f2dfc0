"""
Which answer to a station CALL reaches the station (L{StationCallAnswers}), as a table.

Rows: ("call", id, now) the station sends a CALL; ("primary" | "secondary", id, now) that
upstream answers, expecting "relayed" or the reason it is not; ("lost", now) the primary
link drops, expecting the ids of the held answers it releases; ("back",) the primary is
connected again; ("size", n) how many CALLs are remembered.
"""

from __future__ import annotations

import itertools
import json

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.answers import LATE, StationCallAnswers

from ..tables import add_table_tests

NOT_NEEDED = "secondary answer not needed"
HELD = "secondary answer held until the primary answers"
ONLY_PRIMARY = "answer from secondary: only the primary answers the station"
ALREADY = "primary answer to a CALL the secondary already answered"


def run_row(answers, row):
    what, *args = row
    if what == "call":
        answers.station_call(*args)
        return None
    if what == "primary":
        return answers.primary_answer(*args) or "relayed"
    if what == "secondary":
        message_id, now = args
        payload = json.dumps([3, message_id, {"by": "secondary"}]).encode()
        return answers.secondary_answer(message_id, payload, now) or "relayed"
    if what == "lost":
        return [json.loads(payload)[1] for payload in answers.primary_lost(*args)]
    if what == "back":
        answers.primary_connected = True
        return None
    if what == "size":
        return len(answers)
    raise AssertionError(what)


# (docstring, settings, rows of (input, expected))
CASES = {
    "primary_answers_in_time_once": (
        "Without failover, the primary's answer in time is relayed once; a second one is late.",
        {"failover": False},
        [
            (("call", "a", 0.0), None),
            (("primary", "a", 39.0), "relayed"),
            (("primary", "a", 39.5), LATE),
        ],
    ),
    "late_primary_answer": (
        "An answer at or after the timeout is late, and the CALL is forgotten.",
        {"failover": False},
        [(("call", "a", 0.0), None), (("primary", "a", 40.0), LATE), (("size",), 0)],
    ),
    "secondary_never_answers_without_failover": (
        "Without failover the secondary's answer is consumed, primary connected or not.",
        {"failover": False},
        [
            (("call", "a", 0.0), None),
            (("lost", 0.0), []),
            (("secondary", "a", 1.0), ONLY_PRIMARY),
            (("primary", "a", 2.0), "relayed"),
        ],
    ),
    "reused_id_gets_both_answers": (
        "A CALL id reused before its answer gets two answers, then no more.",
        {"failover": False},
        [
            (("call", "a", 0.0), None),
            (("call", "a", 1.0), None),
            (("primary", "a", 2.0), "relayed"),
            (("primary", "a", 2.0), "relayed"),
            (("primary", "a", 2.0), LATE),
        ],
    ),
    "bounded_by_limit": (
        "Beyond the limit the oldest CALLs are forgotten first.",
        {"failover": False, "limit": 3},
        [
            *[(("call", f"c{n}", n * 0.1), None) for n in range(10)],
            (("size",), 3),
            (("primary", "c6", 2.0), LATE),
            (("primary", "c9", 2.0), "relayed"),
        ],
    ),
    "expired_calls_forgotten": (
        "A CALL after the timeout finds the old ones gone.",
        {"failover": False},
        [(("call", "a", 0.0), None), (("call", "b", 1.0), None), (("call", "c", 45.0), None), (("size",), 1)],
    ),
    "failover_primary_connected_secondary_held": (
        "Primary connected: the secondary's answer is held, the primary's relayed, nothing released later.",
        {"failover": True},
        [
            (("back",), None),
            (("call", "1", 0.0), None),
            (("secondary", "1", 0.5), HELD),
            (("primary", "1", 1.0), "relayed"),
            (("lost", 2.0), []),
        ],
    ),
    "failover_held_answer_released_once": (
        "The primary dropping releases the held answer, once.",
        {"failover": True},
        [
            (("back",), None),
            (("call", "3", 0.0), None),
            (("secondary", "3", 0.5), HELD),
            (("lost", 1.0), ["3"]),
            (("lost", 2.0), []),
            (("back",), None),
            (("primary", "3", 3.0), ALREADY),
        ],
    ),
    "failover_primary_away_secondary_at_once": (
        "Primary away: the secondary's answer is relayed at once, a second one is not needed.",
        {"failover": True},
        [
            (("call", "2", 0.0), None),
            (("secondary", "2", 1.0), "relayed"),
            (("secondary", "2", 1.5), NOT_NEEDED),
        ],
    ),
    "failover_held_answers_expire": (
        "A held answer older than the timeout is forgotten, not released.",
        {"failover": True},
        [
            (("back",), None),
            (("call", "7", 0.0), None),
            (("secondary", "7", 1.0), HELD),
            (("lost", 100.0), []),
            (("size",), 0),
        ],
    ),
}


def count_delivered(order):
    """How many answers one station CALL gets when primary, secondary and the primary's drop come in C{order}."""
    answers = StationCallAnswers(40.0, 1000, failover=True)
    answers.primary_connected = True
    answers.station_call("x", 0.0)
    delivered = 0
    for step in order:
        if step == "lost":
            delivered += len(answers.primary_lost(0.0))
        elif step == "primary":
            delivered += answers.primary_answer("x", 0.0) is None
        else:
            delivered += answers.secondary_answer("x", b'[3,"x",{}]', 0.0) is None
    return delivered


def answers_for(settings):
    return StationCallAnswers(40.0, settings.get("limit", 1000), settings["failover"])


class StationCallAnswerTests(SynchronousTestCase):
    """One test per case of CASES, and the rule that holds whatever the order."""

    def test_never_two_answers(self):
        """Whatever the order of the two answers and the primary dropping, the station gets exactly one."""
        for order in itertools.permutations(["primary", "secondary", "lost"]):
            self.assertEqual(count_delivered(order), 1, order)


add_table_tests(StationCallAnswerTests, CASES, answers_for, run_row)
