"""
The Apprise channel: alerts to any service the C{apprise} library knows (ntfy, Telegram,
Slack, Teams, mailto, json, ...), one delivery queue per URL.

Apprise is synchronous: each notification runs in a thread of the channel's own pool of
one thread (not the reactor's). A thread cannot be stopped: when the delivery queue
cancels an attempt past its deadline, the attempt fails at once, the call goes on in
its thread (Apprise's own timeout, the same deadline, ends it) and what it returns is
ignored, only logged. A late success therefore means the alert may arrive twice, once
more by the retry. The channel's next attempt waits in its pool for that thread, and
an attempt cancelled before its thread started never starts.

Apprise URLs carry tokens in any of their parts (Telegram's bot token is the host):
nothing here logs a URL, only its scheme and its place in the list (C{apprise[0]}),
and texts from Apprise are cleared of every part of the URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ..config.apprise_urls import quiet_apprise_logger as _quiet_apprise_logger
from ..config.model import AppriseSettings
from ..logs import proxy_logger
from .alert import Alert, DeliveryError

_NOT_STARTED = object()
# Parts of a URL shorter than this (ports, "json") are not worth hiding and would blank out words.
_SHORTEST_SECRET = 4


def url_scheme(url: str) -> str:
    """C{ntfy://} for an ntfy URL: what the log may say about an Apprise URL."""
    scheme, separator, _ = url.partition("://")
    return f"{scheme}://" if separator else "?"


def scrub(text: str, url: str) -> str:
    """C{text} with the URL, and every part of it a token could hide in, replaced by C{<redacted>}."""
    parts = sorted({url, *re.split(r"[/:@?&=#,]+", url.partition("://")[2])}, key=len, reverse=True)
    for part in parts:
        if len(part) >= _SHORTEST_SECRET:
            text = text.replace(part, "<redacted>")
    return text


def notify_once(url: str, title: str, body: str, timeout: float) -> str | None:
    """
    Send one notification to C{url}, blocking (call it in a thread). Returns None on
    success, else why not: Apprise's warnings, cleared of the URL's parts.
    """
    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(url):
        return "Apprise does not accept the URL"
    with notifier.notify(body=body, title=title, timeout=timeout) as result:
        if result:
            return None
        warnings = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
        status = result.status.name.lower()
    reason = "; ".join(dict.fromkeys(warnings)) or "no details"
    return scrub(f"{status}: {reason}", url)[:500]


class _Attempt:
    """Whether an attempt was cancelled: read by its thread before it starts the call."""

    cancelled = False


class AppriseChannel:
    """
    Sends alerts to one Apprise URL in a thread of C{pool} (the channel's own, of one
    thread); C{name} (C{apprise[0]}) is how logs call it. C{timeout} is Apprise's own
    for one notification (the channel's deadline). C{notify} is the blocking call,
    L{notify_once} unless a test replaces it.
    """

    _log = proxy_logger()

    def __init__(
        self,
        name: str,
        url: str,
        reactor,
        pool: ThreadPool,
        timeout: float,
        notify: Callable[[str, str, str, float], str | None] = notify_once,
    ) -> None:
        self.name = name
        self._url = url
        self._reactor = reactor
        self._pool = pool
        self._timeout = timeout
        self._notify = notify
        self._where = f"{name} ({url_scheme(url)})"

    def send(self, alert: Alert) -> Deferred[None]:
        """
        Notify C{alert}'s subject and text; the Deferred fires with None once Apprise
        reports success, or fails with a transient L{DeliveryError} (Apprise does not
        tell a refusal from an outage, so every failure is worth a retry). Cancelling
        it fails it at once; the call, if under way, is left to finish in its thread
        and its outcome is only logged.
        """
        attempt = _Attempt()

        def cancel(_: Deferred) -> None:
            attempt.cancelled = True

        result: Deferred[None] = Deferred(cancel)

        def work() -> object:
            if attempt.cancelled:
                return _NOT_STARTED
            return self._notify(self._url, alert.subject, alert.text, self._timeout)

        working = deferToThreadPool(self._reactor, self._pool, work)
        working.addBoth(self._finished, result, alert)
        return result

    def _finished(self, outcome: object, result: Deferred[None], alert: Alert) -> None:
        if isinstance(outcome, Failure):
            problem: str | None = f"{outcome.type.__name__}: {scrub(outcome.getErrorMessage(), self._url)}"
        else:
            problem = outcome
        if result.called:
            if outcome is not _NOT_STARTED:
                self._late(problem, alert)
            return
        if problem is None:
            result.callback(None)
        else:
            result.errback(DeliveryError(f"Apprise could not notify {self._where}: {problem}", transient=True))

    def _late(self, problem: str | None, alert: Alert) -> None:
        if problem is None:
            self._log.warn(
                "alerts: Apprise notified {channel} of alert {key} for {station} after the attempt's deadline; it"
                " counted as failed, so the alert may arrive twice",
                channel=self._where,
                key=alert.key,
                station=alert.station_id,
            )
        else:
            self._log.info(
                "alerts: Apprise gave up notifying {channel} of alert {key} for {station} after the attempt's"
                " deadline: {problem}",
                channel=self._where,
                key=alert.key,
                station=alert.station_id,
                problem=problem,
            )


def apprise_channels(
    settings: AppriseSettings, reactor, timeout: float
) -> dict[str, tuple[AppriseChannel, ThreadPool]]:
    """
    One channel per URL of C{settings}, by name (C{apprise[0]}, ...), each with its own
    thread pool of one thread (not started): a notification that outlives its deadline
    holds its own channel's thread only. C{timeout} is Apprise's for one notification.
    """
    _quiet_apprise_logger()
    channels = {}
    for index, url in enumerate(settings.urls):
        name = f"apprise[{index}]"
        pool = ThreadPool(minthreads=0, maxthreads=1, name=f"ocppproxy-{name}")
        channels[name] = (AppriseChannel(name, url, reactor, pool, timeout), pool)
    return channels


def stop_pool(pool: ThreadPool, reactor) -> Deferred[None]:
    """
    Stop C{pool}, joining its threads in the reactor's own pool (a thread still in an
    Apprise call may take up to its timeout); the Deferred fires once they are gone.
    """
    return deferToThreadPool(reactor, reactor.getThreadPool(), pool.stop)
