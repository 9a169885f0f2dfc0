"""
What the configuration asks of the C{apprise} library: whether it is installed, and which
URLs it accepts. Here, below the notifier, so that checking the C{notify.apprise} section
needs nothing of the channel that delivers through it (L{ocppproxy.notify.apprise_channel}).
"""

from __future__ import annotations

import logging

EXTRA = "ocppproxy[apprise]"
"""The pip extra that installs Apprise."""


def apprise_missing() -> bool:
    """Whether the C{apprise} library cannot be imported."""
    try:
        import apprise  # noqa: F401
    except ImportError:
        return True
    return False


def quiet_apprise_logger() -> None:
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

    quiet_apprise_logger()
    return [index for index, url in enumerate(urls) if apprise.Apprise.instantiate(url) is None]
