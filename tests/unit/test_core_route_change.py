"""
Named upstreams on a route (one primary, several mirrors) and a change of route on a
live station, as tables: inputs in, the effects L{StationRelay} returns out, written as
in tests/unit/test_core_routing.py plus ("open link", name) and ("close link", name). The
observer's station_frame / upstream_frame events (checked there) are left out here.

Inputs: ("station", text, now); (upstream name, text, now); ("connected" | "disconnected", name, ...);
("change", Route, now[, upstreams]); ("failed to open", name, reason, now); ("expire", now).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.effects import CloseLink, OpenLink
from ocppproxy.core.observer import StationFrame, UpstreamFrame
from ocppproxy.core.routes import Route, UpstreamRules
from ocppproxy.core.routing import StationRelay
from ocppproxy.core.transactions import TransactionStore

from ..tables import add_table_tests
from .test_core_routing import plain

ST = "station"
ALL = {name: UpstreamRules(f"ws://{name}.example/ocpp/") for name in ("A", "B", "C")}
ANALYTICS = UpstreamRules(
    "ws://analytics.example/", calls=frozenset(), receives=frozenset({"MeterValues", "StartTransaction"})
)
BOOT = '[2,"b1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
BOOT_REPLAY = '[2,"ocppproxy-boot-1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'


def hb(message_id):
    return f'[2,"{message_id}","Heartbeat",{{}}]'


def ok(message_id, by=None):
    return f'[3,"{message_id}",{{}}]' if by is None else f'[3,"{message_id}",{{"by":"{by}"}}]'


def start(message_id):
    return f'[2,"{message_id}","StartTransaction",{{"connectorId":1,"idTag":"T","meterStart":0}}]'


def given(message_id, transaction_id):
    return f'[3,"{message_id}",{{"transactionId":{transaction_id},"idTagInfo":{{"status":"Accepted"}}}}]'


def meter(message_id, transaction_id):
    return f'[2,"{message_id}","MeterValues",{{"connectorId":1,"transactionId":{transaction_id}}}]'


def stop(message_id, transaction_id):
    return f'[2,"{message_id}","StopTransaction",{{"transactionId":{transaction_id},"meterStop":9}}]'


def sends(text, *names):
    return [("send", name, text) for name in names]


def rendered(effect):
    if isinstance(effect, OpenLink):
        return ("open link", effect.name)
    if isinstance(effect, CloseLink):
        return ("close link", effect.name)
    return plain(effect)


def run_row(relay, row):
    what, *args = row
    if what == "station":
        effects = relay.from_station(args[0].encode(), args[1])
    elif what == "connected":
        effects = relay.upstream_connected(*args)
    elif what == "disconnected":
        effects = relay.upstream_disconnected(*args)
    elif what == "change":
        effects = relay.change_route(*args)
    elif what == "failed to open":
        effects = relay.upstream_failed_to_open(*args)
    elif what == "expire":
        effects = relay.expire(*args)
    else:
        effects = relay.from_upstream(what, args[0].encode(), args[1])
    return [
        rendered(effect)
        for effect in effects
        if not isinstance(effect, (StationFrame, UpstreamFrame))
    ]


def relay_for(settings):
    settings = dict(settings)
    upstreams = settings.pop("upstreams", ALL)
    relay = StationRelay("CP_1", upstreams, TransactionStore(), route=settings.pop("route"))
    relay.use_subprotocol(settings.pop("subprotocol", "ocpp1.6"))
    for name in settings.pop("connected", ()):
        relay.upstream_connected(name, 0.0)
    assert not settings, settings
    return relay


def connected(*names):
    return [(("connected", name, 0.0), None) for name in names]


CASES = {
    # --- fan-out and answers follow the route
    "fan_out_by_receives": (
        "A mirror with receives [MeterValues, StartTransaction] gets only those; the others get everything.",
        {"route": Route("A", ("B", "an")), "upstreams": {**ALL, "an": ANALYTICS}},
        [
            (("station", hb("h1"), 0.0), sends(hb("h1"), "A", "B")),
            (("station", meter("m1", 5), 0.0), sends(meter("m1", 5), "A", "B", "an")),
            (("station", '[6,"s1","MeterValues",{}]', 0.0), sends('[6,"s1","MeterValues",{}]', "A", "B", "an")),
            (("station", '[6,"s2","NotifyEvent",{}]', 0.0), sends('[6,"s2","NotifyEvent",{}]', "A", "B")),
            (("an", ok("m1", "an"), 1.0), []),
            (("B", ok("m1", "B"), 1.0), []),
            (("A", ok("m1", "A"), 1.0), [("send", ST, ok("m1", "A"))]),
        ],
    ),
    "calls_policy_per_upstream": (
        "calls: none refuses every CALL of that upstream with SecurityError; its answer to nothing reaches nobody.",
        {"route": Route("A", ("an",)), "upstreams": {**ALL, "an": ANALYTICS}},
        [
            (
                ("an", '[2,"r1","Reset",{}]', 0.0),
                [
                    (
                        "log",
                        "info",
                        "station CP_1: Reset r1 from an refused by the proxy (not allowed, or too many waiting)",
                    ),
                    (
                        "send",
                        "an",
                        '[4, "r1", "SecurityError", "Reset from the an central system is not allowed by the'
                        ' proxy", {}]',
                    ),
                    ("timer", None),
                ],
            ),
        ],
    ),
    "each_upstream_gets_its_own_answer": (
        "CALLs of A and B reach the station one at a time; each answer goes back to its asker only.",
        {"route": Route("A", ("B", "C"))},
        [
            (
                ("B", '[2,"u1","GetConfiguration",{}]', 0.0),
                [("send", ST, '[2,"u1","GetConfiguration",{}]'), ("timer", 40.0)],
            ),
            (
                ("C", '[2,"u1","GetConfiguration",{}]', 1.0),
                [
                    (
                        "log",
                        "info",
                        "station CP_1: GetConfiguration u1 from C waits until the station has answered an earlier CALL",
                    ),
                    ("timer", 40.0),
                ],
            ),
            (
                ("station", ok("u1", "st"), 2.0),
                [("send", "B", ok("u1", "st")), ("send", ST, '[2,"u1","GetConfiguration",{}]'), ("timer", 42.0)],
            ),
            (("station", ok("u1", "st2"), 3.0), [("send", "C", ok("u1", "st2")), ("timer", None)]),
        ],
    ),
    # --- OCPP 1.6 transaction ids for every non-primary upstream
    "each_mirror_gets_its_own_ids": (
        "A transaction started under primary A with mirrors B and C: each sees its own id, and their CALLs"
        " reach the station with the station's.",
        {"route": Route("A", ("B", "C"))},
        [
            (("station", start("t1"), 0.0), sends(start("t1"), "A", "B", "C")),
            (("B", given("t1", 7), 0.5), []),
            (("A", given("t1", 201), 1.0), [("send", ST, given("t1", 201))]),
            (("C", given("t1", 9), 1.5), []),
            (
                ("station", meter("m1", 201), 2.0),
                [("send", "A", meter("m1", 201)), ("send", "B", meter("m1", 7)), ("send", "C", meter("m1", 9))],
            ),
            (
                ("B", '[2,"r1","RemoteStopTransaction",{"transactionId":7}]', 3.0),
                [("send", ST, '[2,"r1","RemoteStopTransaction",{"transactionId":201}]'), ("timer", 43.0)],
            ),
            (("station", ok("r1"), 3.5), [("send", "B", ok("r1")), ("timer", None)]),
            (
                ("C", '[2,"p1","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"transactionId":9}}]', 4.0),
                [
                    (
                        "send",
                        ST,
                        '[2,"p1","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"transactionId":201}}]',
                    ),
                    ("timer", 44.0),
                ],
            ),
            (
                ("station", stop("s1", 201), 5.0),
                [("send", "A", stop("s1", 201)), ("send", "B", stop("s1", 7)), ("send", "C", stop("s1", 9))],
            ),
            (("station", meter("m2", 201), 6.0), sends(meter("m2", 201), "A", "B", "C")),
        ],
    ),
    "mirror_that_never_saw_the_start_gets_the_stations_ids": (
        "A mirror receiving MeterValues only never saw a start: it gets the station's id as it is.",
        {
            "route": Route("A", ("B", "an")),
            "upstreams": {**ALL, "an": UpstreamRules("ws://an/", receives=frozenset({"MeterValues"}))},
        },
        [
            (("station", start("t1"), 0.0), sends(start("t1"), "A", "B")),
            (("A", given("t1", 201), 1.0), [("send", ST, given("t1", 201))]),
            (("B", given("t1", 7), 1.0), []),
            (
                ("station", meter("m1", 201), 2.0),
                [("send", "A", meter("m1", 201)), ("send", "B", meter("m1", 7)), ("send", "an", meter("m1", 201))],
            ),
        ],
    ),
    # --- a change of route on a live station
    "switch_to_a_live_mirror_with_calls_in_flight_on_both_sides": (
        "B, a live mirror, becomes the primary: CALLs sent before get A's answer, CALLs after B's; the CALLs of"
        " both central systems in flight reach the station one at a time and their answers their askers.",
        {"route": Route("A", ("B",)), "connected": ("A", "B")},
        [
            (("station", hb("h1"), 0.0), sends(hb("h1"), "A", "B")),
            (("A", '[2,"u1","Reset",{}]', 0.0), [("send", ST, '[2,"u1","Reset",{}]'), ("timer", 40.0)]),
            (
                ("change", Route("B", ("A",)), 1.0),
                [("log", "info", "station CP_1: route changed: primary B (was A), mirrors A")],
            ),
            (
                ("B", '[2,"u2","GetConfiguration",{}]', 1.5),
                [
                    (
                        "log",
                        "info",
                        "station CP_1: GetConfiguration u2 from B waits until the station has answered an earlier CALL",
                    ),
                    ("timer", 40.0),
                ],
            ),
            (("station", hb("h2"), 2.0), sends(hb("h2"), "B", "A")),
            (("B", ok("h1", "B"), 3.0), []),
            (("A", ok("h1", "A"), 3.0), [("send", ST, ok("h1", "A"))]),
            (("A", ok("h2", "A"), 4.0), []),
            (("B", ok("h2", "B"), 4.0), [("send", ST, ok("h2", "B"))]),
            (
                ("station", ok("u1"), 5.0),
                [("send", "A", ok("u1")), ("send", ST, '[2,"u2","GetConfiguration",{}]'), ("timer", 45.0)],
            ),
            (("station", ok("u2"), 6.0), [("send", "B", ok("u2")), ("timer", None)]),
        ],
    ),
    "new_primary_gets_the_boot_replayed_then_takes_over": (
        "A new upstream C becomes the primary: its link is asked for, the station's last BootNotification is"
        " replayed with the proxy's own id and its answer consumed, the frames held meanwhile follow, and C"
        " answers from the first CALL sent after that; A answers the earlier ones.",
        {"route": Route("A"), "connected": ("A",)},
        [
            (("station", BOOT, 0.0), sends(BOOT, "A")),
            (("A", ok("b1"), 0.1), [("send", ST, ok("b1"))]),
            (
                ("change", Route("C", ("A",)), 1.0),
                [
                    ("log", "info", "station CP_1: moving to primary C: A answers until C's link is open"),
                    ("open link", "C"),
                ],
            ),
            (("station", hb("h1"), 2.0), sends(hb("h1"), "A")),
            (
                ("connected", "C", 3.0),
                [
                    ("event", "upstream_connected", "CP_1", "C", "ws://C.example/ocpp/"),
                    ("send", "C", BOOT_REPLAY),
                    ("timer", 43.0),
                ],
            ),
            (("station", hb("h2"), 4.0), sends(hb("h2"), "A")),
            (
                ("C", ok("ocppproxy-boot-1", "C"), 5.0),
                [
                    ("send", "C", hb("h1")),
                    ("send", "C", hb("h2")),
                    ("log", "info", "station CP_1: route changed: primary C (was A), mirrors A"),
                    ("timer", None),
                ],
            ),
            (("station", hb("h3"), 6.0), sends(hb("h3"), "C", "A")),
            (("C", ok("h1", "C"), 7.0), []),
            (("A", ok("h1", "A"), 7.0), [("send", ST, ok("h1", "A"))]),
            (("A", ok("h3", "A"), 7.0), []),
            (("C", ok("h3", "C"), 7.0), [("send", ST, ok("h3", "C"))]),
            (("A", ok("h2", "A"), 8.0), [("send", ST, ok("h2", "A"))]),
        ],
    ),
    "unanswered_boot_replay_goes_live_after_the_timeout": (
        "A new mirror that never answers the replayed BootNotification gets live traffic after pending_call_timeout.",
        {"route": Route("A"), "connected": ("A",)},
        [
            (("station", BOOT, 0.0), None),
            (
                ("change", Route("A", ("B",)), 1.0),
                [("log", "info", "station CP_1: route changed: primary A, mirrors B"), ("open link", "B")],
            ),
            (
                ("connected", "B", 2.0),
                [
                    ("event", "upstream_connected", "CP_1", "B", "ws://B.example/ocpp/"),
                    ("send", "B", BOOT_REPLAY),
                    ("timer", 42.0),
                ],
            ),
            (("station", hb("h1"), 3.0), sends(hb("h1"), "A")),
            (
                ("expire", 42.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: B has not answered the replayed BootNotification in 40 s: relaying"
                        " to it all the same",
                    ),
                    ("send", "B", hb("h1")),
                    ("timer", None),
                ],
            ),
            (("station", hb("h2"), 43.0), sends(hb("h2"), "A", "B")),
        ],
    ),
    "boot_replayed_again_if_the_link_dropped_before_its_answer": (
        "A new upstream whose link drops before it answered the replayed BootNotification gets it again when back.",
        {"route": Route("A"), "connected": ("A",)},
        [
            (("station", BOOT, 0.0), None),
            (("change", Route("A", ("B",)), 1.0), None),
            (("connected", "B", 2.0), None),
            (("disconnected", "B", "gone", 3.0), None),
            (
                ("connected", "B", 4.0),
                [
                    ("event", "upstream_connected", "CP_1", "B", "ws://B.example/ocpp/"),
                    ("send", "B", BOOT_REPLAY.replace("boot-1", "boot-2")),
                    ("timer", 44.0),
                ],
            ),
            (("B", ok("ocppproxy-boot-1"), 5.0), []),
            (("B", ok("ocppproxy-boot-2"), 5.0), [("timer", None)]),
            (("station", hb("h1"), 6.0), sends(hb("h1"), "A", "B")),
        ],
    ),
    "without_a_boot_a_new_upstream_goes_live_at_once": (
        "A station that sent no BootNotification in this connection: the new upstream is live once its link is open.",
        {"route": Route("A"), "connected": ("A",)},
        [
            (
                ("change", Route("B"), 1.0),
                [
                    ("log", "info", "station CP_1: moving to primary B: A answers until B's link is open"),
                    ("open link", "B"),
                ],
            ),
            (("station", hb("h1"), 2.0), sends(hb("h1"), "A")),
            (
                ("connected", "B", 3.0),
                [
                    ("event", "upstream_connected", "CP_1", "B", "ws://B.example/ocpp/"),
                    ("send", "B", hb("h1")),
                    ("log", "info", "station CP_1: route changed: primary B (was A), mirrors none"),
                    ("timer", 42.0),
                ],
            ),
            (("B", ok("h1"), 4.0), []),
            (
                ("A", ok("h1"), 4.0),
                [
                    ("send", ST, ok("h1")),
                    ("log", "info", "station CP_1: closing its link to A, no longer on its route"),
                    ("close link", "A"),
                ],
            ),
            (("station", hb("h2"), 5.0), sends(hb("h2"), "B")),
            (
                ("A", ok("h2"), 5.0),
                [("log", "info", 'station CP_1: frame from A, no longer on its route, dropped: [3,"h2",{}]')],
            ),
        ],
    ),
    "leaving_upstream_closed_once_its_calls_are_answered": (
        "A mirror dropped from the route gets no more frames; its link closes once the station answered its CALL.",
        {"route": Route("A", ("B", "C")), "connected": ("A", "B", "C")},
        [
            (
                ("C", '[2,"u1","GetConfiguration",{}]', 0.0),
                [("send", ST, '[2,"u1","GetConfiguration",{}]'), ("timer", 40.0)],
            ),
            (
                ("change", Route("A", ("B",)), 1.0),
                [("log", "info", "station CP_1: route changed: primary A, mirrors B"), ("timer", 40.0)],
            ),
            (("station", hb("h1"), 2.0), sends(hb("h1"), "A", "B")),
            (
                ("C", '[2,"u2","Reset",{}]', 2.5),
                [
                    ("log", "info", "station CP_1: Reset u2 from C refused: C left the station's route"),
                    (
                        "send",
                        "C",
                        '[4, "u2", "GenericError", "the station is no longer routed to this central system", {}]',
                    ),
                ],
            ),
            (
                ("station", ok("u1"), 3.0),
                [
                    ("send", "C", ok("u1")),
                    ("log", "info", "station CP_1: closing its link to C, no longer on its route"),
                    ("close link", "C"),
                    ("timer", None),
                ],
            ),
        ],
    ),
    "old_primary_that_never_answers_closed_when_its_calls_expire": (
        "An old primary off the route that never answers what it owes is closed once those CALLs expire.",
        {"route": Route("A", ("B",)), "connected": ("A", "B")},
        [
            (("station", hb("h1"), 0.0), sends(hb("h1"), "A", "B")),
            (
                ("change", Route("B"), 1.0),
                [("log", "info", "station CP_1: route changed: primary B (was A), mirrors none"), ("timer", 40.0)],
            ),
            (
                ("expire", 40.0),
                [
                    ("log", "info", "station CP_1: closing its link to A, no longer on its route"),
                    ("close link", "A"),
                    ("timer", None),
                ],
            ),
        ],
    ),
    "failed_new_primary_keeps_the_old_route": (
        "The new primary refuses its handshake: the station keeps its route, the new links are closed, and a"
        " new mirror asked for with it too.",
        {"route": Route("A"), "connected": ("A",)},
        [
            (
                ("change", Route("C", ("A", "B")), 1.0),
                [
                    ("log", "info", "station CP_1: moving to primary C: A answers until C's link is open"),
                    ("open link", "C"),
                    ("open link", "B"),
                ],
            ),
            (
                ("failed to open", "C", "HTTP 404 Not Found", 2.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: its new primary C did not open (HTTP 404 Not Found): it keeps its"
                        " route, primary A",
                    ),
                    ("close link", "C"),
                    ("close link", "B"),
                ],
            ),
            (("station", hb("h1"), 3.0), sends(hb("h1"), "A")),
            (("A", ok("h1"), 4.0), [("send", ST, ok("h1"))]),
        ],
    ),
    "failed_new_primary_with_the_old_one_gone_closes_1012": (
        "The new primary does not open and the old primary is no longer configured: closed with 1012.",
        {"route": Route("A"), "connected": ("A",)},
        [
            (
                ("change", Route("C"), 1.0, {"C": ALL["C"]}),
                [
                    ("log", "info", "station CP_1: moving to primary C: A answers until C's link is open"),
                    ("open link", "C"),
                ],
            ),
            (
                ("failed to open", "C", "no handshake within 10 s (handshake_timeout)", 11.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: its new primary C did not open (no handshake within 10 s"
                        " (handshake_timeout)) and A is no longer configured: closing it with 1012 to reconnect on its"
                        " new route",
                    ),
                    ("close", 1012, "the station's central system changed"),
                ],
            ),
        ],
    ),
    # --- transaction ids across a change of primary
    "ids_stay_coherent_across_a_switch": (
        "Started under A with B a mirror; after B becomes the primary, B still gets its own id and A the"
        " station's (its own).",
        {"route": Route("A", ("B",)), "connected": ("A", "B")},
        [
            (("station", start("t1"), 0.0), None),
            (("A", given("t1", 201), 1.0), None),
            (("B", given("t1", 7), 1.0), None),
            (("change", Route("B", ("A",)), 2.0), None),
            (("station", meter("m1", 201), 3.0), [("send", "B", meter("m1", 7)), ("send", "A", meter("m1", 201))]),
            (
                ("B", '[2,"r1","RemoteStopTransaction",{"transactionId":7}]', 3.5),
                [("send", ST, '[2,"r1","RemoteStopTransaction",{"transactionId":201}]'), ("timer", 43.5)],
            ),
            (("station", stop("s1", 201), 4.0), [("send", "B", stop("s1", 7)), ("send", "A", stop("s1", 201))]),
        ],
    ),
    "new_primary_that_never_saw_the_start_warned_once": (
        "A transaction the new primary never saw start is relayed to it with the station's id, with one warning.",
        {"route": Route("A", ("C",)), "connected": ("A", "C")},
        [
            (("station", start("t1"), 0.0), None),
            (("A", given("t1", 201), 1.0), None),
            (("C", given("t1", 9), 1.0), None),
            (("change", Route("B", ("A", "C")), 2.0), None),
            (("connected", "B", 3.0), None),
            (
                ("station", meter("m1", 201), 4.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: transaction 201 started before B was its primary: relayed to B with"
                        " the station's id",
                    ),
                    ("send", "B", meter("m1", 201)),
                    ("send", "A", meter("m1", 201)),
                    ("send", "C", meter("m1", 9)),
                ],
            ),
            (
                ("station", meter("m2", 201), 5.0),
                [("send", "B", meter("m2", 201)), ("send", "A", meter("m2", 201)), ("send", "C", meter("m2", 9))],
            ),
        ],
    ),
    "same_id_open_under_old_and_new_primary": (
        "The new primary gives an id the old one gave an open transaction: one warning naming both; the most"
        " recent is taken as meant, then the older one again once it stopped.",
        {"route": Route("A", ("B",)), "connected": ("A", "B")},
        [
            (("station", start("t1"), 0.0), None),
            (("A", given("t1", 201), 1.0), None),
            (("B", given("t1", 7), 1.0), None),
            (("change", Route("B", ("A",)), 2.0), None),
            (("station", start("t2"), 3.0), sends(start("t2"), "B", "A")),
            (("A", given("t2", 305), 3.5), []),
            (
                ("B", given("t2", 201), 4.0),
                [
                    (
                        "log",
                        "warn",
                        "station CP_1: transaction id 201 is open twice, started under A and under B:"
                        " frames naming it are taken as meant for the most recent (under B)",
                    ),
                    ("send", ST, given("t2", 201)),
                ],
            ),
            (("station", stop("s2", 201), 5.0), [("send", "B", stop("s2", 201)), ("send", "A", stop("s2", 305))]),
            (("station", stop("s1", 201), 6.0), [("send", "B", stop("s1", 7)), ("send", "A", stop("s1", 201))]),
        ],
    ),
}


class RouteChangeTests(SynchronousTestCase):
    """One test per case of CASES."""


add_table_tests(RouteChangeTests, CASES, relay_for, run_row)


class PlainPrimaryTests(SynchronousTestCase):
    """The relay's plain_primary (read per frame by the outbox) follows failover and every change of route."""

    def assert_consistent(self, relay, expected):
        self.assertEqual(relay.plain_primary, None if relay.failing_over else relay.route.primary)
        self.assertEqual(relay.plain_primary, expected)

    def test_through_failover_and_a_change_of_route(self):
        relay = relay_for({"route": Route("A", ("B", "C"), "B"), "connected": ("A", "B", "C")})
        self.assert_consistent(relay, "A")
        relay.upstream_disconnected("A", "gone", 1.0)
        self.assert_consistent(relay, None)  # the failover mirror B answers the station
        relay.upstream_connected("A", 2.0)
        self.assert_consistent(relay, "A")
        relay.change_route(Route("C", ("A",)), 3.0)
        self.assert_consistent(relay, "C")
