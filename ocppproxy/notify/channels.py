"""
Building what the notifier sends through: the alert channels the settings enable and
the station names, at start-up and again at each configuration reload.
"""

from __future__ import annotations

from collections.abc import Callable

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool

from ..config import NotifyConfig
from ..logs import proxy_logger
from .alert import Alert
from .email import EmailChannel
from .names import StationNames, load_client_names
from .pushover import PushoverChannel

_log = proxy_logger()

Channels = dict[str, Callable[[Alert], Deferred]]


def build_channels(settings: NotifyConfig, reactor) -> tuple[Channels, list[Callable[[], object]]]:
    """
    The channels C{settings} enables, by name, and the closers that release their
    connections once they are no longer used. A channel that cannot be built (an
    unreadable CA file) is left out with one warning.
    """
    channels: Channels = {}
    closers: list[Callable[[], object]] = []
    if settings.email is not None:
        try:
            channels["email"] = EmailChannel(settings.email, reactor, ca_file=settings.email.smtp.ca_file).send
        except (ValueError, OSError) as error:
            _log.warn("alerts: email channel disabled: {problem}", problem=str(error))
    if settings.pushover is not None:
        pool = HTTPConnectionPool(reactor, persistent=True)
        closers.append(pool.closeCachedConnections)
        http = HTTPClient(Agent(reactor, pool=pool))
        channels["pushover"] = PushoverChannel(settings.pushover, http=http).send
    return channels, closers


def load_station_names(path: str | None) -> StationNames:
    """The names in the C{client_names} file; a problem is one warning and no names."""
    names, problem = load_client_names(path)
    if problem:
        _log.warn("client names: {problem}; stations are named by their ids", problem=problem)
    return StationNames(names)


def channels_differ(old: NotifyConfig, new: NotifyConfig) -> bool:
    """Whether going from C{old} to C{new} needs new channels and delivery queues."""
    keys = ("email", "pushover", "queue_limit", "max_attempts", "retry_delay")
    return any(getattr(old, key) != getattr(new, key) for key in keys)
