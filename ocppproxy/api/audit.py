"""
The audit trail of the API: one line per C{operate} request (token name, address,
station, action, outcome, duration) to the log and, with the traffic log on, to
C{audit.jsonl} beside C{traffic.jsonl}, written by a thread of its own. Never a payload.
"""

from __future__ import annotations

import json
import os

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from ..logs import proxy_logger
from ..status.snapshot import iso_time

FILE_NAME = "audit.jsonl"


class AuditTrail(Service):
    """
    Records operate requests; with C{directory}, also as JSON lines in
    C{directory}/audit.jsonl (C{reactor} runs the writer thread's results).
    """

    _log = proxy_logger()

    def __init__(self, reactor, directory: str | None = None) -> None:
        self._clock = reactor
        self.path = os.path.join(directory, FILE_NAME) if directory else None
        self._pool: ThreadPool | None = None
        self._writing: Deferred = succeed(None)

    def startService(self) -> None:
        super().startService()
        if self.path is not None:
            self._pool = ThreadPool(1, 1, name="audit")
            self._pool.start()

    def stopService(self) -> Deferred:
        super().stopService()
        pool, self._pool = self._pool, None

        def stop(_):
            if pool is not None:
                pool.stop()

        return self._writing.addBoth(stop)

    def record(self, token: str, address: str, station: str, action: str, outcome: str, duration: float) -> None:
        """One operate request done: a log line, and a line in audit.jsonl (no payload, ever)."""
        self._log.info(
            "api audit: {token} from {address}: {action} on {station}: {outcome} in {duration:.3f} s",
            token=token, address=address, station=station, action=action, outcome=outcome, duration=duration,
        )
        if self._pool is None or self.path is None:
            return
        line = json.dumps(
            {"time": iso_time(self._clock.seconds()), "token": token, "address": address, "station": station,
             "action": action, "outcome": outcome, "duration": round(duration, 3)},
            ensure_ascii=False,
        ).encode("utf-8") + b"\n"
        path = self.path
        pool = self._pool
        def write() -> None:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

        def failed(failure) -> None:
            self._log.failure("api audit: cannot write {path}", failure, path=path)

        self._writing = self._writing.addBoth(lambda _: deferToThreadPool(self._clock, pool, write).addErrback(failed))
