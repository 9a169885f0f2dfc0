"""
The relaying rules of the docs (docs/explanation/relaying.rst, including "What the proxy
does that a naive relay does not", and docs/explanation/failover.rst) as a table: frames
as JSON text and link or timer events in, the effects L{StationRelay} returns out, written as plain tuples:

    ("send", target, text)    ("close", code, reason)    ("event", name, *args)
    ("log", level, text as formatted)    ("timer", deadline)

In events, a frame is written as "<type> <message id>" and a payload as its text.
Subprotocol choice is tested with the handshake (tests/unit/test_relay_connections.py).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.effects import Close, Log, Send, Timer
from ocppproxy.core.observer import ProxyEvent
from ocppproxy.core.ocppj import Frame, parse_frame
from ocppproxy.core.redact import Redactor
from ocppproxy.core.routing import StationRelay
from ocppproxy.core.transactions import TransactionStore

from ..tables import add_table_tests

P, S, ST = "primary", "secondary", "station"
URLS = {P: "ws://central.example/ocpp/CP_1", S: "ws://backup.example/ocpp/CP_1"}
BOTH = {"upstreams": (P, S)}
ONLY_PRIMARY = {"upstreams": (P,)}
FAILOVER = {"upstreams": (P, S), "failover": True}

HEARTBEAT = '[2,"h1","Heartbeat",{}]'
ANSWER_P = '[3,"h1",{"currentTime":"2026-12-03T08:00:00Z","by":"primary"}]'
ANSWER_S = '[3,"h1",{"currentTime":"2026-12-03T08:00:00Z","by":"secondary"}]'
RESET_P = '[2,"u1","Reset",{"type":"Soft"}]'
TRIGGER_S = '[2,"u2","TriggerMessage",{"requestedMessage":"Heartbeat"}]'


LATE = "primary answer to no pending station CALL (late or unknown)"


class _Anything:
    """Stands for an effect a row does not check (it is checked in the rows about it)."""

    def __eq__(self, other):
        return True

    def __repr__(self):
        return "ANY"


ANY = _Anything()


def busy(message_id):
    """The CALLERROR for an upstream CALL that waited for the station longer than the 40 s timeout."""
    return f'[4, "{message_id}", "GenericError", "the station was busy with another CALL for 40 s", {{}}]'


def frame_event(name, text, *, upstream=None, station="CP_1"):
    """The observer event every parsed frame raises: station_frame, or upstream_frame with the upstream."""
    parsed = parse_frame(text)
    rendered = f"{parsed.kind_name} {parsed.message_id}"
    if upstream is None:
        return ("event", name, station, rendered, text)
    return ("event", name, station, upstream, rendered, text)


def station_frame(text):
    return frame_event("station_frame", text)


def upstream_frame(upstream, text):
    return frame_event("upstream_frame", text, upstream=upstream)


def plain(effect):
    """An effect as the tables write it."""
    if isinstance(effect, Send):
        return ("send", effect.target, effect.payload.decode())
    if isinstance(effect, Close):
        return ("close", effect.code, effect.reason)
    if isinstance(effect, Log):
        return ("log", effect.level, effect.text.format(**effect.fields))
    if isinstance(effect, Timer):
        return ("timer", effect.deadline)
    assert isinstance(effect, ProxyEvent), effect
    told = _Told()
    effect.tell(told)
    name, told_args = told.told
    args = []
    for arg in told_args:
        if isinstance(arg, Frame):
            arg = f"{arg.kind_name} {arg.message_id}"
        elif isinstance(arg, bytes):
            arg = arg.decode()
        args.append(arg)
    return ("event", name, *args)


class _Told:
    """Takes note of the one observer method an event calls, and its arguments."""

    def __getattr__(self, name):
        def method(*args):
            self.told = (name, args)

        return method


def run_step(relay, step):
    """Feed one input row to C{relay}; returns its effects."""
    what, *args = step
    if what == "station":
        text, now = args
        return relay.from_station(text.encode(), now)
    if what == "station binary":
        return relay.from_station(b"\x00\x01", args[0], True)
    if what in (P, S):
        text, now = args
        return relay.from_upstream(what, text.encode(), now)
    if what == "connected":
        return relay.upstream_connected(*args)
    if what == "disconnected":
        return relay.upstream_disconnected(*args)
    if what == "attempt failed":
        return relay.upstream_attempt_failed(*args)
    if what == "gave up":
        return relay.upstream_gave_up(*args)
    if what == "queue full":
        return relay.frame_dropped(*args)
    if what == "expire":
        return relay.expire(*args)
    if what == "opened":
        return relay.station_opened(*args)
    if what == "closed":
        return relay.station_closed(*args)
    if what == "closing":
        return relay.closing(*args)
    raise AssertionError(f"unknown step {what!r}")


def connected(*names, now=0.0):
    """Rows connecting C{names} (their effects checked in the cases that are about them)."""
    return [(("connected", name, now), None) for name in names]


# Each case: (docstring, relay settings, rows). A row is (input, expected effects); None
# as expected effects: not checked (set-up rows).
CASES = {
    # --- How it relays
    "call_goes_to_every_upstream": (
        "A station CALL goes to the primary and the secondary, byte for byte, and is reported.",
        BOTH,
        [(("station", HEARTBEAT, 1.0), [("send", P, HEARTBEAT), ("send", S, HEARTBEAT), station_frame(HEARTBEAT)])],
    ),
    "call_with_only_a_primary": (
        "Without a secondary, a station CALL goes to the primary only.",
        ONLY_PRIMARY,
        [(("station", HEARTBEAT, 1.0), [("send", P, HEARTBEAT), station_frame(HEARTBEAT)])],
    ),
    "call_sent_whitespace_kept": (
        "A frame is relayed as received, spaces and key order included (decoded to route, never re-encoded).",
        BOTH,
        [
            (
                ("station", '[2, "h2", "Heartbeat", {"b": 1, "a": 2}]', 0.0),
                [
                    ("send", P, '[2, "h2", "Heartbeat", {"b": 1, "a": 2}]'),
                    ("send", S, '[2, "h2", "Heartbeat", {"b": 1, "a": 2}]'),
                    station_frame('[2, "h2", "Heartbeat", {"b": 1, "a": 2}]'),
                ],
            )
        ],
    ),
    "send_frame_goes_to_every_upstream": (
        "An OCPP 2.1 SEND from the station goes to every upstream and waits for no answer.",
        BOTH,
        [
            (
                ("station", '[6,"s1","NotifyPeriodicEventStream",{}]', 0.0),
                [
                    ("send", P, '[6,"s1","NotifyPeriodicEventStream",{}]'),
                    ("send", S, '[6,"s1","NotifyPeriodicEventStream",{}]'),
                    station_frame('[6,"s1","NotifyPeriodicEventStream",{}]'),
                ],
            ),
            (
                (P, '[3,"s1",{}]', 1.0),
                [
                    ("log", "warn", "station CP_1: CALLRESULT s1 from primary dropped: " + LATE),
                    upstream_frame(P, '[3,"s1",{}]'),
                ],
            ),
        ],
    ),
    "send_frame_from_upstream_not_relayed": (
        "A SEND from a central system is consumed: nothing reaches the station.",
        BOTH,
        [(((P, '[6,"s2","X",{}]', 0.0)), [upstream_frame(P, '[6,"s2","X",{}]')])],
    ),
    "only_primary_answer_reaches_station": (
        "The secondary's answer is consumed, the primary's goes to the station.",
        BOTH,
        [
            (("station", HEARTBEAT, 0.0), None),
            ((S, ANSWER_S, 1.0), [upstream_frame(S, ANSWER_S)]),
            ((P, ANSWER_P, 2.0), [("send", ST, ANSWER_P), upstream_frame(P, ANSWER_P)]),
        ],
    ),
    "primary_error_answers_reach_station": (
        "The primary's CALLERROR and OCPP 2.1 CALLRESULTERROR answering station CALLs go to the station.",
        BOTH,
        [
            (("station", '[2,"e1","Authorize",{"idTag":"T"}]', 0.0), None),
            (("station", '[2,"e2","Authorize",{"idTag":"T"}]', 0.0), None),
            (
                (P, '[4,"e1","InternalError","x",{}]', 1.0),
                [("send", ST, '[4,"e1","InternalError","x",{}]'), upstream_frame(P, '[4,"e1","InternalError","x",{}]')],
            ),
            (
                (P, '[5,"e2","InternalError","x",{}]', 1.0),
                [("send", ST, '[5,"e2","InternalError","x",{}]'), upstream_frame(P, '[5,"e2","InternalError","x",{}]')],
            ),
        ],
    ),
    "upstream_call_reaches_station_and_answer_goes_back_to_asker": (
        "A CALL from the primary reaches the station; the station's answer goes to the primary only.",
        BOTH,
        [
            ((P, RESET_P, 0.0), [("send", ST, RESET_P), ("timer", 40.0), upstream_frame(P, RESET_P)]),
            (
                ("station", '[3,"u1",{"status":"Accepted"}]', 1.0),
                [
                    ("send", P, '[3,"u1",{"status":"Accepted"}]'),
                    ("timer", None),
                    station_frame('[3,"u1",{"status":"Accepted"}]'),
                ],
            ),
        ],
    ),
    # --- One central system, as the station sees it
    "upstream_calls_one_at_a_time": (
        "The secondary's CALL waits while the primary's is outstanding, and goes out when the station answers.",
        BOTH,
        [
            ((P, RESET_P, 0.0), [("send", ST, RESET_P), ("timer", 40.0), upstream_frame(P, RESET_P)]),
            (
                (S, TRIGGER_S, 5.0),
                [
                    (
                        "log",
                        "info",
                        "station CP_1: TriggerMessage u2 from secondary waits until the station has answered an"
                        " earlier CALL",
                    ),
                    ("timer", 40.0),
                    upstream_frame(S, TRIGGER_S),
                ],
            ),
            (
                ("station", '[3,"u1",{"status":"Accepted"}]', 10.0),
                [
                    ("send", P, '[3,"u1",{"status":"Accepted"}]'),
                    ("send", ST, TRIGGER_S),
                    ("timer", 50.0),
                    station_frame('[3,"u1",{"status":"Accepted"}]'),
                ],
            ),
            (
                ("station", '[3,"u2",{"status":"Accepted"}]', 11.0),
                [
                    ("send", S, '[3,"u2",{"status":"Accepted"}]'),
                    ("timer", None),
                    station_frame('[3,"u2",{"status":"Accepted"}]'),
                ],
            ),
        ],
    ),
    "same_message_id_from_both_upstreams": (
        "Both upstreams use id 1: never rewritten, each answer goes to its own upstream.",
        BOTH,
        [
            ((P, '[2,"1","Reset",{}]', 0.0), None),
            ((S, '[2,"1","Reset",{}]', 0.0), None),
            (
                ("station", '[3,"1",{"n":1}]', 1.0),
                [
                    ("send", P, '[3,"1",{"n":1}]'),
                    ("send", ST, '[2,"1","Reset",{}]'),
                    ("timer", 41.0),
                    station_frame('[3,"1",{"n":1}]'),
                ],
            ),
            (
                ("station", '[3,"1",{"n":2}]', 2.0),
                [("send", S, '[3,"1",{"n":2}]'), ("timer", None), station_frame('[3,"1",{"n":2}]')],
            ),
        ],
    ),
    "waiting_call_times_out_with_generic_error": (
        "A CALL that waits longer than pending_call_timeout is answered to its upstream with GenericError.",
        BOTH,
        [
            ((P, RESET_P, 0.0), None),
            ((S, TRIGGER_S, 1.0), None),
            (
                ("expire", 41.0),
                [("send", S, busy("u2")), ("timer", None)],
            ),
        ],
    ),
    "outstanding_call_times_out_and_its_late_answer_is_dropped": (
        "An upstream CALL unanswered for pending_call_timeout is forgotten: the next goes out, the late answer is dropped.",
        BOTH,
        [
            ((P, RESET_P, 0.0), None),
            ((S, TRIGGER_S, 30.0), None),
            (("expire", 40.0), [("send", ST, TRIGGER_S), ("timer", 80.0)]),
            (
                ("station", '[3,"u1",{}]', 41.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: CALLRESULT u1 dropped: answer to no outstanding upstream CALL (late or unknown)",
                    ),
                    ("timer", 80.0),
                    station_frame('[3,"u1",{}]'),
                ],
            ),
        ],
    ),
    "waiting_calls_are_bounded": (
        "Beyond 100 CALLs waiting for the station, the next is refused at once with GenericError.",
        BOTH,
        [((P, RESET_P, 0.0), None)]
        + [((S, f'[2,"w{n}","TriggerMessage",{{}}]', 0.0), None) for n in range(100)]
        + [
            (
                (S, '[2,"w100","TriggerMessage",{}]', 0.0),
                [
                    (
                        "log",
                        "info",
                        "station CP_1: TriggerMessage w100 from secondary refused by the proxy (not allowed, or too"
                        " many waiting)",
                    ),
                    ("send", S, '[4, "w100", "GenericError", "too many CALLs waiting for the station", {}]'),
                    ("timer", 40.0),
                    upstream_frame(S, '[2,"w100","TriggerMessage",{}]'),
                ],
            )
        ],
    ),
    # --- Bounded bookkeeping
    "late_answer_dropped_with_warning": (
        "The primary's answer after pending_call_timeout is logged and dropped.",
        BOTH,
        [
            (("station", HEARTBEAT, 0.0), None),
            (
                (P, ANSWER_P, 40.0),
                [
                    ("log", "warn", "station CP_1: CALLRESULT h1 from primary dropped: " + LATE),
                    upstream_frame(P, ANSWER_P),
                ],
            ),
        ],
    ),
    "unknown_and_second_answers_dropped": (
        "An answer to an id the station never used, or a second answer, is dropped with a warning.",
        ONLY_PRIMARY,
        [
            (("station", HEARTBEAT, 0.0), None),
            ((P, ANSWER_P, 1.0), [("send", ST, ANSWER_P), upstream_frame(P, ANSWER_P)]),
            (
                (P, ANSWER_P, 2.0),
                [
                    ("log", "warn", "station CP_1: CALLRESULT h1 from primary dropped: " + LATE),
                    upstream_frame(P, ANSWER_P),
                ],
            ),
            (
                (P, '[3,"never",{}]', 3.0),
                [
                    ("log", "warn", "station CP_1: CALLRESULT never from primary dropped: " + LATE),
                    upstream_frame(P, '[3,"never",{}]'),
                ],
            ),
        ],
    ),
    "reused_id_gets_both_answers": (
        "A station that reuses a message id before its answer gets both answers.",
        ONLY_PRIMARY,
        [
            (("station", HEARTBEAT, 0.0), None),
            (("station", HEARTBEAT, 1.0), None),
            ((P, ANSWER_P, 2.0), [("send", ST, ANSWER_P), upstream_frame(P, ANSWER_P)]),
            ((P, ANSWER_P, 2.0), [("send", ST, ANSWER_P), upstream_frame(P, ANSWER_P)]),
        ],
    ),
    "pending_station_calls_bounded": (
        "Beyond pending_limit unanswered station CALLs the oldest is forgotten: its answer is then late.",
        {"upstreams": (P,), "pending_limit": 2},
        [
            (("station", '[2,"a","Heartbeat",{}]', 0.0), None),
            (("station", '[2,"b","Heartbeat",{}]', 0.0), None),
            (("station", '[2,"c","Heartbeat",{}]', 0.0), None),
            (
                (P, '[3,"a",{}]', 1.0),
                [
                    ("log", "warn", "station CP_1: CALLRESULT a from primary dropped: " + LATE),
                    upstream_frame(P, '[3,"a",{}]'),
                ],
            ),
            ((P, '[3,"c",{}]', 1.0), [("send", ST, '[3,"c",{}]'), upstream_frame(P, '[3,"c",{}]')]),
        ],
    ),
    # --- Upstream CALL policy
    "policy_refuses_an_action_with_security_error": (
        "A CALL whose action upstream_calls does not allow gets a SecurityError CALLERROR and never reaches the station.",
        {"upstreams": (P, S), "call_policies": {S: frozenset({"GetConfiguration"})}},
        [
            (
                (S, '[2,"r1","Reset",{}]', 0.0),
                [
                    (
                        "log",
                        "info",
                        "station CP_1: Reset r1 from secondary refused by the proxy (not allowed, or too many waiting)",
                    ),
                    (
                        "send",
                        S,
                        '[4, "r1", "SecurityError", "Reset from the secondary central system is not allowed by the'
                        ' proxy", {}]',
                    ),
                    ("timer", None),
                    upstream_frame(S, '[2,"r1","Reset",{}]'),
                ],
            ),
            (
                (S, '[2,"g1","GetConfiguration",{}]', 0.0),
                [
                    ("send", ST, '[2,"g1","GetConfiguration",{}]'),
                    ("timer", 40.0),
                    upstream_frame(S, '[2,"g1","GetConfiguration",{}]'),
                ],
            ),
        ],
    ),
    "policy_none_refuses_everything": (
        "upstream_calls: none refuses every CALL of that upstream; the other is unaffected.",
        {"upstreams": (P, S), "call_policies": {S: frozenset()}},
        [
            ((S, '[2,"g2","GetConfiguration",{}]', 0.0), [ANY, ANY, ("timer", None), ANY]),
            (
                (P, '[2,"g3","GetConfiguration",{}]', 0.0),
                [("send", ST, '[2,"g3","GetConfiguration",{}]'), ("timer", 40.0), ANY],
            ),
        ],
    ),
    # --- Bad frames
    "bad_call_from_station_answered_in_ocpp16_words": (
        "A malformed CALL whose id can be read gets FormationViolation (OCPP 1.6); nothing is relayed.",
        {"upstreams": (P, S), "subprotocol": "ocpp1.6"},
        [
            (
                ("station", '[2,"b1","Heartbeat"]', 0.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1 sent a bad frame (CALL must have 4 elements, has 3), answered with a CALLERROR:"
                        ' [2,"b1","Heartbeat"]',
                    ),
                    ("send", ST, '[4, "b1", "FormationViolation", "malformed CALL", {}]'),
                ],
            )
        ],
    ),
    "bad_call_from_station_answered_in_ocpp2_words": (
        "In OCPP 2.x the same CALLERROR says FormatViolation.",
        {"upstreams": (P,), "subprotocol": "ocpp2.0.1"},
        [(("station", '[2,"b2"]', 0.0), [ANY, ("send", ST, '[4, "b2", "FormatViolation", "malformed CALL", {}]')])],
    ),
    "unreadable_frame_from_station_only_logged": (
        "Text that is not JSON gets a warning with a shortened copy, and nothing else.",
        BOTH,
        [(("station", "hello", 0.0), [("log", "warn", "station CP_1 sent a bad frame (not JSON): hello")])],
    ),
    "unknown_message_type_from_station_only_logged": (
        "An unknown message type is not relayed, and not answered.",
        BOTH,
        [
            (
                ("station", '[7,"x",{}]', 0.0),
                [("log", "warn", 'station CP_1 sent a bad frame (unknown message type 7): [7,"x",{}]')],
            )
        ],
    ),
    "bad_call_from_upstream_answered_to_that_upstream": (
        "The same rules apply to an upstream: its bad CALL is answered to it, not relayed.",
        BOTH,
        [
            (
                (S, '[2,"b3",5,{}]', 0.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: secondary sent a bad frame (action is not a non-empty string), answered with a"
                        ' CALLERROR: [2,"b3",5,{}]',
                    ),
                    ("send", S, '[4, "b3", "FormationViolation", "malformed CALL", {}]'),
                ],
            )
        ],
    ),
    "binary_frame_from_station_closes_1003": (
        "A binary frame from the station closes it with 1003.",
        BOTH,
        [
            (
                ("station binary", 0.0),
                [
                    ("log", "warn", "station CP_1 sent a binary frame: closing with 1003"),
                    ("close", 1003, "OCPP-J frames are text"),
                ],
            )
        ],
    ),
    # --- Links: no upstream left
    "no_upstream_left_closes_1013": (
        "When the only connected upstream drops, the station is closed with 1013.",
        BOTH,
        [
            (("connected", P, 0.0), [("event", "upstream_connected", "CP_1", P, URLS[P])]),
            (
                ("disconnected", P, "connection lost", 5.0),
                [
                    ("event", "upstream_disconnected", "CP_1", P, URLS[P], "connection lost"),
                    ("close", 1013, "no central system connected, try again later"),
                ],
            ),
        ],
    ),
    "one_upstream_left_keeps_station": (
        "While the secondary is connected, losing the primary does not close the station; losing both does.",
        BOTH,
        [
            *connected(P, S),
            (("disconnected", P, "gone", 1.0), [("event", "upstream_disconnected", "CP_1", P, URLS[P], "gone")]),
            (
                ("disconnected", S, "gone", 2.0),
                [
                    ("event", "upstream_disconnected", "CP_1", S, URLS[S], "gone"),
                    ("close", 1013, "no central system connected, try again later"),
                ],
            ),
        ],
    ),
    "given_up_with_nothing_connected_closes_1013": (
        "An upstream given up while no upstream is connected closes the station with 1013.",
        BOTH,
        [
            (
                ("attempt failed", S, "refused", 0.0),
                [("event", "upstream_attempt_failed", "CP_1", S, URLS[S], "refused")],
            ),
            (("gave up", S), [("close", 1013, "no central system connected, try again later")]),
        ],
    ),
    "given_up_with_the_other_connected_keeps_station": (
        "An upstream given up while the other is connected changes nothing.",
        BOTH,
        [*connected(P), (("gave up", S), [])],
    ),
    "nothing_closed_twice": (
        "Once the station is closing, no upstream loss asks for another close.",
        BOTH,
        [
            *connected(P),
            (("closing", 1.0), [("timer", None)]),
            (("disconnected", P, "gone", 2.0), [("event", "upstream_disconnected", "CP_1", P, URLS[P], "gone")]),
        ],
    ),
    "queue_full_reported": (
        "A frame dropped from a full queue is reported to the observer.",
        BOTH,
        [(("queue full", S), [("event", "frame_dropped", "CP_1", S)])],
    ),
    "station_open_and_close": (
        "The station's arrival and departure are logged and reported; after it, no expiry timer.",
        BOTH,
        [
            (
                ("opened", "tcp4:127.0.0.1:5000"),
                [
                    ("log", "info", "station CP_1 connected from tcp4:127.0.0.1:5000"),
                    ("event", "station_connected", "CP_1", "tcp4:127.0.0.1:5000"),
                ],
            ),
            (
                ("closed", 1000, None, True, 9.0),
                [
                    ("log", "info", "station CP_1 disconnected (code 1000, no reason)"),
                    ("event", "station_disconnected", "CP_1", 1000, None),
                    ("timer", None),
                ],
            ),
            ((P, RESET_P, 10.0), [("send", ST, RESET_P), ("timer", None), upstream_frame(P, RESET_P)]),
        ],
    ),
    "station_never_opened_is_not_reported": (
        "A connection closed before its handshake completed is logged, not reported as a disconnection.",
        BOTH,
        [
            (
                ("closed", None, None, False, 1.0),
                [("log", "info", "station CP_1 disconnected (code None, no reason)"), ("timer", None)],
            )
        ],
    ),
    # --- Failover
    "failover_off_secondary_never_answers": (
        "Without failover the secondary's answers never reach the station, even with the primary away.",
        BOTH,
        [
            *connected(P, S),
            (("disconnected", P, "gone", 1.0), [("event", "upstream_disconnected", "CP_1", P, URLS[P], "gone")]),
            (("station", HEARTBEAT, 2.0), None),
            ((S, ANSWER_S, 3.0), [upstream_frame(S, ANSWER_S)]),
        ],
    ),
    "failover_primary_connected_secondary_held": (
        "With failover and the primary connected, the secondary's answer is held and the primary's relayed.",
        FAILOVER,
        [
            *connected(P, S),
            (("station", HEARTBEAT, 0.0), None),
            ((S, ANSWER_S, 1.0), [upstream_frame(S, ANSWER_S)]),
            ((P, ANSWER_P, 2.0), [("send", ST, ANSWER_P), upstream_frame(P, ANSWER_P)]),
            (
                ("disconnected", P, "gone", 3.0),
                [
                    ("event", "upstream_disconnected", "CP_1", P, URLS[P], "gone"),
                    ("log", "warn", "station CP_1: primary away, the secondary answers (failover)"),
                    ("event", "failover_started", "CP_1"),
                ],
            ),
        ],
    ),
    "failover_held_answer_released_when_primary_drops": (
        "A CALL pending at the primary when it drops gets the secondary's held answer, once; failover starts.",
        FAILOVER,
        [
            *connected(P, S),
            (("station", HEARTBEAT, 0.0), None),
            ((S, ANSWER_S, 1.0), [upstream_frame(S, ANSWER_S)]),
            (
                ("disconnected", P, "gone", 2.0),
                [
                    ("send", ST, ANSWER_S),
                    ("event", "upstream_disconnected", "CP_1", P, URLS[P], "gone"),
                    ("log", "warn", "station CP_1: primary away, the secondary answers (failover)"),
                    ("event", "failover_started", "CP_1"),
                ],
            ),
            (
                ("connected", P, 62.0),
                [
                    ("event", "upstream_connected", "CP_1", P, URLS[P]),
                    ("log", "info", "station CP_1: failover ended after 60 s"),
                    ("event", "failover_ended", "CP_1", 60.0),
                ],
            ),
            (
                (P, ANSWER_P, 63.0),
                [
                    ("log", "warn", "station CP_1: CALLRESULT h1 from primary dropped: " + LATE),
                    upstream_frame(P, ANSWER_P),
                ],
            ),
        ],
    ),
    "failover_primary_away_secondary_answers_at_once": (
        "With the primary away, the secondary's answer goes to the station at once; the primary's later one is dropped.",
        FAILOVER,
        [
            (("connected", S, 0.0), [("event", "upstream_connected", "CP_1", S, URLS[S])]),
            (
                ("attempt failed", P, "refused", 1.0),
                [
                    ("log", "warn", "station CP_1: primary away, the secondary answers (failover)"),
                    ("event", "failover_started", "CP_1"),
                    ("event", "upstream_attempt_failed", "CP_1", P, URLS[P], "refused"),
                ],
            ),
            (("station", HEARTBEAT, 2.0), None),
            ((S, ANSWER_S, 3.0), [("send", ST, ANSWER_S), upstream_frame(S, ANSWER_S)]),
            (("connected", P, 4.0), None),
            ((P, ANSWER_P, 5.0), [upstream_frame(P, ANSWER_P)]),
        ],
    ),
    "failover_ends_when_station_leaves": (
        "A station leaving during failover ends it, with its duration.",
        FAILOVER,
        [
            *connected(S),
            (("attempt failed", P, "refused", 10.0), None),
            (
                ("closed", 1000, "bye", True, 40.0),
                [
                    ("log", "info", "station CP_1 disconnected (code 1000, bye)"),
                    ("event", "station_disconnected", "CP_1", 1000, "bye"),
                    ("timer", None),
                    ("log", "info", "station CP_1: failover ended after 30 s"),
                    ("event", "failover_ended", "CP_1", 30.0),
                ],
            ),
        ],
    ),
    "failover_needs_the_secondary": (
        "The primary failing while the secondary is not connected starts no failover.",
        FAILOVER,
        [
            (
                ("attempt failed", P, "refused", 1.0),
                [("event", "upstream_attempt_failed", "CP_1", P, URLS[P], "refused")],
            )
        ],
    ),
    # --- OCPP 1.6 transaction ids for the secondary
    "transaction_ids_translated_for_the_secondary": (
        "After StartTransaction, the secondary sees its own transactionId, and its RemoteStop reaches the station"
        " with the primary's.",
        {"upstreams": (P, S), "subprotocol": "ocpp1.6"},
        [
            (("station", '[2,"t1","StartTransaction",{"connectorId":1}]', 0.0), None),
            ((P, '[3,"t1",{"transactionId":201}]', 1.0), None),
            ((S, '[3,"t1",{"transactionId":7}]', 1.0), None),
            (
                ("station", '[2,"m1","MeterValues",{"transactionId":201}]', 2.0),
                [
                    ("send", P, '[2,"m1","MeterValues",{"transactionId":201}]'),
                    ("send", S, '[2,"m1","MeterValues",{"transactionId":7}]'),
                    station_frame('[2,"m1","MeterValues",{"transactionId":201}]'),
                ],
            ),
            (
                (S, '[2,"r9","RemoteStopTransaction",{"transactionId":7}]', 3.0),
                [
                    ("send", ST, '[2,"r9","RemoteStopTransaction",{"transactionId":201}]'),
                    ("timer", 43.0),
                    upstream_frame(S, '[2,"r9","RemoteStopTransaction",{"transactionId":201}]'),
                ],
            ),
            (
                ("station", '[2,"s9","StopTransaction",{"transactionId":201}]', 4.0),
                [
                    ("send", P, '[2,"s9","StopTransaction",{"transactionId":201}]'),
                    ("send", S, '[2,"s9","StopTransaction",{"transactionId":7}]'),
                    station_frame('[2,"s9","StopTransaction",{"transactionId":201}]'),
                ],
            ),
            (
                ("station", '[2,"m2","MeterValues",{"transactionId":201}]', 5.0),
                [
                    ("send", P, '[2,"m2","MeterValues",{"transactionId":201}]'),
                    ("send", S, '[2,"m2","MeterValues",{"transactionId":201}]'),
                    station_frame('[2,"m2","MeterValues",{"transactionId":201}]'),
                ],
            ),
        ],
    ),
    "transaction_ids_not_translated_in_ocpp2": (
        "OCPP 2.0.1 stations choose their own ids: nothing is translated.",
        {"upstreams": (P, S), "subprotocol": "ocpp2.0.1"},
        [
            (("station", '[2,"t1","StartTransaction",{"connectorId":1}]', 0.0), None),
            ((P, '[3,"t1",{"transactionId":201}]', 1.0), None),
            ((S, '[3,"t1",{"transactionId":7}]', 1.0), None),
            (
                ("station", '[2,"m1","MeterValues",{"transactionId":201}]', 2.0),
                [
                    ("send", P, '[2,"m1","MeterValues",{"transactionId":201}]'),
                    ("send", S, '[2,"m1","MeterValues",{"transactionId":201}]'),
                    ANY,
                ],
            ),
        ],
    ),
    # --- debug log lines
    "debug_names_where_each_frame_goes": (
        "At log level debug, each station frame's destination and each consumed answer are logged.",
        {"upstreams": (P, S), "debug": True},
        [
            (
                ("station", HEARTBEAT, 0.0),
                [
                    ("log", "debug", f"station CP_1 -> primary,secondary: {HEARTBEAT}"),
                    ("send", P, HEARTBEAT),
                    ("send", S, HEARTBEAT),
                    station_frame(HEARTBEAT),
                ],
            ),
            (
                (S, ANSWER_S, 1.0),
                [
                    (
                        "log",
                        "debug",
                        "station CP_1: CALLRESULT h1 from secondary consumed: answer from secondary: only the primary"
                        " answers the station",
                    ),
                    upstream_frame(S, ANSWER_S),
                ],
            ),
            (
                ("station", '[3,"nobody",{}]', 2.0),
                [
                    ("log", "debug", 'station CP_1 -> nowhere: [3,"nobody",{}]'),
                    ANY,
                    ("timer", None),
                    station_frame('[3,"nobody",{}]'),
                ],
            ),
        ],
    ),
    # --- what log lines quote of a frame: credentials and redact keys masked
    "debug_line_masks_credentials": (
        "A debug line quotes a frame with the station's password masked; the frame relayed keeps it.",
        {"upstreams": (P,), "debug": True},
        [
            (
                ("station", '[2,"c1","X",{"key":"AuthorizationKey","value":"s3cret"}]', 0.0),
                [
                    ("log", "debug", 'station CP_1 -> primary: [2,"c1","X",{"key":"AuthorizationKey","value":"***"}]'),
                    ("send", P, '[2,"c1","X",{"key":"AuthorizationKey","value":"s3cret"}]'),
                    ANY,
                ],
            ),
        ],
    ),
    "debug_line_masks_redact_keys": (
        "The operator's redact keys are masked in debug lines too.",
        {"upstreams": (P,), "debug": True, "redactor": Redactor(["idTag"])},
        [
            (
                ("station", '[2,"a1","Authorize",{"idTag":"ABC"}]', 0.0),
                [
                    ("log", "debug", 'station CP_1 -> primary: [2,"a1","Authorize",{"idTag":"***"}]'),
                    ("send", P, '[2,"a1","Authorize",{"idTag":"ABC"}]'),
                    ANY,
                ],
            ),
        ],
    ),
    "bad_frame_warning_masks_credentials": (
        "The warning about a bad frame never quotes a password: masked if JSON, the frame left out if not.",
        ONLY_PRIMARY,
        [
            (
                (P, '[2,"c2","ChangeConfiguration",{"key":"AuthorizationKey","value":"s3cret"},1]', 0.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: primary sent a bad frame (CALL must have 4 elements, has 5), answered with a"
                        ' CALLERROR: [2,"c2","ChangeConfiguration",{"key":"AuthorizationKey","value":"***"},1]',
                    ),
                    ANY,
                ],
            ),
            (
                (P, '[2,"c3","ChangeConfiguration",{"key":"AuthorizationKey","value":"s3cret', 0.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: primary sent a bad frame (not JSON): (not JSON, 71 characters, not shown: it"
                        " mentions a masked key)",
                    ),
                ],
            ),
            (
                ("station", '[{"key":"AuthorizationKey","value":"s3cret"},"x",{}]', 0.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1 sent a bad frame (unknown message type of type dict):"
                        ' [{"key":"AuthorizationKey","value":"***"},"x",{}]',
                    ),
                ],
            ),
        ],
    ),
}


def relay_for(settings):
    """A StationRelay for CP_1 with the case's settings (a fresh transaction store each time)."""
    settings = dict(settings)
    upstreams = settings.pop("upstreams")
    subprotocol = settings.pop("subprotocol", "ocpp1.6")
    debug = settings.pop("debug", False)
    relay = StationRelay(
        "CP_1", {name: URLS[name] for name in upstreams}, TransactionStore(), debug=lambda: debug, **settings
    )
    relay.use_subprotocol(subprotocol)
    return relay


def effects_of(relay, step):
    """The effects of one input row, as the tables write them."""
    return [plain(effect) for effect in run_step(relay, step)]


class StationRelayRuleTests(SynchronousTestCase):
    """One test per case of CASES: the relaying rules, frames in, effects out."""


add_table_tests(StationRelayRuleTests, CASES, relay_for, effects_of)
