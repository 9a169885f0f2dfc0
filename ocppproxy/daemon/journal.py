"""
twistd's log for the systemd journal: ``twistd --logger=ocppproxy.daemon.journal.log_observer``.

When standard output is the journal's stream (C{$JOURNAL_STREAM} names its device and
inode), each line starts with its syslog priority, C{<3>} error, C{<4>} warning,
C{<6>} info, C{<7>} debug, which journald takes as the entry's level and strips
(C{SyslogLevelPrefix=}, on by default), and without a time stamp (journald adds its
own). Anywhere else the log is twistd's usual text.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO

from twisted.logger import FileLogObserver, ILogObserver, LogEvent, LogLevel, eventAsText, textFileLogObserver

_PRIORITIES = {
    LogLevel.critical: 2,
    LogLevel.error: 3,
    LogLevel.warn: 4,
    LogLevel.info: 6,
    LogLevel.debug: 7,
}


def format_for_journal(event: LogEvent) -> str:
    """C{"<6>[system] text\\n"}, every line of a multi-line event (a traceback) with the prefix."""
    priority = _PRIORITIES.get(event.get("log_level"), 6)
    text = eventAsText(event, includeTimestamp=False)
    return "".join(f"<{priority}>{line}\n" for line in text.splitlines())


def is_journal_stream(stream: IO, environ: Mapping[str, str]) -> bool:
    """Whether C{stream} is the journal's stream, as C{$JOURNAL_STREAM} (C{device:inode}) says."""
    try:
        device, inode = (int(part) for part in environ.get("JOURNAL_STREAM", "").split(":"))
        status = os.fstat(stream.fileno())
    except (ValueError, OSError):
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def log_observer(stream: IO | None = None, environ: Mapping[str, str] | None = None) -> ILogObserver:
    """
    The log observer factory for twistd's C{--logger}: C{stream} (standard output) in
    the journal's format when it is the journal's stream, in twistd's otherwise.
    """
    stream = sys.stdout if stream is None else stream
    if is_journal_stream(stream, os.environ if environ is None else environ):
        return FileLogObserver(stream, format_for_journal)
    return textFileLogObserver(stream)
