"""
Building what the notifier sends through: the alert channels the settings enable and
the station names, at start-up and again at each configuration reload.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool

from ..config.model import NotifyConfig
from ..logs import proxy_logger
from .alert import Alert
from .apprise_channel import apprise_channels, stop_pool
from .email import EmailChannel
from .names import StationNames, load_client_names
from .pushover import PushoverChannel
from .webhook import WebhookChannel

_log = proxy_logger(__name__)

Channels = dict[str, Callable[[Alert], Deferred]]


class BuiltChannels(NamedTuple):
    """
    What L{build_channels} makes: the channels by name, the starters to run when the
    notifier starts using them (a thread pool), and the closers that release their
    connections and threads once they are no longer used (may return Deferreds).
    """

    channels: Channels
    starters: list[Callable[[], object]]
    closers: list[Callable[[], object]]


def _http_client(reactor, closers: list[Callable[[], object]]) -> HTTPClient:
    """A treq client with a persistent connection pool of its own, closed by one of C{closers}."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    closers.append(pool.closeCachedConnections)
    return HTTPClient(Agent(reactor, pool=pool))


def build_channels(settings: NotifyConfig, reactor) -> BuiltChannels:
    """
    The channels C{settings} enables. A channel that cannot be built (an unreadable
    CA file) is left out with one warning. Each Apprise URL is a channel of its own
    (C{apprise[0]}, ...), so that a failing service is retried without repeating the
    alert on the others.
    """
    channels: Channels = {}
    starters: list[Callable[[], object]] = []
    closers: list[Callable[[], object]] = []
    if settings.email is not None:
        try:
            channels["email"] = EmailChannel(
                settings.email,
                reactor,
                ca_file=settings.email.smtp.ca_file,
                deadline=settings.attempt_deadline("email"),
            ).send
        except (ValueError, OSError) as error:
            _log.warn("alerts: email channel disabled: {problem}", problem=str(error))
    if settings.pushover is not None:
        channels["pushover"] = PushoverChannel(settings.pushover, http=_http_client(reactor, closers)).send
    if settings.webhook is not None:
        channels["webhook"] = WebhookChannel(settings.webhook, http=_http_client(reactor, closers)).send
    if settings.apprise is not None:
        # One deadline for every URL: the Apprise section's timeout, else delivery_timeout.
        by_url = apprise_channels(settings.apprise, reactor, settings.attempt_deadline("apprise[0]"))
        for name, (channel, pool) in by_url.items():
            channels[name] = channel.send
            starters.append(pool.start)
            closers.append(partial(stop_pool, pool, reactor))
    return BuiltChannels(channels, starters, closers)


def load_station_names(path: str | None) -> StationNames:
    """The names in the C{client_names} file; a problem is one warning and no names."""
    return station_names(*read_station_names(path))


def read_station_names(path: str | None) -> tuple[StationNames, str | None]:
    """
    The names in the C{client_names} file and the problem reading it, if any (no names
    then), logging nothing: a reload reads the file in a thread (see L{station_names}).
    """
    names, problem = load_client_names(path)
    return StationNames(names), problem


def station_names(names: StationNames, problem: str | None) -> StationNames:
    """C{names}, after one warning for C{problem} if there is one."""
    if problem:
        _log.warn("client names: {problem}; stations are named by their ids", problem=problem)
    return names


def channels_differ(old: NotifyConfig, new: NotifyConfig) -> bool:
    """Whether going from C{old} to C{new} needs new channels and delivery queues."""
    keys = ("email", "pushover", "webhook", "apprise", "queue_limit", "max_attempts", "retry_delay")
    keys += ("delivery_timeout",)
    return any(getattr(old, key) != getattr(new, key) for key in keys)
