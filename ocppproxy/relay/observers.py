"""
Fanning the proxy's events out to its observers (the notifier, the status page's
activity) and its frames to the frame observers (the traffic log), each isolated from
the others: an observer that raises never hides an event from the next one, nor
breaks the relaying.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.observer import FrameObserver, FrameRecorder, ProxyObserver
from ..core.ocppj import Frame
from ..logs import proxy_logger

_log = proxy_logger(__name__)

_EVENTS = tuple(
    name for name in vars(ProxyObserver) if not name.startswith("_") and callable(getattr(ProxyObserver, name))
)
"""The methods of L{ProxyObserver}, one per event."""


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


def _fan_out(methods: list[Callable[..., None]], event: str, failures: _FailureLog) -> Callable[..., None]:
    """One call of C{event} passed to each of C{methods} in turn, each failure logged (once) and contained."""

    def fan_out(*args) -> None:
        for method in methods:
            try:
                method(*args)
            except Exception:  # noqa: BLE001 (any observer error is isolated)
                failures.failed(_owner_name(method), event, args[0] if args else None)

    return fan_out


def _frames_fan_out(methods: list[FrameRecorder], failures: _FailureLog) -> FrameRecorder:
    """Each frame passed to each of C{methods}, a failure logged once per observer and direction."""

    def record(station_id: str, direction: str, upstream: str | None, payload: bytes) -> None:
        for method in methods:
            try:
                method(station_id, direction, upstream, payload)
            except Exception:  # noqa: BLE001 (any observer error is isolated)
                failures.failed(_owner_name(method), "frame " + direction, station_id)

    return record


class Observers:
    """
    A L{ProxyObserver} passing every event to several observers in turn, and a frame
    recorder (L{record}) passing every frame to those that are L{FrameObserver}s. Each
    of C{observers} is a L{ProxyObserver}, a L{FrameObserver} or both; one that is
    neither (a method missing or misspelt) is refused here, at start-up. An observer
    that raises is logged (once per observer and event, with its class name and the
    event) and the others still get the event.
    """

    def __init__(self, *observers: ProxyObserver | FrameObserver) -> None:
        self.observers = list(observers)
        events = [observer for observer in observers if isinstance(observer, ProxyObserver)]
        frames = [observer for observer in observers if isinstance(observer, FrameObserver)]
        for observer in observers:
            if not isinstance(observer, ProxyObserver | FrameObserver):
                missing = [name for name in _EVENTS if not callable(getattr(observer, name, None))]
                raise TypeError(
                    f"{type(observer).__name__} is neither a ProxyObserver (it lacks {', '.join(missing)})"
                    " nor a FrameObserver (it lacks frame_crossed)"
                )
        failures = _FailureLog()
        fan = {name: _fan_out([getattr(observer, name) for observer in events], name, failures) for name in _EVENTS}
        self._station_connected = fan["station_connected"]
        self._station_disconnected = fan["station_disconnected"]
        self._upstream_connected = fan["upstream_connected"]
        self._upstream_disconnected = fan["upstream_disconnected"]
        self._upstream_attempt_failed = fan["upstream_attempt_failed"]
        # The two events of every frame call their fan-out directly (one Python call less
        # per frame), in place of the methods below.
        self.station_frame = fan["station_frame"]
        self.upstream_frame = fan["upstream_frame"]
        self._frame_dropped = fan["frame_dropped"]
        self._failover_started = fan["failover_started"]
        self._failover_ended = fan["failover_ended"]
        self.record: FrameRecorder | None = None
        """Every frame crossing the wire to each frame observer; None when there are none (nothing to pay)."""
        if frames:
            self.record = _frames_fan_out([observer.frame_crossed for observer in frames], failures)

    def station_connected(self, station_id: str, peer: str) -> None:
        self._station_connected(station_id, peer)

    def station_disconnected(self, station_id: str, code: int | None, reason: str | None) -> None:
        self._station_disconnected(station_id, code, reason)

    def upstream_connected(self, station_id: str, upstream: str, url: str) -> None:
        self._upstream_connected(station_id, upstream, url)

    def upstream_disconnected(self, station_id: str, upstream: str, url: str, reason: str) -> None:
        self._upstream_disconnected(station_id, upstream, url, reason)

    def upstream_attempt_failed(self, station_id: str, upstream: str, url: str, reason: str) -> None:
        self._upstream_attempt_failed(station_id, upstream, url, reason)

    def station_frame(self, station_id: str, frame: Frame, payload: bytes = b"") -> None:
        """Replaced per instance by its fan-out (see C{__init__})."""

    def upstream_frame(self, station_id: str, upstream: str, frame: Frame, payload: bytes = b"") -> None:
        """Replaced per instance by its fan-out (see C{__init__})."""

    def frame_dropped(self, station_id: str, upstream: str) -> None:
        self._frame_dropped(station_id, upstream)

    def failover_started(self, station_id: str) -> None:
        self._failover_started(station_id)

    def failover_ended(self, station_id: str, duration: float) -> None:
        self._failover_ended(station_id, duration)


def frame_recorder(observer: ProxyObserver) -> FrameRecorder | None:
    """
    How a session reports the frames crossing the wire to C{observer}: the fan-out's
    L{Observers.record}, a lone L{FrameObserver}'s C{frame_crossed}, or None (nobody records).
    """
    if isinstance(observer, Observers):
        return observer.record
    if isinstance(observer, FrameObserver):
        return observer.frame_crossed
    return None


def _owner_name(method) -> str:
    """The class name of a bound method's object (the observer's name in the log)."""
    return type(getattr(method, "__self__", method)).__name__
