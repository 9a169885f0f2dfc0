"""Tests for L{ocppproxy.notify.delivery}: order, bound, retries, giving up, flushing, deadlines."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.notify.alert import Alert, DeliveryError
from ocppproxy.notify.delivery import MAX_RETRY_DELAY, DeliveryQueue


def alert(number: int) -> Alert:
    return Alert(key=f"key{number}", station_id=f"CP{number}", subject=f"subject {number}", text=f"text {number}")


class FakeChannel:
    """A channel whose deliveries the test finishes by hand, in the order they were asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[Alert, Deferred[None]]] = []
        self.cancelled: list[str] = []

    def send(self, alert: Alert) -> Deferred[None]:
        sending: Deferred[None] = Deferred(lambda _: self.cancelled.append(alert.key))
        self.calls.append((alert, sending))
        return sending

    @property
    def sent(self) -> list[str]:
        return [alert.key for alert, _ in self.calls]

    def succeed(self) -> None:
        self.calls[-1][1].callback(None)

    def fail(self, message: str = "try later", transient: bool = True) -> None:
        self.calls[-1][1].errback(DeliveryError(message, transient))


class QueueTestCase(SynchronousTestCase):
    """A queue on a clock, with a channel finished by hand and the log kept."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.channel = FakeChannel()
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def queue(
        self, limit: int = 10, max_attempts: int = 3, retry_delay: float = 10.0, send=None, deadline: float = 30.0
    ) -> DeliveryQueue:
        return DeliveryQueue(
            "email", send or self.channel.send, self.clock, limit, max_attempts, retry_delay, deadline=deadline
        )

    def timers(self) -> list[float]:
        """When the clock's pending calls are due, from now."""
        return sorted(call.getTime() - self.clock.seconds() for call in self.clock.getDelayedCalls())

    def logged(self, level: LogLevel) -> list[str]:
        return [formatEvent(event) for event in self.events if event.get("log_level") == level]

    def next_delay(self) -> float:
        (call,) = self.clock.getDelayedCalls()
        return call.getTime() - self.clock.seconds()


