"""
Per-station rates: the pure token bucket and connect counter (time passed in), and a
station session throttled over its frame rate, on a Clock.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ConfigError
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.core.rates import ConnectCounter, ConnectRefusal, TokenBucket
from ocppproxy.core.routing import StationRelay
from ocppproxy.daemon.reload import compare_configs
from ocppproxy.fastpath import FastPath
from ocppproxy.relay.session import StationSession
from ocppproxy.wire.backpressure import WriteLimits
from ocppproxy.wire.limits import StationLimits

from ..system.test_backpressure import KIB, LIMIT, LinkStandIn, Silent, StationProtocolStandIn

HEARTBEAT = b'[2,"h","Heartbeat",{}]'


class TokenBucketTests(SynchronousTestCase):
    def test_burst_then_rate(self):
        """A full bucket lets C{burst} frames through at once; then one more per 1/rate seconds."""
        bucket = TokenBucket(10, 5, now=100.0)
        self.assertEqual([bucket.take(100.0) >= 0 for _ in range(6)], [True] * 5 + [False])
        self.assertAlmostEqual(bucket.wait(100.0), 0.1)
        self.assertEqual(bucket.wait(100.1), 0.0)
        self.assertTrue(bucket.take(100.2) >= 0)

    def test_debt_grows_with_frames_already_read(self):
        """Frames taken in debt (the rest of one read) are all counted: the wait grows by 1/rate each."""
        bucket = TokenBucket(20, 1, now=0.0)
        for _ in range(11):
            bucket.take(0.0)
        self.assertAlmostEqual(bucket.wait(0.0), 0.5)
        self.assertAlmostEqual(bucket.wait(0.25), 0.25)

    def test_never_more_than_burst(self):
        """An idle hour refills the bucket to C{burst}, not more."""
        bucket = TokenBucket(50, 100, now=0.0)
        self.assertEqual(bucket.take(3600.0), 99.0)

    def test_rested_marks_a_new_episode(self):
        """C{rested} is set again only once the bucket was full, not between the pauses of one flood."""
        bucket = TokenBucket(10, 2, now=0.0)
        for _ in range(3):
            bucket.take(0.0)
        self.assertTrue(bucket.rested)
        bucket.rested = False
        for moment in (0.15, 0.2, 0.3):
            bucket.take(moment)
        self.assertFalse(bucket.rested)
        bucket.take(10.0)
        self.assertTrue(bucket.rested)


class ConnectCounterTests(SynchronousTestCase):
    def test_refused_at_the_limit_until_the_oldest_leaves_the_minute(self):
        """The limit-th connection within a minute refuses the next, for as long as the oldest needs to age."""
        counter = ConnectCounter(3)
        for moment in (0.0, 10.0, 20.0):
            self.assertIsNone(counter.check("CP_1", moment))
            counter.accepted("CP_1", moment)
        self.assertEqual(counter.check("CP_1", 30.5), ConnectRefusal(30, True))
        self.assertEqual(counter.check("CP_1", 45.0), ConnectRefusal(15, False))
        self.assertIsNone(counter.check("CP_2", 45.0))
        self.assertIsNone(counter.check("CP_1", 60.0))

    def test_a_new_episode_after_one_accepted(self):
        """Once under the limit again, the next refusal starts a new episode (one warning each)."""
        counter = ConnectCounter(1)
        counter.accepted("CP_1", 0.0)
        self.assertTrue(counter.check("CP_1", 1.0).first)
        self.assertFalse(counter.check("CP_1", 2.0).first)
        self.assertIsNone(counter.check("CP_1", 61.0))
        counter.accepted("CP_1", 61.0)
        self.assertTrue(counter.check("CP_1", 62.0).first)

    def test_retry_after_at_least_one_second(self):
        counter = ConnectCounter(1)
        counter.accepted("CP_1", 0.0)
        self.assertEqual(counter.check("CP_1", 59.99).retry_after, 1)

    def test_memory_bounded(self):
        """Thousands of ids are forgotten a minute after their last connection; one id holds at most C{limit} times."""
        counter = ConnectCounter(20)
        for number in range(5000):
            counter.accepted(f"CP_{number}", number / 1000)
        self.assertEqual(len(counter), 5000)
        for _ in range(100):
            counter.accepted("CP_busy", 70.0)
        self.assertEqual(len(counter), 1)
        self.assertEqual(len(counter._times["CP_busy"]), 20)
        self.assertIsNone(counter.check("CP_busy", 130.0))
        self.assertEqual(len(counter), 0)


class StationThrottleTests(SynchronousTestCase):
    """A station session over limits.max_frames_per_second, on a Clock: reading paused, every frame relayed."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.protocol = StationProtocolStandIn()
        self.relayed: list[bytes] = []
        self.limits = StationLimits(self.clock, max_frames_per_second=20, frame_burst=10)
        self.write_limits = WriteLimits(self.clock, LIMIT, 5.0, FastPath())
        self.session = StationSession(
            "CP_1", self.protocol, self.clock, lambda session: None, Silent(), self.write_limits,
            limits=self.limits,
        )
        self.session.links = {"primary": LinkStandIn()}
        self.session.relay = StationRelay("CP_1", {"primary": "ws://127.0.0.1:9/CP_1"})
        self.session.links["primary"].send = self.relayed.append
        self.session.station_open()
        self.log: list[str] = []
        observer = lambda event: self.log.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def send(self, count: int, start: int = 0) -> None:
        for number in range(start, start + count):
            self.session.from_station(b'[2,"%d","Heartbeat",{}]' % number, False)

    def test_burst_passes_without_pause(self):
        self.send(10)
        self.assertTrue(self.protocol.transport.reading)
        self.assertFalse(self.session.throttled)
        self.assertEqual(len(self.relayed), 10)

    def test_over_the_rate_reading_pauses_and_the_read_is_relayed(self):
        """
        The frames of one read beyond the burst are relayed all the same, in order;
        reading pauses until their debt is paid (1/rate per frame), then resumes.
        """
        self.send(30)
        self.assertEqual(self.relayed, [b'[2,"%d","Heartbeat",{}]' % number for number in range(30)])
        self.assertFalse(self.protocol.transport.reading)
        self.assertTrue(self.session.throttled)
        self.clock.advance(0.99)
        self.assertFalse(self.protocol.transport.reading)
        self.clock.advance(0.02)
        self.assertTrue(self.protocol.transport.reading)
        self.assertFalse(self.session.throttled)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def flood(self, count: int, start: int = 0) -> None:
        """A station sending C{count} frames as fast as the proxy reads them: 5 per read, reads 50 ms apart."""
        sent = 0
        while sent < count:
            if self.protocol.transport.reading:
                self.send(5, start + sent)
                sent += 5
            self.clock.advance(0.05)

    def test_one_warning_per_episode(self):
        """A flood paused again and again is one warning; after a rest, a new flood is another."""
        self.flood(200)
        warnings = [line for line in self.log if "limits.max_frames_per_second" in line]
        self.assertEqual(len(warnings), 1)
        self.assertIn("station CP_1 (tcp4:127.0.0.1:5000) sends over 20 frames/s", warnings[0])
        # The flood went at the rate, after the burst: the last of 190 frames read at 20/s about 9.5 s in.
        self.assertTrue(9.0 <= self.clock.seconds() - 1000 <= 9.5, self.clock.seconds() - 1000)
        self.clock.advance(10)
        self.flood(20, 200)
        self.assertEqual(len([line for line in self.log if "limits.max_frames_per_second" in line]), 2)
        self.assertEqual(len(self.relayed), 220)

    def test_throttle_and_full_buffer_together(self):
        """Reading resumes only once neither the rate nor a full write buffer holds it back."""
        self.send(30)
        self.session._to_station(b"x" * (LIMIT + 70 * KIB))
        self.session._to_station(b"x")
        self.clock.advance(1.1)
        self.assertFalse(self.session.throttled)
        self.assertFalse(self.protocol.transport.reading)
        self.protocol.transport.drain()
        self.assertTrue(self.protocol.transport.reading)
        self.send(30, 30)
        self.session._to_station(b"x" * (LIMIT + 70 * KIB))
        self.session._to_station(b"x")
        self.protocol.transport.drain()
        self.assertFalse(self.protocol.transport.reading)
        self.clock.advance(1.6)
        self.assertTrue(self.protocol.transport.reading)

    def test_closing_reads_again_and_cancels_the_timer(self):
        """A throttled station that closes is read again (its close handshake) and leaves no timer."""
        self.send(30)
        self.protocol.was_opened = True
        self.session.station_closed(self.protocol, 1000, "bye")
        self.assertTrue(self.protocol.transport.reading)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RateLimitConfigTests(SynchronousTestCase):
    PRIMARY = "ws://127.0.0.1:9/"

    def test_defaults_and_set(self):
        config = config_from_mapping({"primary_url": self.PRIMARY})
        self.assertEqual(
            (config.max_frames_per_second, config.frame_burst, config.max_connects_per_minute), (50, 100, 20)
        )
        limits = {"max_frames_per_second": 2.5, "frame_burst": 5, "max_connects_per_minute": 3}
        config = config_from_mapping({"primary_url": self.PRIMARY, "limits": limits})
        self.assertEqual((config.max_frames_per_second, config.frame_burst, config.max_connects_per_minute), (2.5, 5, 3))

    def test_errors(self):
        for limits, text in (
            ({"max_frames_per_second": 0}, "limits.max_frames_per_second: must be at least 0.1, got 0"),
            ({"frame_burst": 0.5}, "limits.frame_burst: must be a whole number, got 0.5"),
            ({"max_connects_per_minute": 0}, "limits.max_connects_per_minute: must be at least 1, got 0"),
        ):
            with self.assertRaises(ConfigError) as caught:
                config_from_mapping({"primary_url": self.PRIMARY, "limits": limits})
            self.assertEqual(str(caught.exception), text)

    def test_reload_names_the_keys_for_a_restart(self):
        old = config_from_mapping({"primary_url": self.PRIMARY})
        new = config_from_mapping(
            {"primary_url": self.PRIMARY, "limits": {"frame_burst": 5, "max_connects_per_minute": 3}}
        )
        self.assertEqual(
            compare_configs(old, new).restart, ("limits.frame_burst", "limits.max_connects_per_minute")
        )
