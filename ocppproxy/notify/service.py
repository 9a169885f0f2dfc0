"""
The notifier: a Twisted service that observes the proxy, turns what it sees into
alerts, and hands them to each channel's delivery queue. Nothing here waits on a
channel, so relaying never slows down for an alert.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol
from datetime import UTC, datetime

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ..config.model import NotifyConfig
from ..core.ocppj import ANSWERS, Frame
from ..core.routes import Route
from ..core.redact import Redactor
from ..logs import proxy_logger
from .alert import Alert, StationEvent
from .delivery import DeliveryQueue
from .dispatch import AlertChannels
from .events import PRIMARY, StationTracker
from .messages import format_alert
from .names import StationNames
from .policies import BurstLimiter, DepartedStations, FailoverBatches, FlapDamping, SilenceWatch, UpstreamDownWatch
from .sharing import AlertSharing, LocalOnly
from .statuses import SharedStatuses

# Already one alert per upstream (upstream_down), or summarised on their own (failover).
_NOT_BURST_LIMITED = frozenset(("upstream_down", "failover_started", "failover_ended"))


class AlertObserver(Protocol):
    """Hears of each alert sent and of each channel's outcome (the status page's L{RecentAlerts})."""

    def alert_sent(self, alert: Alert, channels: list[str]) -> None:
        """C{alert} went to the queues of C{channels}."""

    def alert_outcome(self, alert: Alert, channel: str, outcome: str) -> None:
        """C{channel} delivered, gave up on or dropped C{alert}."""


class NotifierService(SharedStatuses, Service):
    """
    Observes the proxy (see L{ocppproxy.core.observer.ProxyObserver}) and sends alerts.

    Flapping: a disconnection is reported only if the station (or upstream link) is
    still gone C{flap_window} seconds later; a reconnection within that window raises
    neither the disconnection nor the connection alert.

    Bursts: of one kind of station alert (same key, same upstream), at most
    C{burst_limit} go out one by one in C{summary_window} seconds; the others of that
    window are sent as one summary at its end. A proxy restart or a central system
    going down then costs the operator a handful of alerts, not one per station.

    Station silence, upstream down and failover batching are described in
    L{ocppproxy.notify.policies}, one class per policy. What is kept per station is
    forgotten once the station has been gone for a day (L{policies.FORGET_AFTER}).

    C{alert_observer}, if given (the status page's L{RecentAlerts}), hears C{alert_sent(alert,
    channel names)} for each alert sent and C{alert_outcome(alert, channel, outcome)}
    as each channel delivers, gives up or drops it.

    C{sharing} (L{ocppproxy.notify.sharing.AlertSharing}, cluster mode's) makes the
    alerts the cluster's: upstream_down is sent by the one instance that claims it; a
    station that went to another instance within the flap window raises neither its
    disconnection there nor its connection here; a station's last statuses come from the
    instance that saw it last (its frames are judged once they are read, within a bounded
    wait; none is held on the relaying path); bursts are counted across the cluster, and a
    summary names the stations held back on every instance. By default (L{LocalOnly})
    nothing is shared.

    C{route_of(station id)}, if given, is a connected station's route in force: the
    answers of its primary (the upstream named C{primary} without it) are the ones the
    station gets, and the alerts learn its transaction ids from them.

    C{stations_of(upstream)}, if given, counts the connected stations with that upstream
    on their route: the count upstream_down gives (without it, every connected station).
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
        redactor: Redactor | None = None,
        alert_observer: AlertObserver | None = None,
        sharing: AlertSharing | None = None,
        stations_of: Callable[[str], int] | None = None,
        route_of: Callable[[str], Route | None] = lambda station_id: None,
    ) -> None:
        self.settings = settings
        # Masks what alerts quote of frames (see StationTracker).
        self._redactor = redactor
        self.names = names
        self._clock = clock
        self._enabled = settings.events
        self._upstream_urls = upstream_urls
        # How many stations have an upstream on their route (None: count every station).
        self._stations_of = stations_of
        # A connected station's route in force: its primary's answers teach the trackers.
        self._route_of = route_of
        self._channels = AlertChannels(settings, clock, channels, self._report_outcome, closers, starters)
        self._trackers: dict[str, StationTracker] = {}
        self._connections: dict[str, int] = {}
        self._flaps = FlapDamping(clock, self._emit)
        self._bursts = BurstLimiter(clock, self._send, self._gather_held)
        self._silence = SilenceWatch(clock, self._emit)
        self._down = UpstreamDownWatch(clock, links_connected, self._report_down)
        self._failovers = FailoverBatches(clock, self._emit)
        self._departed = DepartedStations(clock, self._forget)
        self._stopping = False
        self.alert_observer = alert_observer
        self.sharing: AlertSharing = sharing if sharing is not None else LocalOnly()
        # station id -> its frames waiting for the station's last statuses from the cluster
        self._loading: dict[str, list[tuple[str | None, Frame]]] = {}

    # --- service

    def startService(self) -> None:
        """Start the channels' resources (the Apprise thread pool) and log which channels and events are on."""
        super().startService()
        self._channels.start()
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
        for policy in (self._flaps, self._bursts, self._silence, self._down, self._failovers, self._departed):
            policy.stop()
        return self._channels.close()

    @property
    def queues(self) -> dict[str, DeliveryQueue]:
        """Each channel's delivery queue, by channel name (the status page shows them)."""
        return self._channels.queues

    # --- configuration reload

    def reconfigure(
        self,
        settings: NotifyConfig,
        names: StationNames,
        channels: Mapping[str, Callable[[Alert], Deferred]] | None = None,
        closers: list[Callable[[], object]] = (),
        starters: list[Callable[[], object]] = (),
        upstream_urls: Mapping[str, str] | None = None,
    ) -> None:
        """
        Apply reloaded settings and names at once, keeping what the notifier tracks.

        With C{channels}, new alerts go to new delivery queues (whose C{starters} run
        now); the old queues deliver what they hold (a failure then is given up, not
        retried) within C{flush_timeout}, after which their C{closers} run. Without it
        the queues stay.
        Timers already running (flap window, upstream down) keep their delay; an event
        switched off is not raised any more, even by such a timer. C{upstream_urls}, when a
        reload changed the upstreams, names their URLs in alerts from now on.
        """
        was_watching_silence = "station_silent" in self._enabled
        self.settings = settings
        self._enabled = settings.events
        self.names = names
        self._channels.reconfigure(settings, channels, closers, starters)
        if upstream_urls is not None:
            self._upstream_urls = upstream_urls
        if "station_silent" in self._enabled and not was_watching_silence:
            for station_id in list(self._connections):
                self._watch_silence(station_id)
        elif was_watching_silence and "station_silent" not in self._enabled:
            self._silence.stop()
        self._log_settings()

    # --- raising alerts

    def _emit(self, event: StationEvent) -> None:
        if self._stopping or event.key not in self._enabled:
            return
        limited = event.station_id and event.key not in _NOT_BURST_LIMITED
        if limited and self.sharing.shared and self.settings.burst_limit > 0 and self.settings.summary_window > 0:
            # The cluster's count decides: bursts are the cluster's, summaries each instance's.
            subject = event.details.get("upstream") or ""
            counting = self.sharing.count_alert(event.key, subject, self.settings.summary_window)
            counting.addCallback(self._counted, event)
            return
        if limited and self._bursts.held(event, self.settings.burst_limit, self.settings.summary_window):
            return
        self._send(event)

    def _counted(self, counted: int | None, event: StationEvent) -> None:
        if self._stopping or event.key not in self._enabled:
            return
        window = self.settings.summary_window
        if self._bursts.held(event, self.settings.burst_limit, window, counted):
            self.sharing.held_back(event.key, event.details.get("upstream") or "", event.station_id, window)
            return
        self._send(event)

    def _gather_held(self, key: str, upstream: str | None, station_ids: list[str]) -> Deferred[list[str]]:
        """The stations a burst's summary names: the cluster's, none once the notifier stops."""
        gathering = self.sharing.gather_held(key, upstream or "", station_ids)
        return gathering.addCallback(lambda gathered: [] if self._stopping else gathered)

    def _send(self, event: StationEvent) -> None:
        alert = format_alert(event, self.names, datetime.fromtimestamp(self._clock.seconds(), UTC))
        if self.settings.log:
            self._log.warn("ALERT {subject}\n{text}", subject=alert.subject, text=alert.text, alert_key=alert.key)
        if self.alert_observer is not None:
            self.alert_observer.alert_sent(alert, list(self.queues))
        self._channels.put(alert)

    def _report_outcome(self, alert: Alert, channel: str, outcome: str) -> None:
        if self.alert_observer is not None:
            self.alert_observer.alert_outcome(alert, channel, outcome)

    def _emit_later(self, slot: tuple, event: StationEvent, unless: Callable[[], bool] | None = None) -> None:
        """Report C{event} after the flap window unless the peer comes back first (see L{FlapDamping})."""
        if event.key not in self._enabled:
            return
        self._flaps.hold(slot, event, self.settings.flap_window, unless)

    def _tracker(self, station_id: str) -> StationTracker:
        tracker = self._trackers.get(station_id)
        if tracker is None:
            remember = None
            if self.sharing.shared:

                def remember(place: tuple, status: tuple) -> None:
                    self.sharing.save_status(station_id, place, status)

            tracker = self._trackers[station_id] = StationTracker(station_id, remember, self._redactor)
        return tracker

    def _forget(self, station_id: str) -> None:
        """The station has been gone for a day: drop what is kept of it."""
        self._trackers.pop(station_id, None)
        self._silence.forget(station_id)

    # --- ProxyObserver: stations

    def station_connected(self, station_id: str, peer: str) -> None:
        count = self._connections.get(station_id, 0)
        self._connections[station_id] = count + 1
        self._departed.returned(station_id)
        self._silence.heard(station_id)
        arrived = self.sharing.station_arrived(station_id, self.settings.flap_window) if count == 0 else None
        if count == 0 and self.sharing.shared and station_id not in self._loading:
            self._load_statuses(station_id)
        if self._flaps.cancel(("station", station_id)):
            self._log.info("alerts: station {station} reconnected within the flap window", station=station_id)
            return
        self._watch_silence(station_id)
        if arrived is not None:
            arrived.addCallback(self._connected_alert, station_id, peer)

    def _connected_alert(self, elsewhere: bool, station_id: str, peer: str) -> None:
        if elsewhere:
            self._log.info(
                "alerts: station {station} came from another instance within the flap window", station=station_id
            )
            return
        self._emit(StationEvent("connected_to_proxy", station_id, {"peer": peer}))

    def station_disconnected(self, station_id: str, code: int | None, reason: str | None) -> None:
        count = self._connections.get(station_id, 1) - 1
        if count > 0:
            self._connections[station_id] = count  # replaced by a newer connection: still connected
            return
        self._connections.pop(station_id, None)
        self._silence.unwatch(station_id)
        window = self.settings.flap_window
        self.sharing.station_left(station_id, window)
        if not self._stopping:
            self._departed.left(station_id)
            moved = None
            if self.sharing.shared:
                since = self._clock.seconds() - window

                def moved() -> bool:
                    return self.sharing.moved_since(station_id, since)

            self._emit_later(
                ("station", station_id),
                StationEvent("disconnected_from_proxy", station_id, {"code": code, "reason": reason}),
                moved,
            )

    def station_frame(self, station_id: str, frame: Frame, payload: bytes = b"") -> None:
        self._silence.heard(station_id)
        if self._loading and self._held_while_loading(station_id, None, frame):
            return
        for event in self._tracker(station_id).station_frame(frame):
            self._emit(event)

    def upstream_frame(self, station_id: str, upstream: str, frame: Frame, payload: bytes = b"") -> None:
        if self._loading and self._held_while_loading(station_id, upstream, frame):
            return
        tracker = self._tracker(station_id)
        if not tracker.awaiting:
            return  # it learns from upstream frames only the answers it waits for (most frames: no route asked)
        before = tracker.heartbeat_interval
        route = self._route_of(station_id) if frame.kind in ANSWERS else None
        for event in tracker.upstream_frame(upstream, frame, route.primary if route is not None else PRIMARY):
            self._emit(event)
        if tracker.heartbeat_interval != before:
            self._watch_silence(station_id)

    # --- ProxyObserver: upstreams

    def upstream_connected(self, station_id: str, upstream: str, url: str) -> None:
        self._down.up(upstream)
        if self._flaps.cancel(("upstream", station_id, upstream)):
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
        if "station_silent" not in self._enabled or self._stopping or station_id not in self._connections:
            return
        interval = self._tracker(station_id).heartbeat_interval
        if interval:
            self._silence.watch(station_id, interval)
        else:
            self._silence.unwatch(station_id)

    # --- upstream_down: one alert per upstream URL, not per station

    def _upstream_failing(self, upstream: str) -> None:
        if "upstream_down" not in self._enabled or self._stopping:
            return
        self._down.failing(upstream, self.settings.upstream_down_after)

    def _report_down(self, upstream: str, down_for: float) -> None:
        """Claimed first: in a cluster, only the instance that claims the outage sends it."""
        details = {
            "upstream": upstream,
            "url": self._upstream_urls.get(upstream, ""),
            "down_for_s": round(down_for),
            "stations": len(self._connections) if self._stations_of is None else self._stations_of(upstream),
        }
        if "upstream_down" not in self._enabled or self._stopping:
            return
        claiming = self.sharing.claim_alert(
            "upstream_down", details["url"] or upstream, self.settings.upstream_down_after
        )
        claiming.addCallback(self._down_claimed, StationEvent("upstream_down", "", details))

    def _down_claimed(self, ours: bool, event: StationEvent) -> None:
        if not ours:
            self._log.info(
                "alerts: upstream_down of {upstream} is sent by another instance", upstream=event.details["upstream"]
            )
            return
        self._emit(event)

    # --- failover: one summary when many stations fail over together

    def failover_started(self, station_id: str) -> None:
        self._batch_failover("failover_started", station_id, None)

    def failover_ended(self, station_id: str, duration: float) -> None:
        self._batch_failover("failover_ended", station_id, duration)

    def _batch_failover(self, key: str, station_id: str, duration: float | None) -> None:
        if key not in self._enabled or self._stopping:
            return
        self._failovers.add(key, station_id, duration, self.settings.summary_window)

    # --- certificates: once per certificate and tier, cluster-wide

    def certificate_expiry(self, key: str, claim: str, hold: float, details: Mapping[str, object]) -> None:
        """
        Raise C{key} (C{certificate_expiring} or C{certificate_expired}) with C{details};
        in a cluster only the instance that wins C{claim} (the certificate's fingerprint
        and tier) for C{hold} seconds sends it.
        """
        if key not in self._enabled or self._stopping:
            return
        claiming = self.sharing.claim_alert(key, claim, hold)
        claiming.addCallback(lambda ours: self._emit(StationEvent(key, "", details)) if ours else None)

    # --- the durable outbox

    def outbox_dropped(self, upstream: str, count: int) -> None:
        """The outbox dropped entries owed to C{upstream} (C{count} so far): once per episode (the outbox decides)."""
        self._emit(StationEvent("outbox_dropped", "", {"upstream": upstream, "count": count}))
