"""
The notifier's timer policies, one small class each, each with its own clock and its
own timers: flap damping, bursts and their summaries, station silence, upstream down,
failover batching, and forgetting the stations gone for a day. None of them knows
the settings object or the channels: the notifier passes the numbers it needs and
the callable that raises (C{emit}) or sends (C{send}) an event.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ..logs import proxy_logger
from .alert import StationEvent

FORGET_AFTER = 24 * 3600.0
"""Seconds a station must have been gone before the notifier forgets what it kept of it."""

_SHOWN_IN_SUMMARY = 20

Emit = Callable[[StationEvent], None]


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


def _station_list(ids: list[str]) -> str:
    """The first station ids of a summary, and how many more."""
    more = len(ids) - _SHOWN_IN_SUMMARY
    return ", ".join(ids[:_SHOWN_IN_SUMMARY]) + (f" and {more} more" if more > 0 else "")


class FlapDamping:
    """
    Holds a disconnection alert for the flap window: it is raised only if nothing
    cancels its slot (the peer reconnecting) before the window ends, and C{unless}
    (the peer went elsewhere in the meantime) does not hold at its end.
    """

    _log = proxy_logger()

    def __init__(self, clock: IReactorTime, emit: Emit) -> None:
        self._clock = clock
        self._emit = emit
        self._held: dict[Hashable, IDelayedCall] = {}

    def hold(
        self, slot: Hashable, event: StationEvent, window: float, unless: Callable[[], bool] | None = None
    ) -> None:
        """
        Raise C{event} after C{window} seconds (at once if 0) unless L{cancel} comes
        first or C{unless()} is True then; replaces C{slot}'s.
        """
        if window <= 0:
            self._emit(event)
            return
        _cancel(self._held.pop(slot, None))
        self._held[slot] = self._clock.callLater(window, self._release, slot, event, unless)

    def _release(self, slot: Hashable, event: StationEvent, unless: Callable[[], bool] | None) -> None:
        self._held.pop(slot, None)
        if unless is not None and unless():
            self._log.info(
                "alerts: {key} of station {station} not sent: it went to another instance within the flap window",
                key=event.key,
                station=event.station_id,
            )
            return
        self._emit(event)

    def cancel(self, slot: Hashable) -> bool:
        """Drop the alert held in C{slot}; True if there was one (the peer flapped)."""
        call = self._held.pop(slot, None)
        if call is not None and call.active():
            call.cancel()
            return True
        return False

    def stop(self) -> None:
        """Drop every held alert."""
        for call in self._held.values():
            _cancel(call)
        self._held.clear()


class _Burst:
    """Alerts of one kind in one summary window: how many went out, which stations wait."""

    __slots__ = ("held", "sent", "timer", "upstream", "window")

    def __init__(self, timer: IDelayedCall, upstream: str | None, window: float) -> None:
        self.timer = timer
        self.upstream = upstream
        self.window = window
        self.sent = 0
        self.held: set[str] = set()


class BurstLimiter:
    """
    Of one kind of station alert (same key, same upstream), lets at most C{limit} go out
    in a summary window; the stations of the others are sent as one summary at its end.
    C{gather(key, upstream, station ids)}, if given, turns the stations held back here
    into the ones the summary names (a Deferred; none: no summary).
    """

    _log = proxy_logger()

    def __init__(
        self,
        clock: IReactorTime,
        send: Emit,
        gather: Callable[[str, str | None, list[str]], Deferred[list[str]]] | None = None,
    ) -> None:
        self._clock = clock
        self._send = send
        self._gather = gather
        self._bursts: dict[tuple, _Burst] = {}

    def held(self, event: StationEvent, limit: int, window: float, counted: int | None = None) -> bool:
        """
        Count C{event} in its burst; True if it waits for the burst's summary instead of
        going out. C{counted}, if known, is its number in the cluster's burst, which then decides.
        """
        if limit <= 0 or window <= 0:
            return False
        kind = (event.key, event.details.get("upstream"))
        burst = self._bursts.get(kind)
        if burst is None:
            timer = self._clock.callLater(window, self._end_burst, kind)
            burst = self._bursts[kind] = _Burst(timer, event.details.get("upstream"), window)
        burst.sent += 1
        if (burst.sent if counted is None else counted) <= limit:
            return False
        burst.held.add(event.station_id)
        return True

    def _end_burst(self, kind: tuple) -> None:
        burst = self._bursts.pop(kind, None)
        if burst is None or not burst.held:
            return
        ids = sorted(burst.held)
        if self._gather is None:
            self._summarise(kind, burst, ids)
        else:
            self._gather(kind[0], burst.upstream, ids).addCallback(self._gathered, kind, burst)

    def _gathered(self, ids: list[str], kind: tuple, burst: _Burst) -> None:
        if ids:
            self._summarise(kind, burst, sorted(ids))

    def _summarise(self, kind: tuple, burst: _Burst, ids: list[str]) -> None:
        details = {"stations": len(ids), "station_ids": _station_list(ids), "more": True}
        if burst.upstream is not None:
            details["upstream"] = burst.upstream
        self._log.info(
            "alerts: {count} {key} alerts in {window} s sent as one summary",
            count=len(ids),
            key=kind[0],
            window=burst.window,
        )
        self._send(StationEvent(kind[0], "", details))

    def stop(self) -> None:
        """End every burst without a summary."""
        for burst in self._bursts.values():
            _cancel(burst.timer)
        self._bursts.clear()


class SilenceWatch:
    """
    station_silent: a watched station that sent nothing for twice its heartbeat interval
    is reported once, until it is heard again.
    """

    def __init__(self, clock: IReactorTime, emit: Emit) -> None:
        self._clock = clock
        self._emit = emit
        self._last_seen: dict[str, float] = {}
        self._intervals: dict[str, float] = {}
        self._timers: dict[str, IDelayedCall] = {}
        self._reported: set[str] = set()

    def heard(self, station_id: str) -> None:
        """The station sent something (or connected): it is not silent now."""
        self._last_seen[station_id] = self._clock.seconds()
        self._reported.discard(station_id)

    def watch(self, station_id: str, interval: float) -> None:
        """Check C{station_id} every twice C{interval} seconds from now on (restarting any watch)."""
        self.unwatch(station_id)
        self._intervals[station_id] = interval
        self._timers[station_id] = self._clock.callLater(2 * interval, self._check_silence, station_id)

    def unwatch(self, station_id: str) -> None:
        """Stop checking C{station_id}."""
        _cancel(self._timers.pop(station_id, None))
        self._intervals.pop(station_id, None)
        self._reported.discard(station_id)

    def watched(self) -> list[str]:
        """The stations being checked."""
        return list(self._timers)

    def _check_silence(self, station_id: str) -> None:
        interval = self._intervals[station_id]
        silent_for = self._clock.seconds() - self._last_seen.get(station_id, 0.0)
        limit = 2 * interval
        if silent_for >= limit and station_id not in self._reported:
            self._reported.add(station_id)
            details = {"silent_for_s": round(silent_for), "heartbeat_interval": interval}
            self._emit(StationEvent("station_silent", station_id, details))
        next_check = max(limit - silent_for, 0) or limit
        self._timers[station_id] = self._clock.callLater(next_check, self._check_silence, station_id)

    def forget(self, station_id: str) -> None:
        """Forget when C{station_id} was last heard."""
        self.unwatch(station_id)
        self._last_seen.pop(station_id, None)

    def stop(self) -> None:
        """Stop checking every station."""
        for station_id in list(self._timers):
            self.unwatch(station_id)


class UpstreamDownWatch:
    """
    upstream_down: one alert per upstream, not per station, when no station has a link
    to it C{after} seconds after a link to it first failed; again only once it was back.
    """

    def __init__(
        self, clock: IReactorTime, links_connected: Callable[[str], int], report: Callable[[str, float], None]
    ) -> None:
        self._clock = clock
        self._links_connected = links_connected
        self._report = report
        self._timers: dict[str, IDelayedCall] = {}
        self._since: dict[str, float] = {}
        self._reported: set[str] = set()

    def failing(self, upstream: str, after: float) -> None:
        """A link to C{upstream} failed: check C{after} seconds from now, unless a check waits or it is reported."""
        if upstream in self._timers or upstream in self._reported:
            return
        self._since[upstream] = self._clock.seconds()
        self._timers[upstream] = self._clock.callLater(after, self._check_upstream_down, upstream)

    def _check_upstream_down(self, upstream: str) -> None:
        self._timers.pop(upstream, None)
        if self._links_connected(upstream) > 0:
            return
        self._reported.add(upstream)
        self._report(upstream, self._clock.seconds() - self._since.get(upstream, 0.0))

    def up(self, upstream: str) -> None:
        """A link to C{upstream} connected: it is not down."""
        self._reported.discard(upstream)
        _cancel(self._timers.pop(upstream, None))

    def stop(self) -> None:
        """Cancel every pending check."""
        for call in self._timers.values():
            _cancel(call)
        self._timers.clear()


class FailoverBatches:
    """
    failover_started / failover_ended: the stations failing over within a summary
    window are told in one alert (naming the station when it is alone).
    """

    def __init__(self, clock: IReactorTime, emit: Emit) -> None:
        self._clock = clock
        self._emit = emit
        self._batches: dict[str, dict[str, float | None]] = {}
        self._timers: dict[str, IDelayedCall] = {}

    def add(self, key: str, station_id: str, duration: float | None, window: float) -> None:
        """Count C{station_id} in the batch of C{key}; a new batch is sent C{window} seconds from now."""
        self._batches.setdefault(key, {})[station_id] = duration
        if key not in self._timers:
            self._timers[key] = self._clock.callLater(window, self._send_failover_batch, key)

    def _send_failover_batch(self, key: str) -> None:
        self._timers.pop(key, None)
        batch = self._batches.pop(key, {})
        if len(batch) == 1:
            ((station_id, duration),) = batch.items()
            details = {} if duration is None else {"duration_s": round(duration)}
            self._emit(StationEvent(key, station_id, details))
        elif batch:
            ids = sorted(batch)
            self._emit(StationEvent(key, "", {"stations": len(ids), "station_ids": _station_list(ids)}))

    def stop(self) -> None:
        """Cancel the batches waiting to be sent."""
        for call in self._timers.values():
            _cancel(call)
        self._timers.clear()


class DepartedStations:
    """
    Forgets a station (C{forget(station_id)}) once it has been gone C{after} seconds
    without coming back. One timer for all: departures are kept in the order they
    happened, so the next to forget is always the first.
    """

    def __init__(self, clock: IReactorTime, forget: Callable[[str], None], after: float = FORGET_AFTER) -> None:
        self._clock = clock
        self._forget = forget
        self._after = after
        self._left: dict[str, float] = {}
        self._timer: IDelayedCall | None = None

    def left(self, station_id: str) -> None:
        """C{station_id} is gone from now on."""
        self._left.pop(station_id, None)
        self._left[station_id] = self._clock.seconds()
        if self._timer is None:
            self._timer = self._clock.callLater(self._after, self._sweep)

    def returned(self, station_id: str) -> None:
        """C{station_id} is back: it is not forgotten."""
        self._left.pop(station_id, None)

    def _sweep(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        while self._left:
            station_id, since = next(iter(self._left.items()))
            if now - since < self._after:
                self._timer = self._clock.callLater(self._after - (now - since), self._sweep)
                return
            del self._left[station_id]
            self._forget(station_id)

    def stop(self) -> None:
        """Stop forgetting (the notifier stops)."""
        _cancel(self._timer)
        self._timer = None
