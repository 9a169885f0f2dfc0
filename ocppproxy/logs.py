"""
Loggers for the daemon's own events, filtered by the configured C{log_level}.

twistd owns the log observers; we only put a level filter in front of the events
that ocppproxy emits, so Twisted's and Autobahn's own events are left as they are.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

_LEVELS = {
    "error": LogLevel.error,
    "warn": LogLevel.warn,
    "info": LogLevel.info,
    "debug": LogLevel.debug,
}

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])


def proxy_logger() -> Logger:
    """A L{Logger} whose events pass the configured level filter (use as class attribute)."""
    return Logger(observer=_observer)


_debug = False


def set_log_level(name: str) -> None:
    """Apply C{log_level} (error, warn, info or debug) to every ocppproxy logger."""
    global _debug
    _predicate.setLogLevelForNamespace("", _LEVELS[name])
    _debug = name == "debug"


def debug_enabled() -> bool:
    """Whether debug events would be emitted: lets the hot path skip building them (a flag, no lookup)."""
    return _debug