class DeliveryQueueTests(QueueTestCase):
    def test_one_at_a_time_in_order(self) -> None:
        """Alerts are delivered in the order they were put, the next one only after the previous."""
        queue = self.queue()
        for number in (1, 2, 3):
            queue.put(alert(number))
        self.assertEqual(self.channel.sent, ["key1"])
        self.channel.succeed()
        self.assertEqual(self.channel.sent, ["key1", "key2"])
        self.channel.succeed()
        self.channel.succeed()
        self.assertEqual(self.channel.sent, ["key1", "key2", "key3"])
        self.assertEqual((queue.sent, queue.failed, queue.dropped, queue.pending), (3, 0, 0, 0))

    def test_synchronous_channel_does_not_recurse(self) -> None:
        """A channel that answers at once drains a long queue without deep recursion."""
        first: Deferred[None] = Deferred()
        answers = iter([first])
        queue = self.queue(limit=5000, send=lambda alert: next(answers, succeed(None)))
        for number in range(5000):
            queue.put(alert(number))
        first.callback(None)
        self.assertEqual((queue.sent, queue.pending), (5000, 0))

    def test_full_queue_drops_the_oldest_waiting(self) -> None:
        """Beyond C{limit} waiting alerts the oldest waiting one is dropped, counted and logged."""
        queue = self.queue(limit=2)
        for number in (1, 2, 3, 4):
            queue.put(alert(number))
        self.assertEqual(queue.dropped, 1)
        (warning,) = self.logged(LogLevel.warn)
        self.assertIn("key2", warning)
        self.assertIn("1 dropped", warning)
        for _ in range(3):
            self.channel.succeed()
        self.assertEqual(self.channel.sent, ["key1", "key3", "key4"])

    def test_transient_failure_retried_with_backoff(self) -> None:
        """A transient failure is retried after retry_delay, then twice as long each time."""
        queue = self.queue(max_attempts=4, retry_delay=10.0)
        queue.put(alert(1))
        queue.put(alert(2))
        for delay in (10.0, 20.0, 40.0):
            self.channel.fail()
            self.assertEqual(self.next_delay(), delay)
            self.clock.advance(delay - 0.5)
            self.assertEqual(self.channel.sent[-1], "key1")
            calls = len(self.channel.calls)
            self.clock.advance(0.5)
            self.assertEqual(len(self.channel.calls), calls + 1)
        self.channel.succeed()
        self.assertEqual(self.channel.sent, ["key1"] * 4 + ["key2"])
        self.assertEqual((queue.sent, queue.failed), (1, 0))

    def test_backoff_is_capped(self) -> None:
        """No retry waits longer than MAX_RETRY_DELAY."""
        queue = self.queue(max_attempts=5, retry_delay=200.0)
        queue.put(alert(1))
        self.channel.fail()
        self.assertEqual(self.next_delay(), 200.0)
        self.clock.advance(200.0)
        self.channel.fail()
        self.assertEqual(self.next_delay(), MAX_RETRY_DELAY)

    def test_given_up_after_max_attempts(self) -> None:
        """After max_attempts transient failures the alert is given up with one error line."""
        queue = self.queue(max_attempts=3, retry_delay=1.0)
        queue.put(alert(1))
        queue.put(alert(2))
        for _ in range(2):
            self.channel.fail("connection refused")
            self.clock.advance(MAX_RETRY_DELAY)
        self.channel.fail("connection refused")
        self.assertEqual(
            self.logged(LogLevel.error),
            ["alerts: alert key1 for CP1 given up on email after 3 attempts: connection refused"],
        )
        self.assertEqual((queue.failed, queue.sent), (1, 0))
        self.assertEqual(self.channel.sent[-1], "key2")
        self.assertEqual(self.timers(), [30.0], "only key2's deadline, no retry of key1")

    def test_permanent_failure_not_retried(self) -> None:
        """A permanent failure gives the alert up at once, at error level."""
        queue = self.queue()
        queue.put(alert(1))
        queue.put(alert(2))
        self.channel.fail("535 Authentication failed", transient=False)
        self.assertEqual(self.timers(), [30.0], "only key2's deadline, no retry of key1")
        self.assertEqual(self.channel.sent, ["key1", "key2"])
        self.assertEqual(
            self.logged(LogLevel.error),
            ["alerts: alert key1 for CP1 given up on email after 1 attempt: 535 Authentication failed"],
        )
        self.assertEqual(queue.failed, 1)

    def test_other_exception_is_transient(self) -> None:
        """Any other exception, even raised by send itself, counts as a transient failure."""
        attempts = []

        def send(alert: Alert) -> Deferred[None]:
            attempts.append(alert)
            if len(attempts) == 1:
                raise ValueError("bug in a channel")
            return succeed(None)

        queue = self.queue(send=send)
        queue.put(alert(1))
        self.assertIn("ValueError: bug in a channel", self.logged(LogLevel.warn)[0])
        self.clock.advance(10.0)
        self.assertEqual((len(attempts), queue.sent), (2, 1))

    def test_flush_of_empty_queue_fires_at_once(self) -> None:
        """Flushing an idle queue fires at once and leaves no timer."""
        flushed = self.queue().flush(5.0)
        self.assertIsNone(self.successResultOf(flushed))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flush_waits_for_in_flight_and_queued(self) -> None:
        """Flush fires once the delivery in flight and the queued alerts are done."""
        queue = self.queue()
        queue.put(alert(1))
        queue.put(alert(2))
        flushed = queue.flush(5.0)
        self.channel.succeed()
        self.assertNoResult(flushed)
        self.channel.succeed()
        self.successResultOf(flushed)
        self.assertEqual(queue.sent, 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flush_timeout_abandons_and_cancels(self) -> None:
        """After the timeout, flush fires, logs what was abandoned and cancels the delivery in flight."""
        queue = self.queue()
        queue.put(alert(1))
        queue.put(alert(2))
        flushed = queue.flush(5.0)
        self.clock.advance(4.9)
        self.assertNoResult(flushed)
        self.clock.advance(0.1)
        self.successResultOf(flushed)
        self.assertEqual(self.channel.cancelled, ["key1"])
        self.assertEqual(queue.abandoned, 2)
        self.assertIn("2 alerts abandoned on email", self.logged(LogLevel.error)[0])
        self.assertEqual(self.channel.sent, ["key1"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flush_attempts_pending_retry_at_once(self) -> None:
        """A retry waiting for its timer is attempted at once by flush; failing again, it is given up."""
        queue = self.queue(max_attempts=5)
        queue.put(alert(1))
        self.channel.fail()
        flushed = queue.flush(5.0)
        self.assertEqual(self.channel.sent, ["key1", "key1"])
        self.assertEqual(self.timers(), [5.0, 30.0], "the flush's timeout and the attempt's deadline")
        self.channel.fail("still down")
        self.successResultOf(flushed)
        self.assertEqual(queue.failed, 1)
        self.assertIn("after 2 attempts: still down", self.logged(LogLevel.error)[0])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_nothing_sent_after_flush(self) -> None:
        """Once flushed, the queue drops new alerts instead of sending them."""
        queue = self.queue()
        self.successResultOf(queue.flush(5.0))
        queue.put(alert(1))
        self.assertEqual((self.channel.sent, queue.dropped), ([], 1))
        self.successResultOf(queue.flush(5.0))


class DeadlineTests(QueueTestCase):
    """Every attempt has one deadline: past it the attempt is cancelled and is a transient failure."""

    def test_attempt_past_its_deadline_is_cancelled_and_retried(self) -> None:
        """A channel that never answers is cancelled at the deadline; the retry follows after retry_delay."""
        queue = self.queue(deadline=30.0, retry_delay=10.0)
        queue.put(alert(1))
        queue.put(alert(2))
        self.clock.advance(29.9)
        self.assertEqual((self.channel.cancelled, self.channel.sent), ([], ["key1"]))
        self.clock.advance(0.1)
        self.assertEqual(self.channel.cancelled, ["key1"])
        (warning,) = self.logged(LogLevel.warn)
        self.assertIn("not delivered on email (attempt 1 of 3): no answer within the deadline of 30 s", warning)
        self.assertIn("retrying in 10 s", warning)
        self.clock.advance(10.0)
        self.assertEqual(self.channel.sent, ["key1", "key1"])
        self.channel.succeed()
        self.assertEqual(self.channel.sent, ["key1", "key1", "key2"], "the next alert goes at deadline + retry delay")
        self.assertEqual((queue.sent, queue.failed, queue.pending), (1, 0, 1))

    def test_each_attempt_has_its_own_deadline(self) -> None:
        """The retry gets a whole deadline again; after max_attempts stalls the alert is given up."""
        queue = self.queue(deadline=5.0, retry_delay=1.0, max_attempts=2)
        queue.put(alert(1))
        queue.put(alert(2))
        self.clock.advance(5.0)
        self.clock.advance(1.0)
        self.assertEqual(self.timers(), [5.0])
        self.clock.advance(5.0)
        self.assertEqual(self.channel.cancelled, ["key1", "key1"])
        self.assertEqual(queue.failed, 1)
        self.assertIn("after 2 attempts: no answer within the deadline of 5 s", self.logged(LogLevel.error)[0])
        self.assertEqual(self.channel.sent[-1], "key2")

    def test_no_timer_left_once_answered(self) -> None:
        """An answer in time cancels the deadline: nothing is left on the clock."""
        queue = self.queue()
        queue.put(alert(1))
        self.assertEqual(self.timers(), [30.0])
        self.channel.succeed()
        self.assertEqual((self.clock.getDelayedCalls(), queue.sent), ([], 1))

    def test_success_while_being_cancelled_counts(self) -> None:
        """A channel whose cancellation finds the alert delivered after all reports success, not a failure."""
        queue = self.queue(deadline=5.0, send=lambda alert: Deferred(lambda sending: sending.callback(None)))
        queue.put(alert(1))
        self.clock.advance(5.0)
        self.assertEqual((queue.sent, queue.failed, self.clock.getDelayedCalls()), (1, 0, []))

    def test_flush_cancels_the_deadline(self) -> None:
        """A flush that times out cancels the attempt and its deadline with it."""
        queue = self.queue(deadline=30.0)
        queue.put(alert(1))
        self.successResultOf(self.advance_flush(queue))
        self.assertEqual((self.channel.cancelled, self.clock.getDelayedCalls()), (["key1"], []))

    def advance_flush(self, queue: DeliveryQueue) -> Deferred[None]:
        flushed = queue.flush(5.0)
        self.clock.advance(5.0)
        return flushed

    def test_channel_that_ignores_cancellation_does_not_hold_the_queue(self) -> None:
        """A channel whose Deferred survives cancellation (its canceller raises) still fails at the deadline."""

        def broken(_: Deferred) -> None:
            raise RuntimeError("canceller bug")

        attempts: list[Deferred[None]] = []

        def send(alert: Alert) -> Deferred[None]:
            attempts.append(Deferred(broken))
            return attempts[-1]

        queue = self.queue(deadline=5.0, retry_delay=1.0, max_attempts=1, send=send)
        queue.put(alert(1))
        queue.put(alert(2))
        self.clock.advance(5.0)
        self.assertEqual((queue.failed, len(attempts)), (1, 2))
        self.assertIn("no answer within the deadline of 5 s", self.logged(LogLevel.error)[-1])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        attempts[0].callback(None)
        self.assertEqual(queue.sent, 0)
