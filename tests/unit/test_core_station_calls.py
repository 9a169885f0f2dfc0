"""
Upstream CALLs towards the station (L{StationBoundCalls}), as a table: one at a time, in
order, bounded, with a per-upstream policy.

Rows: ("offer", upstream, CALL text, now) expecting (outcome, sends); ("answer", text, now)
the station answers, expecting (upstream or None, sends); ("expire", now) expecting sends;
("deadline",) expecting the next deadline; ("size",) how many CALLs are kept, ("size at
most", n) whether that is n or fewer. Sends are
written (target, text).
"""

from __future__ import annotations

import itertools

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.station_calls import StationBoundCalls

from ..tables import add_table_tests

P, S, ST = "primary", "secondary", "station"


def call(message_id, action="TriggerMessage"):
    return f'[2,"{message_id}","{action}",{{}}]'


def error(message_id, code, description):
    return f'[4, "{message_id}", "{code}", "{description}", {{}}]'


BUSY = "the station was busy with another CALL for 40 s"
TOO_MANY = "too many CALLs waiting for the station"


def plain(sends):
    return [(send.target, send.payload.decode()) for send in sends]


def run_row(calls, row):
    what, *args = row
    if what == "offer":
        upstream, text, now = args
        outcome, sends = calls.offer(upstream, parse_frame(text), text.encode(), now)
        return outcome, plain(sends)
    if what == "answer":
        text, now = args
        upstream, sends = calls.answer(parse_frame(text).message_id, text.encode(), now)
        return upstream, plain(sends)
    if what == "expire":
        return plain(calls.expire(*args))
    if what == "deadline":
        return calls.next_deadline()
    if what == "size":
        return len(calls)
    if what == "size at most":
        return len(calls) <= args[0]
    raise AssertionError(what)


# (docstring, settings, rows of (input, expected))
CASES = {
    "first_call_goes_out": (
        "With nothing outstanding, an upstream CALL goes to the station at once.",
        {},
        [(("offer", P, call("1"), 0.0), ("sent", [(ST, call("1"))])), (("deadline",), 40.0)],
    ),
    "same_id_from_both_upstreams": (
        "Both upstreams use id 1 at once: the second waits; each answer goes to its own upstream.",
        {},
        [
            (("offer", P, call("1"), 0.0), ("sent", [(ST, call("1"))])),
            (("offer", S, call("1"), 0.0), ("waiting", [])),
            (("answer", '[3,"1",{"a":"p"}]', 1.0), (P, [(P, '[3,"1",{"a":"p"}]'), (ST, call("1"))])),
            (("answer", '[3,"1",{"a":"s"}]', 2.0), (S, [(S, '[3,"1",{"a":"s"}]')])),
            (("size",), 0),
        ],
    ),
    "error_answers_go_back_too": (
        "The station's CALLERROR and CALLRESULTERROR go back to the asker like a CALLRESULT.",
        {},
        [
            (("offer", S, call("21"), 0.0), ("sent", [(ST, call("21"))])),
            (("answer", '[5,"21","InternalError","oops",{}]', 1.0), (S, [(S, '[5,"21","InternalError","oops",{}]')])),
            (("offer", P, call("22"), 2.0), ("sent", [(ST, call("22"))])),
            (("answer", '[4,"22","NotSupported","",{}]', 3.0), (P, [(P, '[4,"22","NotSupported","",{}]')])),
        ],
    ),
    "unknown_answer_goes_nowhere": (
        "An answer to no outstanding CALL goes nowhere.",
        {},
        [(("offer", P, call("1"), 0.0), None), (("answer", '[3,"2",{}]', 1.0), (None, [])), (("size",), 1)],
    ),
    "waiting_too_long_gets_generic_error": (
        "A CALL that waits past the timeout gets a CALLERROR to its upstream, and goes no further.",
        {},
        [
            (("offer", P, call("1"), 0.0), None),
            (("offer", S, call("2"), 1.0), ("waiting", [])),
            (("deadline",), 40.0),
            (("expire", 41.0), [(S, error("2", "GenericError", BUSY))]),
            (("size",), 0),
        ],
    ),
    "outstanding_timeout_releases_the_next": (
        "An outstanding CALL unanswered after the timeout is forgotten; the next goes out; the late answer goes nowhere.",
        {},
        [
            (("offer", P, call("1"), 0.0), None),
            (("offer", S, call("2"), 30.0), ("waiting", [])),
            (("expire", 40.0), [(ST, call("2"))]),
            (("deadline",), 80.0),
            (("answer", '[3,"1",{}]', 41.0), (None, [])),
        ],
    ),
    "expiry_folded_into_offers": (
        "What expired meanwhile comes first in an offer's sends.",
        {},
        [
            (("offer", P, call("1"), 0.0), None),
            (("offer", S, call("2"), 1.0), None),
            (("offer", P, call("3"), 50.0), ("sent", [(S, error("2", "GenericError", BUSY)), (ST, call("3"))])),
        ],
    ),
    "waiting_is_bounded": (
        "Beyond the waiting limit a CALL is refused with a CALLERROR at once.",
        {"waiting_limit": 3},
        [
            (("offer", P, call("0"), 0.0), None),
            *[(("offer", S, call(str(n)), 0.0), ("waiting", [])) for n in (1, 2, 3)],
            (("offer", S, call("4"), 0.0), ("refused", [(S, error("4", "GenericError", TOO_MANY))])),
            (("size",), 4),
        ],
    ),
    "ten_thousand_unanswered_calls_stay_bounded": (
        "A station that never answers cannot grow the bookkeeping: at most the limit + 1 kept, none after.",
        {"waiting_limit": 3},
        [
            *itertools.chain.from_iterable(
                [(("offer", P if n % 2 else S, call(f"c{n}"), n * 0.01), None), (("size at most", 4), True)]
                for n in range(10_000)
            ),
            (("expire", 10_000.0), None),
            (("size",), 0),
        ],
    ),
    "policy_refuses_actions": (
        "A CALL whose action the upstream's policy does not allow gets SecurityError; other upstreams are not limited.",
        {"policies": {S: frozenset({"GetConfiguration"})}},
        [
            (
                ("offer", S, call("9", "Reset"), 0.0),
                (
                    "refused",
                    [
                        (
                            S,
                            error(
                                "9",
                                "SecurityError",
                                "Reset from the secondary central system is not allowed by the proxy",
                            ),
                        )
                    ],
                ),
            ),
            (("offer", S, call("10", "GetConfiguration"), 0.0), ("sent", [(ST, call("10", "GetConfiguration"))])),
            (("offer", P, call("11", "Reset"), 0.0), ("waiting", [])),
        ],
    ),
    "policy_none_refuses_all": (
        "An empty policy (upstream_calls: none) refuses every action.",
        {"policies": {P: frozenset()}},
        [
            (
                ("offer", P, call("1", "GetConfiguration"), 0.0),
                (
                    "refused",
                    [
                        (
                            P,
                            error(
                                "1",
                                "SecurityError",
                                "GetConfiguration from the primary central system is not allowed by the proxy",
                            ),
                        )
                    ],
                ),
            ),
            (("size",), 0),
        ],
    ),
}


class StationBoundCallTests(SynchronousTestCase):
    """One test per case of CASES."""


add_table_tests(StationBoundCallTests, CASES, lambda settings: StationBoundCalls(timeout=40.0, **settings), run_row)
