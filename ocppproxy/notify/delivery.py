"""
Per-channel delivery: a bounded queue, one alert in flight, retries with backoff.

Relaying never waits on a channel: L{DeliveryQueue.put} returns at once, and a slow
or broken channel costs at most C{limit} waiting alerts. Every attempt has one deadline,
from connecting to the last byte of the answer: past it the attempt is cancelled (the
channel drops its connection) and counts as a transient failure.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from ..logs import proxy_logger
from .alert import Alert, DeliveryError

MAX_RETRY_DELAY = 300.0
"""No retry waits longer than this many seconds, whatever the attempt number."""

DEFAULT_DEADLINE = 30.0
"""Seconds one delivery attempt may take unless the queue is given another deadline."""


def _reason(error: BaseException) -> str:
    if isinstance(error, DeliveryError):
        return str(error)
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class DeliveryQueue:
    """
    Delivers one channel's alerts in order, one at a time.

    At most C{limit} alerts wait behind the one being delivered; beyond that the
    oldest waiting alert is dropped (counted in C{dropped}, logged). A transient
    failure (a L{DeliveryError} with C{transient} set, or any other exception) is
    retried after C{retry_delay * 2 ** (attempt - 1)} seconds (at most
    L{MAX_RETRY_DELAY}), up to C{max_attempts} attempts; a permanent one gives the
    alert up at once. An attempt still unfinished C{deadline} seconds after it started
    is cancelled (the channel's Deferred must then drop its connection) and counts as
    a transient failure. Given-up alerts are counted in C{failed}, delivered ones in
    C{sent}, alerts abandoned by a timed-out L{flush} in C{abandoned}. C{report}, if
    given, hears C{(alert, channel name, "sent" | "failed" | "dropped")} as each alert's
    fate is decided.
    """

    _log = proxy_logger()

    def __init__(
        self,
        name: str,
        send: Callable[[Alert], Deferred],
        clock: IReactorTime,
        limit: int,
        max_attempts: int,
        retry_delay: float,
        report: Callable[[Alert, str, str], None] | None = None,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.name = name
        self.deadline = deadline
        self._report = report
        self._send = send
        self._clock = clock
        self._limit = limit
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._waiting: deque[Alert] = deque()
        self._current: Alert | None = None
        self._attempts = 0
        self._in_flight: Deferred | None = None
        self._deadline_call: IDelayedCall | None = None
        self._expired: Deferred | None = None
        self._retry_call: IDelayedCall | None = None
        self._pumping = False
        self._flushing = False
        self._closed = False
        self._flush_timer: IDelayedCall | None = None
        self._flush_waiters: list[Deferred[None]] = []
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.abandoned = 0

    @property
    def pending(self) -> int:
        """How many alerts are waiting or being delivered."""
        return len(self._waiting) + (self._current is not None)

    def put(self, alert: Alert) -> None:
        """Queue C{alert} for delivery; returns at once and never raises."""
        # The caller is the relaying path: a bug here must cost an alert, not a frame.
        try:
            self._enqueue(alert)
        except Exception:  # noqa: BLE001
            self._log.failure("alerts: {channel} queue failed to take an alert", channel=self.name)

    def flush(self, timeout: float) -> Deferred[None]:
        """
        Deliver what is queued, without waiting for retries, then stop.

        A pending retry is attempted at once, and a transient failure gives the
        alert up instead of scheduling another retry. The returned Deferred fires
        when nothing is queued or in flight, or after C{timeout} seconds, when the
        remaining alerts are abandoned (logged) and the delivery in flight is
        cancelled. Afterwards the queue sends nothing more and holds no timer.
        """
        if self._closed:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._flush_waiters.append(waiter)
        if not self._flushing:
            self._flushing = True
            self._flush_timer = self._clock.callLater(timeout, self._flush_timed_out)
            if self._retry_call is not None:
                self._retry_call.cancel()
                self._attempt()
        self._check_flushed()
        return waiter

    def _outcome(self, alert: Alert, outcome: str) -> None:
        if self._report is not None:
            self._report(alert, self.name, outcome)

    def _enqueue(self, alert: Alert) -> None:
        if self._closed:
            self.dropped += 1
            self._outcome(alert, "dropped")
            self._log.warn(
                "alerts: {channel} is shut down; alert {key} for {station} dropped",
                channel=self.name,
                key=alert.key,
                station=alert.station_id,
            )
            return
        self._waiting.append(alert)
        if len(self._waiting) > self._limit:
            oldest = self._waiting.popleft()
            self.dropped += 1
            self._outcome(oldest, "dropped")
            self._log.warn(
                "alerts: {channel} queue full ({limit} waiting); dropped the oldest alert {key} for"
                " {station} ({dropped} dropped so far)",
                channel=self.name,
                limit=self._limit,
                key=oldest.key,
                station=oldest.station_id,
                dropped=self.dropped,
            )
        self._pump()

    def _pump(self) -> None:
        """Start the next delivery if none is under way (a loop, so synchronous sends don't recurse)."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._current is None and self._waiting and not self._closed:
                self._current = self._waiting.popleft()
                self._attempts = 0
                self._attempt()
        finally:
            self._pumping = False

    def _attempt(self) -> None:
        self._retry_call = None
        self._attempts += 1
        alert = self._current
        sending = self._in_flight = maybeDeferred(self._send, alert)
        # Set before the callbacks: an attempt already over cancels it at once.
        self._deadline_call = self._clock.callLater(self.deadline, self._past_deadline, sending, alert)
        sending.addCallbacks(
            self._delivered, self._not_delivered, callbackArgs=(sending, alert), errbackArgs=(sending, alert)
        )

    def _past_deadline(self, sending: Deferred, alert: Alert) -> None:
        self._deadline_call = None
        if sending is not self._in_flight:
            return
        self._expired = sending
        # The channel drops its connection on cancellation; a success it finds then still counts.
        try:
            sending.cancel()
        except Exception:  # noqa: BLE001
            self._log.failure("alerts: {channel} failed to cancel an attempt past its deadline", channel=self.name)
        if sending is self._in_flight:
            # Cancelling did not finish the attempt (a channel bug): the queue moves on all the same.
            self._not_delivered(Failure(CancelledError()), sending, alert)

    def _finished(self) -> None:
        """The attempt in flight is over: forget it and its deadline."""
        self._in_flight = None
        if self._deadline_call is not None and self._deadline_call.active():
            self._deadline_call.cancel()
        self._deadline_call = None

    def _delivered(self, _: object, sending: Deferred, alert: Alert) -> None:
        if sending is not self._in_flight:
            return
        self._finished()
        self.sent += 1
        self._outcome(alert, "sent")
        self._log.info(
            "alerts: alert {key} for {station} delivered on {channel} (attempt {attempt})",
            key=alert.key,
            station=alert.station_id,
            channel=self.name,
            attempt=self._attempts,
        )
        self._next()

    def _not_delivered(self, failure: Failure, sending: Deferred, alert: Alert) -> None:
        if sending is not self._in_flight:
            return
        self._finished()
        error = failure.value
        if sending is self._expired:
            self._expired = None
            error = DeliveryError(f"no answer within the deadline of {self.deadline:g} s", transient=True)
        transient = not isinstance(error, DeliveryError) or error.transient
        if transient and self._attempts < self._max_attempts and not self._flushing:
            delay = min(self._retry_delay * 2 ** (self._attempts - 1), MAX_RETRY_DELAY)
            self._log.warn(
                "alerts: alert {key} for {station} not delivered on {channel} (attempt {attempt} of"
                " {max_attempts}): {reason}; retrying in {delay:g} s",
                key=alert.key,
                station=alert.station_id,
                channel=self.name,
                attempt=self._attempts,
                max_attempts=self._max_attempts,
                reason=_reason(error),
                delay=delay,
            )
            self._retry_call = self._clock.callLater(delay, self._attempt)
            return
        self.failed += 1
        self._outcome(alert, "failed")
        self._log.error(
            "alerts: alert {key} for {station} given up on {channel} after {attempts} attempt{plural}: {reason}",
            key=alert.key,
            station=alert.station_id,
            channel=self.name,
            attempts=self._attempts,
            plural="" if self._attempts == 1 else "s",
            reason=_reason(error),
            transient=transient,
        )
        self._next()

    def _next(self) -> None:
        self._current = None
        self._pump()
        self._check_flushed()

    def _check_flushed(self) -> None:
        if self._flushing and not self._closed and self._current is None and not self._waiting:
            self._close()

    def _flush_timed_out(self) -> None:
        self._flush_timer = None
        count = self.pending
        self.abandoned += count
        self._log.error(
            "alerts: {count} alert{plural} abandoned on {channel}: not delivered within the shutdown timeout",
            count=count,
            plural="" if count == 1 else "s",
            channel=self.name,
        )
        self._waiting.clear()
        self._current = None
        in_flight = self._in_flight
        self._finished()
        self._close()
        if in_flight is not None:
            in_flight.cancel()

    def _close(self) -> None:
        self._closed = True
        if self._flush_timer is not None and self._flush_timer.active():
            self._flush_timer.cancel()
        self._flush_timer = None
        waiters, self._flush_waiters = self._flush_waiters, []
        for waiter in waiters:
            waiter.callback(None)
