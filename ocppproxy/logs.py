"""
Loggers for the daemon's own events, filtered by the configured C{log_level}, and the
same filter in front of the observers twistd attached, for Twisted's and Autobahn's
own events.

twistd owns the log observers. Our events pass the level filter on their way out
(L{proxy_logger}); once twistd has attached its observers, L{filter_twistd_observers}
puts the same filter in front of them, so Twisted's own lines (ClientService's
"Scheduling retry", factories starting and stopping) follow C{log_level} too.
Autobahn's debug events of our protocols are never emitted, whatever the level (see
L{autobahn_logger}).
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    globalLogPublisher,
)
from txaio.tx import Logger as TxaioLogger

_LEVELS = {
    "error": LogLevel.error,
    "warn": LogLevel.warn,
    "info": LogLevel.info,
    "debug": LogLevel.debug,
}

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_observer = FilteringLogObserver(globalLogPublisher, [_predicate])


def proxy_logger(namespace: str | None = None) -> Logger:
    """
    A L{Logger} whose events pass the configured level filter. As a class attribute it
    is named after the class; at module level pass C{__name__} (else every module-level
    logger would be named after this module).
    """
    return Logger(namespace=namespace, observer=_observer)


_debug = False


def set_log_level(name: str) -> None:
    """Apply C{log_level} (error, warn, info or debug) to every ocppproxy logger."""
    global _debug
    _predicate.setLogLevelForNamespace("", _LEVELS[name])
    _debug = name == "debug"


def filter_twistd_observers(publisher: LogPublisher = globalLogPublisher) -> bool:
    """
    Put the C{log_level} filter in front of every observer of C{publisher} (twistd's
    log file, standard output or journal), so that Twisted's and Autobahn's own events
    are filtered like ours; call once logging has begun (when the reactor runs).

    L{LogPublisher} has no public way to list its observers: this reads its private
    C{_observers} (a list since Twisted 15.2). Without it nothing changes and False is
    returned (the caller warns); True once the observers are wrapped.
    """
    observers: list[ILogObserver] | None = getattr(publisher, "_observers", None)
    if not isinstance(observers, list):
        return False
    for observer in list(observers):
        if not isinstance(observer, _LevelFilter):
            publisher.removeObserver(observer)
            publisher.addObserver(_LevelFilter(observer, [_predicate]))
    return True


class _LevelFilter(FilteringLogObserver):
    """The C{log_level} filter in front of one of twistd's observers (a type of its own: never wrapped twice)."""


def debug_enabled() -> bool:
    """Whether debug events would be emitted: lets the hot path skip building them (a flag, no lookup)."""
    return _debug


def autobahn_logger(namespace: str) -> TxaioLogger:
    """
    Autobahn's own logger for our protocol classes (their C{log}), held at info whatever
    txaio's global level: at debug Autobahn writes each raw opening handshake to the
    log, and with it the station's C{Authorization} header and the credentials the
    proxy sends upstream. twistd's observers show every level, so this is the filter.
    """
    return TxaioLogger(level="info", logger=Logger, namespace=namespace)
