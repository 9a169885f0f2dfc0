"""
Periodic work as a service: a L{TimerService} child of the service that owns the work,
on the injected clock, stopped with it.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.internet import TimerService


class Periodic(TimerService):
    """
    Calls C{call} every C{interval} seconds on C{clock} while running: first one interval
    after start (or at start too, with C{at_start}). A call that raises stops the calls
    and is logged, as L{TimerService} does.
    """

    def __init__(self, interval: float, call: Callable[[], object], clock, *, at_start: bool = False) -> None:
        super().__init__(interval, self._tick)
        self.clock = clock
        self._call = call
        self._at_start = at_start
        self._first = True

    def startService(self) -> None:
        self._first = True
        super().startService()

    def _tick(self) -> object:
        if self._first and not self._at_start:
            # TimerService calls at once on start; the first call is due one interval later.
            self._first = False
            return None
        self._first = False
        return self._call()
