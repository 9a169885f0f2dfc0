"""
The durable outbox as a service of the daemon's tree (L{OutboxService}): the store's one
writer thread, the file read at start-up (before the proxy listens, as the state file
is) and the pending group written at shutdown.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from ..config.model import OutboxConfig
from .outbox import Outbox
from .outbox_db import TRIM, CorruptOutbox, Loaded, describe, keep_aside
from .outbox_store import OutboxStore
from .writer_thread import WriterThread


TRIM_INTERVAL = 60.0
"""Seconds between two applications of the bounds when no frame comes."""


class OutboxService(Service):
    """Owns the outbox (L{outbox}), its store and its writer thread."""

    def __init__(self, config: OutboxConfig, reactor: Any, retry_interval: float = 5.0) -> None:
        super().__init__()
        self._reactor = reactor
        self._writer = WriterThread(reactor, "ocppproxy-outbox")
        self.store = OutboxStore(config, reactor, self._run, retry_interval=retry_interval)
        self.outbox = Outbox(self.store, reactor.seconds)
        # max_age applies with every group; an idle outbox gets one a minute.
        self._trim = LoopingCall(self.store.write, (TRIM,))
        self._trim.clock = reactor

    def _run(self, function, *args) -> Deferred:
        return self._writer.run(function, *args)

    def startService(self) -> None:
        """
        Start the writer thread and read the file now, before the proxy takes stations (a
        start-up read, like the state file's); a file that cannot be opened leaves the
        outbox in memory (a fault episode), a corrupt one is kept aside.
        """
        super().startService()
        self._writer.start()
        store = self.store
        try:
            try:
                store.db.open()
            except CorruptOutbox as error:
                aside = keep_aside(store.db.path, self._reactor.seconds())
                store._log.error(
                    "outbox {path} is corrupt ({reason}); kept as {aside}, starting a new one",
                    path=store.db.path, reason=describe(error), aside=aside,
                )
                store.db.open()
            loaded = store.db.load()
        except Exception:
            store.fault(Failure())
            loaded = Loaded()
        self.outbox.restore(loaded)
        self._trim.start(TRIM_INTERVAL, now=False)

    def stopService(self) -> Deferred:
        """Write the pending group, close the file, stop the thread (once)."""
        if not self.running:
            return succeed(None)
        super().stopService()
        if self._trim.running:
            self._trim.stop()

        return self.store.stop().addBoth(lambda _: self._writer.stop())
