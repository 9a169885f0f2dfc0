"""
The OCPP traffic log: every frame that crosses the wire, as one JSON line, in a file
rotated at midnight UTC.

The relaying path only appends a tuple to a bounded buffer (and counts what it has to
drop when the buffer is full). A dedicated one-thread pool formats the lines and writes
them, so a slow disk never holds up the reactor.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from datetime import UTC, datetime

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.logfile import BaseLogFile, DailyLogFile
from twisted.python.threadpool import ThreadPool

from ..core.redact import Redactor
from ..logs import proxy_logger

FILE_NAME = "traffic.jsonl"
_DEFAULT_REDACTOR = Redactor()


class TrafficFile(DailyLogFile):
    """
    A L{DailyLogFile} on UTC days, rotated by the time of the line being written rather
    than the wall clock: a line stamped 23:59:59.9 and written just after midnight still
    goes to its own day's file. The current day's file is C{traffic.jsonl}, earlier days'
    are C{traffic.jsonl.YYYY_M_D}. Used from one thread only.
    """

    def __init__(self, name: str, directory: str, first_line_time: float) -> None:
        self._line_time: float | None = first_line_time
        # Frames carry id tags and the like: not for every local user to read.
        super().__init__(name, directory, defaultMode=0o640)

    def toDate(self, *args):
        if not args and self._line_time is not None:
            args = (self._line_time,)
        return time.gmtime(*args)[:3]

    def _openFile(self) -> None:
        BaseLogFile._openFile(self)
        # An empty (new or just rotated) file belongs to the day of the line about to be
        # written; one with lines to the day it was last written.
        if os.fstat(self._file.fileno()).st_size == 0:
            self.lastDate = self.toDate()
        else:
            self.lastDate = self.toDate(os.stat(self.path).st_mtime)

    def write_lines(self, when: float, data: bytes) -> None:
        """
        Append lines that all belong to the UTC day of C{when}, rotating first if that
        day is new: all of them, or (raising the C{OSError}) none.
        """
        self._line_time = when
        if self.shouldRotate():
            self.rotate()
        start = self._file.tell()
        remaining = memoryview(data)
        try:
            # A nearly full disk takes part of a write and says so only in the count.
            while remaining:
                remaining = remaining[self._file.write(remaining) :]
        except OSError:
            # Cut the part that was taken: the file keeps whole lines only.
            self._file.truncate(start)
            self._file.seek(start)
            raise
        self.lastDate = max(self.lastDate, self.toDate())


def format_line(
    when: float,
    station_id: str,
    direction: str,
    upstream: str | None,
    payload: bytes,
    redactor: Redactor = _DEFAULT_REDACTOR,
) -> bytes:
    """
    One traffic log line: the frame as a JSON string, with time, station, direction,
    upstream; verbatim but for the secrets C{redactor} masks.
    """
    record = {
        "time": datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "station": station_id,
        "direction": direction,
        "upstream": upstream,
        "frame": redactor.text(payload),
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


class TrafficLog(Service):
    """
    A L{ocppproxy.core.observer.FrameObserver} among the proxy's observers: writes every
    frame crossing the wire (see L{frame_crossed}) to C{directory}/traffic.jsonl from its
    own thread.

    At most C{max_pending} lines wait for the writer; beyond that new frames are dropped
    and counted in C{dropped}. Lines are written C{flush_delay} seconds after the first
    one waiting, and at once while the writer keeps up with a backlog. L{stopService}
    writes what is waiting, closes the file and stops the thread. C{written} counts the
    lines written, C{failed} those lost to write errors (logged once per outage).
    C{redactor} masks the secrets in the frames (in the writer thread, off the reactor).
    """

    _log = proxy_logger()

    def __init__(
        self,
        directory: str,
        reactor,
        clock=None,
        max_pending: int = 10000,
        flush_delay: float = 0.2,
        redactor: Redactor | None = None,
    ) -> None:
        self.directory = directory
        self._redactor = redactor or _DEFAULT_REDACTOR
        self._reactor = reactor
        self._clock = clock or reactor
        self._max_pending = max_pending
        self._flush_delay = flush_delay
        self._pending: deque[tuple] = deque()
        self._pool = ThreadPool(minthreads=0, maxthreads=1, name="ocppproxy-traffic-log")
        self._file: TrafficFile | None = None  # the writer thread's
        self._writing: Deferred | None = None
        self._timer: IDelayedCall | None = None
        self._idle_waiters: list[Deferred[None]] = []
        self._closed = False
        self._dropped_unreported = 0
        self._failing = False
        self._lost_unreported = 0
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def frame_crossed(self, station_id: str, direction: str, upstream: str | None, payload: bytes) -> None:
        """Take note of one frame; returns at once."""
        pending = self._pending
        if len(pending) >= self._max_pending or self._closed:
            self._drop()
            return
        pending.append((self._clock.seconds(), station_id, direction, upstream, payload))
        if self._timer is None and self._writing is None:
            self._timer = self._clock.callLater(self._flush_delay, self._write_pending)

    def _drop(self) -> None:
        self.dropped += 1
        if self._closed:
            return
        self._dropped_unreported += 1
        if self._dropped_unreported == 1:
            self._log.warn(
                "traffic log: {count} lines waiting for the disk, dropping new frames",
                count=len(self._pending),
            )

    def flush(self) -> Deferred[None]:
        """Write what is waiting now; fires once nothing is waiting or being written."""
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        self._write_pending()
        return waiter

    def _write_pending(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self._writing is not None:
            return
        if not self._pending:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
            return
        batch = list(self._pending)
        self._pending.clear()
        if not self._pool.started:
            self._pool.start()
        self._writing = deferToThreadPool(self._reactor, self._pool, self._write_batch, batch)
        self._writing.addBoth(self._batch_done, len(batch))

    def _batch_done(self, result, count: int) -> None:
        self._writing = None
        if isinstance(result, Failure):
            self.failed += count
            self._lost_unreported += count
            if not self._failing:
                # Once per outage: a full disk must not fill the daemon's log as well.
                self._failing = True
                self._log.error(
                    "traffic log: cannot write to {directory}: {reason}; frames are lost until it works again",
                    directory=self.directory,
                    reason=result.getErrorMessage(),
                )
        else:
            self.written += count
            if self._failing:
                self._failing = False
                self._log.warn("traffic log: writing again; {count} lines were lost", count=self._lost_unreported)
                self._lost_unreported = 0
        if self._dropped_unreported:
            self._log.warn(
                "traffic log: {count} frames were not logged (writer overloaded)", count=self._dropped_unreported
            )
            self._dropped_unreported = 0
        self._write_pending()

    def _write_batch(self, batch: list[tuple]) -> None:
        """In the writer thread: format the lines, and write each UTC day's run of them at once."""
        run: list[bytes] = []
        run_start = run_day = None
        for entry in batch:
            when = entry[0]
            day = time.gmtime(when)[:3]
            if run and day != run_day:
                self._write_run(run_start, run)
                run = []
            if not run:
                run_start, run_day = when, day
            run.append(format_line(*entry, self._redactor))
        if run:
            self._write_run(run_start, run)

    def _write_run(self, when: float, lines: list[bytes]) -> None:
        if self._file is None:
            self._file = TrafficFile(FILE_NAME, self.directory, when)
        try:
            self._file.write_lines(when, b"".join(lines))
        except Exception:
            # The next batch opens the file afresh: a rotation that could not create the
            # new day's file (a full disk) leaves this one closed for good.
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
            raise

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def stopService(self) -> Deferred[None]:
        """Write what is waiting, close the file, stop the writer thread; fires when done."""
        super().stopService()
        if self._closed:
            return succeed(None)
        flushed = self.flush()

        def close(_):
            self._closed = True
            if not self._pool.started:
                return None
            return deferToThreadPool(self._reactor, self._pool, self._close_file)

        def stop_pool(_):
            if self._pool.started:
                self._pool.stop()

        return flushed.addCallback(close).addCallback(stop_pool)
