"""
The notifier's channels: one L{DeliveryQueue} per channel, the resources the channels
start and close (Apprise's thread pool), and their replacement by a reload while the
old queues still deliver what they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime

from ..config.model import NotifyConfig
from .alert import Alert
from .delivery import DeliveryQueue


class AlertChannels:
    """
    Hands each alert to every channel's queue. C{report} hears C{(alert, channel,
    outcome)} as each queue decides an alert's fate. C{starters} run at L{start},
    C{closers} once the queues are flushed at L{close} (or, after a L{replace}, once the
    old queues are).
    """

    def __init__(
        self,
        settings: NotifyConfig,
        clock: IReactorTime,
        channels: Mapping[str, Callable[[Alert], Deferred]],
        report: Callable[[Alert, str, str], None],
        closers: list[Callable[[], object]] = (),
        starters: list[Callable[[], object]] = (),
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._report = report
        self._closers = list(closers)
        self._starters = list(starters)
        self.queues = self._queues(channels)
        self._retiring: set[Deferred] = set()

    def start(self) -> None:
        """Start the channels' resources."""
        for start in self._starters:
            start()

    def put(self, alert: Alert) -> None:
        """Queue C{alert} on every channel."""
        for queue in self.queues.values():
            queue.put(alert)

    def reconfigure(
        self,
        settings: NotifyConfig,
        channels: Mapping[str, Callable[[Alert], Deferred]] | None = None,
        closers: list[Callable[[], object]] = (),
        starters: list[Callable[[], object]] = (),
    ) -> None:
        """
        Use C{settings} from now on. With C{channels}, new alerts go to new queues for
        them (whose C{starters} run now); the old queues deliver what they hold within
        C{flush_timeout}, then their closers run. Without it the queues stay.
        """
        self._settings = settings
        if channels is None:
            return
        old_queues, old_closers = self.queues.values(), self._closers
        for start in starters:
            start()
        self.queues = self._queues(channels)
        self._closers = list(closers)
        retiring = self._flush_and_close(old_queues, old_closers)
        self._retiring.add(retiring)
        retiring.addCallback(lambda _: self._retiring.discard(retiring))

    def close(self) -> Deferred[None]:
        """Flush every queue, retiring ones included, within C{flush_timeout}, then close; never fails."""
        retired = DeferredList(list(self._retiring))
        flushed = self._flush_and_close(self.queues.values(), self._closers)
        return DeferredList([retired, flushed]).addCallback(lambda _: None)

    def _queues(self, channels: Mapping[str, Callable[[Alert], Deferred]]) -> dict[str, DeliveryQueue]:
        settings = self._settings
        return {
            name: DeliveryQueue(
                name,
                send,
                self._clock,
                settings.queue_limit,
                settings.max_attempts,
                settings.retry_delay,
                self._report,
                deadline=settings.attempt_deadline(name),
            )
            for name, send in channels.items()
        }

    def _flush_and_close(self, queues, closers) -> Deferred[None]:
        """Flush C{queues} within C{flush_timeout}, then run C{closers}; never fails."""
        flushes = [queue.flush(self._settings.flush_timeout) for queue in queues]
        flushed = DeferredList(flushes) if flushes else succeed(None)
        flushed.addCallback(lambda _: DeferredList([maybeDeferred(close) for close in closers]))
        return flushed.addCallback(lambda _: None)
