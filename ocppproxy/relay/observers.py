"""
Fanning the proxy's events out to its observers (the notifier, the status page's
activity) and its frames to the traffic log, each isolated from the others: an
observer that raises never hides an event from the next one, nor breaks the relaying.
"""

from __future__ import annotations

from ..core.observer import FrameRecorder, ProxyObserver
from ..logs import proxy_logger

_log = proxy_logger(__name__)


class _FailureLog:
    """Logs the first failure of each observer on each event; later ones would only flood the journal."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def failed(self, observer: str, event: str, station_id: object) -> None:
        """Call from an C{except} block: logs the exception being handled, once per C{observer} and C{event}."""
        if (observer, event) in self._seen:
            return
        self._seen.add((observer, event))
        _log.failure(
            "observer {observer} failed on {event} (station {station}); its next failures on {event} are not logged",
            observer=observer,
            event=event,
            station=station_id,
        )


class Observers:
    """
    A L{ProxyObserver} passing every event to several observers in turn. An observer
    that raises is logged (once per observer and event, with its class name and the
    event) and the others still get the event.
    """

    def __init__(self, *observers: ProxyObserver) -> None:
        self.observers = list(observers)
        self._failures = _FailureLog()

    def __getattr__(self, event: str):
        if event.startswith("_"):
            raise AttributeError(event)
        methods = [getattr(observer, event) for observer in self.observers]
        failures = self._failures

        def fan_out(*args) -> None:
            for method in methods:
                try:
                    method(*args)
                except Exception:  # noqa: BLE001 (any observer error is isolated)
                    failures.failed(_owner_name(method), event, args[0] if args else None)

        setattr(self, event, fan_out)
        return fan_out


def _owner_name(method) -> str:
    """The class name of a bound method's object (the observer's name in the log)."""
    return type(getattr(method, "__self__", method)).__name__


def isolated_recorder(recorder: FrameRecorder) -> FrameRecorder:
    """C{recorder} (the traffic log) whose failures are logged once instead of raised into the relaying path."""
    name = getattr(recorder, "__qualname__", type(recorder).__name__)
    failures = _FailureLog()

    def record(station_id: str, direction: str, upstream: str | None, payload: bytes) -> None:
        try:
            recorder(station_id, direction, upstream, payload)
        except Exception:  # noqa: BLE001 (any observer error is isolated)
            failures.failed(name, "frame " + direction, station_id)

    return record
