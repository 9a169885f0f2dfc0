"""
The Apprise channel: alerts to any service the C{apprise} library knows (ntfy, Telegram,
Slack, Teams, mailto, json, ...), one delivery queue per URL.

Apprise is synchronous: each notification runs in a thread of a small pool of our own
(not the reactor's), bounded twice: Apprise's own call timeout ends the thread's work,
and the Deferred gives up a little later should the thread not come back.

Apprise URLs carry tokens in any of their parts (Telegram's bot token is the host):
nothing here logs a URL, only its scheme and its place in the list (C{apprise[0]}),
and texts from Apprise are cleared of every part of the URL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ..config.model import AppriseSettings
from .alert import Alert, DeliveryError

EXTRA = "ocppproxy[apprise]"
"""The pip extra that installs Apprise."""

POOL_THREADS = 4
"""At most this many Apprise notifications run at once (one per URL, up to this)."""

_GRACE = 5.0
# Parts of a URL shorter than this (ports, "json") are not worth hiding and would blank out words.
_SHORTEST_SECRET = 4


def apprise_missing() -> bool:
    """Whether the C{apprise} library cannot be imported."""
    try:
        import apprise  # noqa: F401
    except ImportError:
        return True
    return False


def _quiet_apprise_logger() -> None:
    """
    Keep Apprise's own log records off stderr (Python's last-resort handler): each
    notification's warnings come back in its result, and only scrubbed reach our log.
    """
    apprise_logger = logging.getLogger("apprise")
    if not any(isinstance(handler, logging.NullHandler) for handler in apprise_logger.handlers):
        apprise_logger.addHandler(logging.NullHandler())
    apprise_logger.propagate = False


def unsupported_urls(urls: tuple[str, ...]) -> list[int]:
    """The positions of the URLs in C{urls} that Apprise does not accept (unknown scheme, missing token)."""
    import apprise

    _quiet_apprise_logger()
    return [index for index, url in enumerate(urls) if apprise.Apprise.instantiate(url) is None]


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


class AppriseChannel:
    """
    Sends alerts to one Apprise URL in a thread of C{pool}; C{name} (C{apprise[0]}) is
    how logs call it. C{notify} is the blocking call, L{notify_once} unless a test
    replaces it.
    """

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
        tell a refusal from an outage, so every failure is worth a retry).
        """
        working = deferToThreadPool(
            self._reactor, self._pool, self._notify, self._url, alert.subject, alert.text, self._timeout
        )
        working.addCallback(self._check)
        working.addTimeout(self._timeout + _GRACE, self._reactor, onTimeoutCancel=self._timed_out)
        return working

    def _check(self, problem: str | None) -> None:
        if problem is not None:
            raise DeliveryError(f"Apprise could not notify {self._where}: {problem}", transient=True)

    def _timed_out(self, _: object, timeout: float) -> None:
        raise DeliveryError(f"Apprise did not finish notifying {self._where} within {timeout:g} s", transient=True)


def apprise_channels(settings: AppriseSettings, reactor) -> tuple[dict[str, AppriseChannel], ThreadPool]:
    """One channel per URL of C{settings}, by name (C{apprise[0]}, ...), sharing one thread pool (not started)."""
    _quiet_apprise_logger()
    pool = ThreadPool(minthreads=0, maxthreads=min(len(settings.urls), POOL_THREADS), name="ocppproxy-apprise")
    channels = {
        f"apprise[{index}]": AppriseChannel(f"apprise[{index}]", url, reactor, pool, settings.timeout)
        for index, url in enumerate(settings.urls)
    }
    return channels, pool


def stop_pool(pool: ThreadPool, reactor) -> Deferred[None]:
    """
    Stop C{pool}, joining its threads in the reactor's own pool (a thread still in an
    Apprise call may take up to its timeout); the Deferred fires once they are gone.
    """
    return deferToThreadPool(reactor, reactor.getThreadPool(), pool.stop)
