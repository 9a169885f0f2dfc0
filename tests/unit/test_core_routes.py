"""
Route matching (L{ocppproxy.core.routes}): first match wins, exact ids and shell-style
patterns, case-sensitive; the index gives exactly what trying the routes in order gives.

Rows: ("match", station id) expecting the index of the route it takes (None: no route).
"""

from __future__ import annotations

import fnmatch

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.routes import Route, RouteRule, RouteTableBuilder, is_pattern, route_table

from ..tables import add_table_tests


def naive(rules, station_id):
    """The specification, written plainly: the first rule with an entry admitting the id."""
    for index, rule in enumerate(rules):
        for entry in rule.stations:
            if entry == station_id:
                return index
            if any(character in entry for character in "*?[") and fnmatch.fnmatchcase(station_id, entry):
                return index
    return None


def rules_of(*station_lists):
    return [RouteRule(tuple(stations), Route(f"csms-{index}")) for index, stations in enumerate(station_lists)]


def run_row(table, row):
    what, station_id = row
    assert what == "match"
    return table.index(station_id)


CASES = {
    "exact_and_pattern_first_match_wins": (
        "The issue's example: ALF-* and CP_0042 go to the first route, everything else to the catch-all.",
        rules_of(["ALF-*", "CP_0042"], ["*"]),
        [
            (("match", "ALF-12"), 0),
            (("match", "CP_0042"), 0),
            (("match", "CP_0043"), 1),
            (("match", "alf-12"), 1),
            (("match", ""), 1),
        ],
    ),
    "case_sensitive": (
        "Matching is case-sensitive on every OS (fnmatchcase).",
        rules_of(["cp_*"], ["CP_1"]),
        [(("match", "CP_1"), 1), (("match", "cp_1"), 0), (("match", "Cp_1"), None)],
    ),
    "earlier_pattern_beats_later_exact_id": (
        "A pattern of an earlier route wins over the exact id of a later one.",
        rules_of(["CP_*"], ["CP_1"]),
        [(("match", "CP_1"), 0)],
    ),
    "earlier_exact_id_beats_later_pattern": (
        "An exact id of an earlier route wins over a pattern of a later one.",
        rules_of(["CP_1"], ["CP_*"]),
        [(("match", "CP_1"), 0), (("match", "CP_2"), 1)],
    ),
    "station_id_with_star_matches_itself": (
        "A station id holding * or [ is matched by the pattern that is that id.",
        rules_of(["FR*ABC*1"], ["A[1]"], ["*"]),
        [
            (("match", "FR*ABC*1"), 0),
            (("match", "FRxABCy1"), 0),
            (("match", "A[1]"), 1),
            (("match", "A1"), 1),
            (("match", "B"), 2),
        ],
    ),
    "question_mark_and_classes": (
        "? is one character, [..] a class, [!..] its complement.",
        rules_of(["CP_?"], ["X[0-3]"], ["X[!0-3]"]),
        [
            (("match", "CP_7"), 0),
            (("match", "CP_77"), None),
            (("match", "X2"), 1),
            (("match", "X9"), 2),
            (("match", "X"), None),
        ],
    ),
    "suffix_patterns": (
        "Patterns with no literal start (*-ACME) are found by their literal end.",
        rules_of(["*-ACME"], ["*-ACME-2"], ["*"]),
        [(("match", "CP-ACME"), 0), (("match", "CP-ACME-2"), 1), (("match", "CP-ACM"), 2)],
    ),
    "no_route": (
        "A station no entry admits has no route.",
        rules_of(["A"], ["B*"]),
        [(("match", "C"), None), (("match", "Ab"), None)],
    ),
}


class RouteMatchingTests(SynchronousTestCase):
    """One test per case of CASES, and the index checked against trying the routes in order."""

    @given(
        st.lists(
            st.lists(st.text(alphabet="ab*?[]!-", min_size=0, max_size=5), min_size=1, max_size=3),
            min_size=1,
            max_size=8,
        ),
        st.lists(st.text(alphabet="ab*?[]!-", max_size=6), min_size=1, max_size=10),
    )
    def test_index_gives_the_result_of_trying_routes_in_order(self, station_lists, station_ids):
        """For any table and station id, the index's answer is the first rule (in order) admitting the id."""
        rules = rules_of(*station_lists)
        table = route_table(rules)
        for station_id in station_ids + [entry for stations in station_lists for entry in stations]:
            self.assertEqual(table.index(station_id), naive(rules, station_id), (station_lists, station_id))

    def test_built_in_slices_same_as_at_once(self):
        """A table built a few rules and a few patterns at a time matches like one built at once."""
        rules = rules_of(*([f"P{n}-*", f"X{n}"] for n in range(300)), ["*-Z"], ["*"])
        builder = RouteTableBuilder()
        for start in range(0, len(rules), 7):
            builder.add(rules[start : start + 7])
            builder.compile_some(10)
        sliced, whole = builder.build(), route_table(rules)
        for station_id in ["P7-1", "X299", "Q-Z", "nothing", "P299-", "X3"]:
            self.assertEqual(sliced.index(station_id), whole.index(station_id))
            self.assertEqual(sliced.index(station_id), naive(rules, station_id))

    def test_match_returns_the_route(self):
        """match() gives the Route itself; is_pattern tells entries apart."""
        table = route_table([RouteRule(("CP_1",), Route("a", ("b",), "b"))])
        self.assertEqual(table.match("CP_1"), Route("a", ("b",), "b"))
        self.assertIsNone(table.match("CP_2"))
        self.assertEqual([is_pattern(e) for e in ("CP_1", "CP*", "C?", "[a]")], [False, True, True, True])


add_table_tests(RouteMatchingTests, CASES, route_table, run_row)
