"""
The benchmark's arithmetic (bench/measures.py): percentiles, ratios by round and the
open loop's schedule. The bench is not a test suite; what it computes is tested here.
"""

from __future__ import annotations

import importlib.util
import math
import os

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_measures():
    """bench/measures.py as a module (bench/ is a directory of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_measures", os.path.join(ROOT, "bench", "measures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


measures = load_measures()


class PercentileTests(SynchronousTestCase):
    def test_nearest_rank(self) -> None:
        """The p-th percentile is the smallest value with at least p of the values at or below it."""
        values = list(range(100, 0, -1))  # 1..100, unsorted
        self.assertEqual(measures.percentile(values, 0.5), 50)
        self.assertEqual(measures.percentile(values, 0.99), 99)
        self.assertEqual(measures.percentile(values, 1.0), 100)

    def test_small_samples(self) -> None:
        """With few values p99 is the highest, p50 the lower middle; one value is every percentile."""
        self.assertEqual(measures.percentile([3.0, 1.0, 2.0], 0.99), 3.0)
        self.assertEqual(measures.percentile([1.0, 2.0, 3.0, 4.0], 0.5), 2.0)
        self.assertEqual(measures.percentile([7.0], 0.01), 7.0)

    def test_empty_is_nan(self) -> None:
        """No latencies give NaN, not an exception: a row whose stations all failed still prints."""
        self.assertTrue(math.isnan(measures.percentile([], 0.5)))

    def test_fraction_checked(self) -> None:
        """A fraction outside (0, 1] is a mistake in the caller."""
        self.assertRaises(ValueError, measures.percentile, [1.0], 0)
        self.assertRaises(ValueError, measures.percentile, [1.0], 99)

    def test_summary_in_milliseconds(self) -> None:
        """latency_summary turns seconds into milliseconds."""
        summary = measures.latency_summary([0.001] * 98 + [0.002, 0.010])
        self.assertEqual(summary, {"p50_ms": 1.0, "p99_ms": 2.0})


class RatioTests(SynchronousTestCase):
    def test_ratio(self) -> None:
        """A ratio is rounded to three places; a missing, zero or NaN denominator gives None."""
        self.assertEqual(measures.ratio(2.0, 3.0), 0.667)
        self.assertIsNone(measures.ratio(1.0, 0.0))
        self.assertIsNone(measures.ratio(None, 1.0))
        self.assertIsNone(measures.ratio(1.0, float("nan")))

    def test_paired_by_round(self) -> None:
        """Ratios pair rounds in order; a round missing either side is left out, not shifted."""
        self.assertEqual(measures.paired_ratios([1.0, None, 3.0], [2.0, 2.0, 4.0]), [0.5, 0.75])
        self.assertEqual(measures.paired_ratios([1.0, 2.0], [2.0]), [0.5])

    def test_verdict(self) -> None:
        """The verdict holds the rounds, their median and highest, and both targets' outcome."""
        verdict = measures.ratio_verdict([0.7, 0.9, 0.75], median_target=0.8, round_target=0.85)
        self.assertEqual(verdict["median"], 0.75)
        self.assertEqual(verdict["highest"], 0.9)
        self.assertTrue(verdict["median_target_met"])
        self.assertFalse(verdict["every_round_target_met"])


class OpenLoopScheduleTests(SynchronousTestCase):
    def test_even_spacing_and_turns(self) -> None:
        """rate x seconds calls, 1/rate apart, the senders taking turns."""
        schedule = measures.open_loop_schedule(rate=4, seconds=1, senders=3)
        self.assertEqual(schedule, [(0.0, 0), (0.25, 1), (0.5, 2), (0.75, 0)])

    def test_rate_does_not_depend_on_senders(self) -> None:
        """2,000 calls/s over 50 stations for 2 s: 4,000 calls, 80 per station, the last due before 2 s."""
        schedule = measures.open_loop_schedule(rate=2000, seconds=2, senders=50)
        self.assertEqual(len(schedule), 4000)
        self.assertEqual(sum(1 for _, sender in schedule if sender == 7), 80)
        self.assertLess(schedule[-1][0], 2.0)

    def test_positive_arguments(self) -> None:
        """A rate, duration or sender count of zero is refused."""
        self.assertRaises(ValueError, measures.open_loop_schedule, 0, 1, 1)
        self.assertRaises(ValueError, measures.open_loop_schedule, 1, 1, 0)

    def test_lateness(self) -> None:
        """The generator's lag is the worst send behind its due time."""
        self.assertEqual(measures.lateness([0.0, 1.0, 2.0], [0.0, 1.5, 2.1]), 0.5)
        self.assertEqual(measures.lateness([], []), 0.0)


class NodeVerdictTests(SynchronousTestCase):
    def test_targets_met(self) -> None:
        """Median 0.78, one round of five above 0.95: every target of a run is met."""
        verdict = measures.node_cpu_verdict([0.7, 0.78, 0.8, 0.75, 0.96])
        self.assertEqual(verdict["median"], 0.78)
        self.assertEqual(verdict["rounds_above_0.95"], 1)
        self.assertTrue(verdict["median_target_met"])
        self.assertTrue(verdict["run_median_bound_met"])
        self.assertTrue(verdict["rounds_above_0.95_target_met"])

    def test_two_rounds_above(self) -> None:
        """Two rounds of five above 0.95 miss the target; a median of 0.85 misses 0.8 but not 0.9."""
        verdict = measures.node_cpu_verdict([0.8, 0.85, 0.96, 0.97, 0.84])
        self.assertFalse(verdict["rounds_above_0.95_target_met"])
        self.assertFalse(verdict["median_target_met"])
        self.assertTrue(verdict["run_median_bound_met"])

    def test_fewer_than_five_rounds(self) -> None:
        """With fewer than five rounds no round may be above 0.95."""
        self.assertFalse(measures.node_cpu_verdict([0.7, 0.96])["rounds_above_0.95_target_met"])
