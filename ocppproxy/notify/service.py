"""
The notifier: a Twisted service that observes the proxy, turns what it sees into
alerts, and hands them to each channel's delivery queue. Nothing here waits on a
channel, so relaying never slows down for an alert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ..config.model import NotifyConfig
from ..core.ocppj import Frame
from ..logs import proxy_logger
from .alert import Alert, StationEvent
from .delivery import DeliveryQueue
from .events import StationTracker
from .messages import format_alert
from .names import StationNames

# Already one alert per upstream (upstream_down), or summarised on their own (failover).
_NOT_BURST_LIMITED = frozenset(("upstream_down", "failover_started", "failover_ended"))


class _Burst:
    """Alerts of one kind in one summary window: how many went out, which stations wait."""

    __slots__ = ("held", "sent", "timer", "upstream")

    def __init__(self, timer: IDelayedCall, upstream: str | None) -> None:
        self.timer = timer
        self.upstream = upstream
        self.sent = 0
        self.held: set[str] = set()


class NotifierService(Service):
    """
    Observes the proxy (see L{ocppproxy.core.observer.ProxyObserver}) and sends alerts.

    Flapping: a disconnection is reported only if the station (or upstream link) is
    still gone C{flap_window} seconds later; a reconnection within that window raises
    neither the disconnection nor the connection alert.

    Bursts: of one kind of station alert (same key, same upstream), at most
    C{burst_limit} go out one by one in C{summary_window} seconds; the others of that
    window are sent as one summary at its end. A proxy restart or a central system
    going down then costs the operator a handful of alerts, not one per station.

    C{alert_observer}, if set (the status page sets it), hears C{alert_sent(alert,
    channel names)} for each alert sent and C{alert_outcome(alert, channel, outcome)}
    as each channel delivers, gives up or drops it.
    """

    _log = proxy_logger()

    def __init__(
        self,
        settings: NotifyConfig,
        names: StationNames,
        clock: IReactorTime,
        channels: Mapping[str, Callable[[Alert], Deferred]],
        upstream_urls: Mapping[str, str],
        links_connected: Callable[[str], int],
        closers: list[Callable[[], object]] = (),
        starters: list[Callable[[], object]] = (),
    ) -> None:
        self.settings = settings
        self.names = names
        self._clock = clock
        self._enabled = settings.events
        self._upstream_urls = upstream_urls
        self.links_connected = links_connected
        self._closers = list(closers)
        self._starters = list(starters)
        self.queues = self._queues(channels)
        self._retiring: set[Deferred] = set()
        self._trackers: dict[str, StationTracker] = {}
        self._connections: dict[str, int] = {}
        self._pending: dict[tuple, IDelayedCall] = {}
        self._last_seen: dict[str, float] = {}
        self._silence: dict[str, IDelayedCall] = {}
        self._silent_reported: set[str] = set()
        self._down_timers: dict[str, IDelayedCall] = {}
        self._down_since: dict[str, float] = {}
        self._down_reported: set[str] = set()
        self._failover_batches: dict[str, dict[str, float | None]] = {}
        self._failover_timers: dict[str, IDelayedCall] = {}
        self._bursts: dict[tuple, _Burst] = {}
        self._stopping = False
        self.alert_observer = None

    # --- service

    def startService(self) -> None:
        """Start the channels' resources (the Apprise thread pool) and log which channels and events are on."""
        super().startService()
        for start in self._starters:
            start()
        self._log_settings()

    def _log_settings(self) -> None:
        for channel, problem in self.settings.channel_problems:
            self._log.warn("alerts: {channel} channel disabled: {problem}", channel=channel, problem=problem)
        channels = sorted(self.queues) + (["log"] if self.settings.log else [])
        if self._enabled and not channels:
            self._log.warn("alerts: events are enabled but no channel is configured; no alert will be sent")
        else:
            self._log.info(
                "alerts: channels {channels}; events {events}",
                channels=", ".join(channels) or "none",
                events=", ".join(sorted(self._enabled)) or "none",
            )

    def stopService(self) -> Deferred[None]:
        """Stop raising alerts and flush what is queued, within C{flush_timeout}."""
        self._stopping = True
        super().stopService()
        timers = [*self._pending.values(), *self._silence.values(), *self._down_timers.values()]
        timers += [burst.timer for burst in self._bursts.values()]
        for call in [*timers, *self._failover_timers.values()]:
            if call.active():
                call.cancel()
        self._bursts.clear()
        self._pending.clear()
        self._silence.clear()
        self._down_timers.clear()
        self._failover_timers.clear()
        retired = DeferredList(list(self._retiring))
        flushed = self._flush_and_close(self.queues.values(), self._closers)
        return DeferredList([retired, flushed]).addCallback(lambda _: None)

    def _queues(self, channels: Mapping[str, Callable[[Alert], Deferred]]) -> dict[str, DeliveryQueue]:
        settings = self.settings
        return {
            name: DeliveryQueue(
                name,
                send,
                self._clock,
                settings.queue_limit,
                settings.max_attempts,
                settings.retry_delay,
                self._report_outcome,
            )
            for name, send in channels.items()
        }

    def _flush_and_close(self, queues, closers) -> Deferred[None]:
        """Flush C{queues} within C{flush_timeout}, then run C{closers}; never fails."""
        flushes = [queue.flush(self.settings.flush_timeout) for queue in queues]
        flushed = DeferredList(flushes) if flushes else succeed(None)
        flushed.addCallback(lambda _: DeferredList([maybeDeferred(close) for close in closers]))
        return flushed.addCallback(lambda _: None)

    # --- configuration reload

    def reconfigure(
        self,
        settings: NotifyConfig,
        names: StationNames,
        channels: Mapping[str, Callable[[Alert], Deferred]] | None = None,
        closers: list[Callable[[], object]] = (),
        starters: list[Callable[[], object]] = (),
    ) -> None:
        """
        Apply reloaded settings and names at once, keeping what the notifier tracks.

        With C{channels}, new alerts go to new delivery queues (whose C{starters} run
        now); the old queues deliver what they hold (a failure then is given up, not
        retried) within C{flush_timeout}, after which their C{closers} run. Without it
        the queues stay.
        Timers already running (flap window, upstream down) keep their delay; an event
        switched off is not raised any more, even by such a timer.
        """
        was_watching_silence = "station_silent" in self._enabled
        self.settings = settings
        self._enabled = settings.events
        self.names = names
        if channels is not None:
            old_queues, old_closers = self.queues.values(), self._closers
            for start in starters:
                start()
            self.queues = self._queues(channels)
            self._closers = list(closers)
            retiring = self._flush_and_close(old_queues, old_closers)
            self._retiring.add(retiring)
            retiring.addCallback(lambda _: self._retiring.discard(retiring))
        if "station_silent" in self._enabled and not was_watching_silence:
            for station_id in list(self._connections):
                self._watch_silence(station_id)
        elif was_watching_silence and "station_silent" not in self._enabled:
            for station_id in list(self._silence):
                self._stop_silence_watch(station_id)
        self._log_settings()

    # --- raising alerts

    def _emit(self, event: StationEvent) -> None:
        if self._stopping or event.key not in self._enabled:
            return
        if event.station_id and event.key not in _NOT_BURST_LIMITED and self._held_in_burst(event):
            return
        self._send(event)

    def _held_in_burst(self, event: StationEvent) -> bool:
        """Count C{event} in its burst; True if it waits for the burst's summary instead of going out."""
        limit = self.settings.burst_limit
        if limit <= 0 or self.settings.summary_window <= 0:
            return False
        kind = (event.key, event.details.get("upstream"))
        burst = self._bursts.get(kind)
        if burst is None:
            timer = self._clock.callLater(self.settings.summary_window, self._end_burst, kind)
            burst = self._bursts[kind] = _Burst(timer, event.details.get("upstream"))
        burst.sent += 1
        if burst.sent <= limit:
            return False
        burst.held.add(event.station_id)
        return True

    def _end_burst(self, kind: tuple) -> None:
        burst = self._bursts.pop(kind, None)
        if burst is None or not burst.held:
            return
        ids = sorted(burst.held)
        shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        details = {"stations": len(ids), "station_ids": shown, "more": True}
        if burst.upstream is not None:
            details["upstream"] = burst.upstream
        self._log.info(
            "alerts: {count} {key} alerts in {window} s sent as one summary",
            count=len(ids),
            key=kind[0],
            window=self.settings.summary_window,
        )
        self._send(StationEvent(kind[0], "", details))

    def _send(self, event: StationEvent) -> None:
        alert = format_alert(event, self.names, datetime.fromtimestamp(self._clock.seconds(), UTC))
        if self.settings.log:
            self._log.warn("ALERT {subject}\n{text}", subject=alert.subject, text=alert.text, alert_key=alert.key)
        if self.alert_observer is not None:
            self.alert_observer.alert_sent(alert, list(self.queues))
        for queue in self.queues.values():
            queue.put(alert)

    def _report_outcome(self, alert: Alert, channel: str, outcome: str) -> None:
        if self.alert_observer is not None:
            self.alert_observer.alert_outcome(alert, channel, outcome)

    def _emit_later(self, slot: tuple, event: StationEvent) -> None:
        """Report C{event} after the flap window unless L{_cancel_pending} comes first."""
        if event.key not in self._enabled:
            return
        if self.settings.flap_window <= 0:
            self._emit(event)
            return
        previous = self._pending.pop(slot, None)
        if previous is not None and previous.active():
            previous.cancel()

        def fire() -> None:
            self._pending.pop(slot, None)
            self._emit(event)

        self._pending[slot] = self._clock.callLater(self.settings.flap_window, fire)

    def _cancel_pending(self, slot: tuple) -> bool:
        """Cancel a pending disconnection alert; True if there was one (the peer flapped)."""
        call = self._pending.pop(slot, None)
        if call is not None and call.active():
            call.cancel()
            return True
        return False

    def _tracker(self, station_id: str) -> StationTracker:
        tracker = self._trackers.get(station_id)
        if tracker is None:
            tracker = self._trackers[station_id] = StationTracker(station_id)
        return tracker

    # --- ProxyObserver: stations

    def station_connected(self, station_id: str, peer: str) -> None:
        count = self._connections.get(station_id, 0)
        self._connections[station_id] = count + 1
        self._last_seen[station_id] = self._clock.seconds()
        if self._cancel_pending(("station", station_id)):
            self._log.info("alerts: station {station} reconnected within the flap window", station=station_id)
            return
        self._watch_silence(station_id)
        if count == 0:
            self._emit(StationEvent("connected_to_proxy", station_id, {"peer": peer}))

    def station_disconnected(self, station_id: str, code: int | None, reason: str | None) -> None:
        count = self._connections.get(station_id, 1) - 1
        if count > 0:
            self._connections[station_id] = count  # replaced by a newer connection: still connected
            return
        self._connections.pop(station_id, None)
        self._stop_silence_watch(station_id)
        if not self._stopping:
            self._emit_later(
                ("station", station_id),
                StationEvent("disconnected_from_proxy", station_id, {"code": code, "reason": reason}),
            )

    def station_frame(self, station_id: str, frame: Frame, payload: bytes = b"") -> None:
        self._last_seen[station_id] = self._clock.seconds()
        if station_id in self._silent_reported:
            self._silent_reported.discard(station_id)
        for event in self._tracker(station_id).station_frame(frame):
            self._emit(event)

    def upstream_frame(self, station_id: str, upstream: str, frame: Frame, payload: bytes = b"") -> None:
        tracker = self._tracker(station_id)
        before = tracker.heartbeat_interval
        for event in tracker.upstream_frame(upstream, frame):
            self._emit(event)
        if tracker.heartbeat_interval != before:
            self._watch_silence(station_id)

    # --- ProxyObserver: upstreams

    def upstream_connected(self, station_id: str, upstream: str, url: str) -> None:
        self._upstream_up(upstream)
        if self._cancel_pending(("upstream", station_id, upstream)):
            return
        self._emit(StationEvent("connected_to_upstream", station_id, {"upstream": upstream, "url": url}))

    def upstream_disconnected(self, station_id: str, upstream: str, url: str, reason: str) -> None:
        self._emit_later(
            ("upstream", station_id, upstream),
            StationEvent(
                "disconnected_from_upstream", station_id, {"upstream": upstream, "url": url, "reason": reason}
            ),
        )
        self._upstream_failing(upstream)

    def upstream_attempt_failed(self, station_id: str, upstream: str, url: str, reason: str) -> None:
        self._upstream_failing(upstream)

    def frame_dropped(self, station_id: str, upstream: str) -> None:
        """No alert: the link's own warning and the metrics tell."""

    # --- station_silent

    def _watch_silence(self, station_id: str) -> None:
        interval = self._tracker(station_id).heartbeat_interval
        if "station_silent" not in self._enabled or not interval or self._stopping:
            return
        if station_id not in self._connections:
            return
        self._stop_silence_watch(station_id)
        self._silence[station_id] = self._clock.callLater(2 * interval, self._check_silence, station_id)

    def _check_silence(self, station_id: str) -> None:
        self._silence.pop(station_id, None)
        interval = self._tracker(station_id).heartbeat_interval
        if not interval or station_id not in self._connections:
            return
        silent_for = self._clock.seconds() - self._last_seen.get(station_id, 0.0)
        limit = 2 * interval
        if silent_for >= limit and station_id not in self._silent_reported:
            self._silent_reported.add(station_id)
            self._emit(
                StationEvent(
                    "station_silent", station_id, {"silent_for_s": round(silent_for), "heartbeat_interval": interval}
                )
            )
        next_check = max(limit - silent_for, 0) or limit
        self._silence[station_id] = self._clock.callLater(next_check, self._check_silence, station_id)

    def _stop_silence_watch(self, station_id: str) -> None:
        call = self._silence.pop(station_id, None)
        if call is not None and call.active():
            call.cancel()
        self._silent_reported.discard(station_id)

    # --- upstream_down: one alert per upstream URL, not per station

    def _upstream_failing(self, upstream: str) -> None:
        if "upstream_down" not in self._enabled or self._stopping:
            return
        if upstream in self._down_timers or upstream in self._down_reported:
            return
        self._down_since[upstream] = self._clock.seconds()
        self._down_timers[upstream] = self._clock.callLater(
            self.settings.upstream_down_after, self._check_upstream_down, upstream
        )

    def _check_upstream_down(self, upstream: str) -> None:
        self._down_timers.pop(upstream, None)
        if self.links_connected(upstream) > 0:
            return
        self._down_reported.add(upstream)
        self._emit(
            StationEvent(
                "upstream_down",
                "",
                {
                    "upstream": upstream,
                    "url": self._upstream_urls.get(upstream, ""),
                    "down_for_s": round(self._clock.seconds() - self._down_since.get(upstream, 0.0)),
                    "stations": len(self._connections),
                },
            )
        )

    def _upstream_up(self, upstream: str) -> None:
        self._down_reported.discard(upstream)
        call = self._down_timers.pop(upstream, None)
        if call is not None and call.active():
            call.cancel()

    # --- failover: one summary when many stations fail over together

    def failover_started(self, station_id: str) -> None:
        self._batch_failover("failover_started", station_id, None)

    def failover_ended(self, station_id: str, duration: float) -> None:
        self._batch_failover("failover_ended", station_id, duration)

    def _batch_failover(self, key: str, station_id: str, duration: float | None) -> None:
        if key not in self._enabled or self._stopping:
            return
        self._failover_batches.setdefault(key, {})[station_id] = duration
        if key not in self._failover_timers:
            self._failover_timers[key] = self._clock.callLater(
                self.settings.summary_window, self._send_failover_batch, key
            )

    def _send_failover_batch(self, key: str) -> None:
        self._failover_timers.pop(key, None)
        batch = self._failover_batches.pop(key, {})
        if len(batch) == 1:
            ((station_id, duration),) = batch.items()
            details = {} if duration is None else {"duration_s": round(duration)}
            self._emit(StationEvent(key, station_id, details))
        elif batch:
            ids = sorted(batch)
            shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
            self._emit(StationEvent(key, "", {"stations": len(ids), "station_ids": shown}))
