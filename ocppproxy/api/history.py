"""
What the API shows of the frames: every frame crossing the wire recorded in a
L{FrameHistory} (a frame observer), and passed as it goes to the Server-Sent Events
readers following that station; and the events of C{/api/events} (what the alerts
see). Frames are shown redacted (L{ocppproxy.core.redact.Redactor}), as in the logs.
"""

from __future__ import annotations

import json

from ..core.frame_history import FrameHistory, HistoryFrame
from ..core.observer import NullObserver
from ..core.ocppj import CALL, Frame
from ..core.redact import Redactor
from ..status.snapshot import iso_time
from .sse import EventStream, event_bytes

_ALERTED_ACTIONS = frozenset(("StatusNotification", "StartTransaction", "StopTransaction", "TransactionEvent"))


class FrameTrace(NullObserver):
    """
    The frame history of the API and its followers: a L{FrameObserver} (every frame), and
    a L{ProxyObserver} of the departures (a station's frames stay an hour after it left).
    """

    def __init__(self, history: FrameHistory, clock, redactor: Redactor) -> None:
        self.history = history
        self._clock = clock
        self._redactor = redactor
        self._followers: dict[str, set[EventStream]] = {}

    def frame_crossed(self, station_id: str, direction: str, upstream: str | None, payload: bytes) -> None:
        frame = self.history.add(station_id, direction, upstream, payload, self._clock.seconds())
        followers = self._followers.get(station_id)
        if followers:
            data = event_bytes(json.dumps(self.shown(frame), ensure_ascii=False), frame.number)
            for stream in list(followers):
                stream.send(data)

    def station_disconnected(self, station_id: str, code: int | None, reason: str | None) -> None:
        self.history.left(station_id, self._clock.seconds())

    def shown(self, frame: HistoryFrame) -> dict:
        """A frame as the API shows it: time, direction, upstream, the frame's text redacted."""
        return {
            "id": frame.number,
            "time": iso_time(frame.time),
            "direction": frame.direction,
            "upstream": frame.upstream,
            "frame": self._redactor.text(frame.payload),
        }

    def follow(self, station_id: str, stream: EventStream, after: int | None) -> None:
        """Send C{stream} the kept frames numbered above C{after} (None: none), then each new one."""
        if after is not None:
            for frame in self.history.frames(station_id, after):
                stream.send(event_bytes(json.dumps(self.shown(frame), ensure_ascii=False), frame.number))
        if not stream.closed:
            self._followers.setdefault(station_id, set()).add(stream)

    def unfollow(self, station_id: str, stream: EventStream) -> None:
        """C{stream} is closed: no more frames for it."""
        followers = self._followers.get(station_id)
        if followers is not None:
            followers.discard(stream)
            if not followers:
                del self._followers[station_id]

    def followers(self) -> int:
        """Open follow streams."""
        return sum(len(streams) for streams in self._followers.values())

    def close_all(self) -> None:
        """End every follow stream (the daemon stops)."""
        for streams in list(self._followers.values()):
            for stream in list(streams):
                stream.close()
        self._followers.clear()


class EventFeed(NullObserver):
    """The events of C{/api/events}: connections, statuses, transactions, upstreams up and down."""

    def __init__(self, clock) -> None:
        self._clock = clock
        self._streams: set[EventStream] = set()
        self._number = 0

    def add(self, stream: EventStream) -> None:
        self._streams.add(stream)

    def remove(self, stream: EventStream) -> None:
        self._streams.discard(stream)

    def close_all(self) -> None:
        for stream in list(self._streams):
            stream.close()
        self._streams.clear()

    def _publish(self, kind: str, **fields) -> None:
        if not self._streams:
            return
        self._number += 1
        document = {"event": kind, "time": iso_time(self._clock.seconds()), **fields}
        data = event_bytes(json.dumps(document, ensure_ascii=False), self._number, kind)
        for stream in list(self._streams):
            stream.send(data)

    def station_connected(self, station_id: str, peer: str) -> None:
        self._publish("station_connected", station=station_id)

    def station_disconnected(self, station_id: str, code: int | None, reason: str | None) -> None:
        self._publish("station_disconnected", station=station_id, code=code)

    def upstream_connected(self, station_id: str, upstream: str, url: str) -> None:
        self._publish("upstream_connected", station=station_id, upstream=upstream)

    def upstream_disconnected(self, station_id: str, upstream: str, url: str, reason: str) -> None:
        self._publish("upstream_disconnected", station=station_id, upstream=upstream)

    def station_frame(self, station_id: str, frame: Frame, payload: bytes = b"") -> None:
        if frame.kind != CALL or frame.action not in _ALERTED_ACTIONS or not self._streams:
            return
        body = frame.body if isinstance(frame.body, dict) else {}
        if frame.action == "StatusNotification":
            self._publish(
                "status", station=station_id, connector=body.get("connectorId", body.get("evseId")),
                status=body.get("status", body.get("connectorStatus")), error=body.get("errorCode"),
            )
        else:
            self._publish("transaction", station=station_id, action=frame.action,
                          connector=body.get("connectorId"), transaction=body.get("transactionId"))
