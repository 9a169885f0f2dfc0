"""
Loggers for the daemon's own events, filtered by the configured C{log_level}.

twistd owns the log observers; we only put a level filter in front of the events
that ocppproxy emits, so Twisted's and Autobahn's own events are left as they are,
but for Autobahn's debug events of our protocols, which are never emitted (see
L{autobahn_logger}).
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
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


def autobahn_logger(namespace: str) -> TxaioLogger:
    """
    Autobahn's own logger for our protocol classes (their C{log}), held at info whatever
    txaio's global level: at debug Autobahn writes each raw opening handshake to the
    log, and with it the station's C{Authorization} header and the credentials the
    proxy sends upstream. twistd's observers show every level, so this is the filter.
    """
    return TxaioLogger(level="info", logger=Logger, namespace=namespace)
