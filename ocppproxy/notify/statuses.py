"""
A station's last statuses in cluster mode (a mixin of L{NotifierService}, whose state it
uses): when a station arrives from another instance, its last StatusNotifications are
read from the cluster before its frames are judged, so that a status it already
reported raises no alert again. Its frames wait meanwhile, at most
L{HELD_WHILE_LOADING} of them (a bounded wait: past it, what waits is judged at once);
none is held on the relaying path, only on the way to the alerts.
"""

from __future__ import annotations

from ..core.ocppj import Frame

HELD_WHILE_LOADING = 100


class SharedStatuses:
    """Reading a station's last statuses from the cluster, its frames held meanwhile."""

    def _load_statuses(self, station_id: str) -> None:
        self._loading[station_id] = waiting = []
        self.sharing.load_statuses(station_id).addCallback(self._statuses_loaded, station_id, waiting)

    def _held_while_loading(self, station_id: str, upstream: str | None, frame: Frame) -> bool:
        """Keep the frame until the station's statuses are read (True); past a bound, judge what waits now."""
        waiting = self._loading.get(station_id)
        if waiting is None:
            return False
        if len(waiting) < HELD_WHILE_LOADING:
            waiting.append((upstream, frame))
            return True
        self._judge_held(station_id, self._loading.pop(station_id))
        return False

    def _statuses_loaded(self, statuses: dict, station_id: str, waiting: list) -> None:
        if self._loading.get(station_id) is not waiting:
            return  # judged already, without them
        del self._loading[station_id]
        if statuses:
            self._tracker(station_id).restore_statuses(statuses)
        self._judge_held(station_id, waiting)

    def _judge_held(self, station_id: str, waiting: list[tuple[str | None, Frame]]) -> None:
        """Judge the frames that waited, in their order (no longer waiting: they are judged at once)."""
        for upstream, frame in waiting:
            if upstream is None:
                self.station_frame(station_id, frame)
            else:
                self.upstream_frame(station_id, upstream, frame)
