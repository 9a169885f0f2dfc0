"""
What the proxy tells the rest of the daemon (the notifier, the status page): connection
events and every parsed OCPP frame; and, for the traffic log, every frame where it
crosses the wire. Observers must return quickly and never raise into the relaying path.
"""

from __future__ import annotations

from typing import Protocol

from .ocppj import Frame

FROM_STATION = "from_station"
TO_STATION = "to_station"
FROM_UPSTREAM = "from_upstream"
TO_UPSTREAM = "to_upstream"


class FrameRecorder(Protocol):
    """
    Sees every text frame where it crosses the wire, well-formed or not: C{direction} is
    L{FROM_STATION}, L{TO_STATION}, L{FROM_UPSTREAM} or L{TO_UPSTREAM}, C{upstream} the
    upstream's name on the upstream side and None on the station's. A frame queued for an
    upstream is seen when it is sent. Called on the relaying path: must only take note.
    """

    def __call__(self, station_id: str, direction: str, upstream: str | None, payload: bytes) -> None: ...


class ProxyObserver(Protocol):
    """Receives station and upstream events from every L{StationSession}."""

    def station_connected(self, station_id: str, peer: str) -> None:
        """A station completed its handshake."""

    def station_disconnected(self, station_id: str, code: int | None, reason: str | None) -> None:
        """A station's connection ended (for whatever reason, including replacement)."""

    def upstream_connected(self, station_id: str, upstream: str, url: str) -> None:
        """A station's link to C{upstream} (primary or secondary) completed its handshake."""

    def upstream_disconnected(self, station_id: str, upstream: str, url: str, reason: str) -> None:
        """An open link dropped (once per real disconnection, not per failed retry)."""

    def upstream_attempt_failed(self, station_id: str, upstream: str, url: str, reason: str) -> None:
        """A connection attempt to C{upstream} failed (refused, TLS, handshake)."""

    def station_frame(self, station_id: str, frame: Frame, payload: bytes = b"") -> None:
        """A well-formed frame the station sent (relayed or not); C{payload} is its text as received."""

    def upstream_frame(self, station_id: str, upstream: str, frame: Frame, payload: bytes = b"") -> None:
        """A well-formed frame an upstream sent to the station (relayed or consumed); C{payload} as received."""

    def frame_dropped(self, station_id: str, upstream: str) -> None:
        """A frame waiting for C{upstream} was dropped: the station's queue for it was full."""

    def failover_started(self, station_id: str) -> None:
        """With failover on: the primary is away, the secondary now answers the station."""

    def failover_ended(self, station_id: str, duration: float) -> None:
        """Failover is over (the primary is back, or the station left) after C{duration} seconds."""


class NullObserver:
    """Observes nothing: the default when no notifier is configured."""

    def station_connected(self, station_id, peer):
        pass

    def station_disconnected(self, station_id, code, reason):
        pass

    def upstream_connected(self, station_id, upstream, url):
        pass

    def upstream_disconnected(self, station_id, upstream, url, reason):
        pass

    def upstream_attempt_failed(self, station_id, upstream, url, reason):
        pass

    def station_frame(self, station_id, frame, payload=b""):
        pass

    def upstream_frame(self, station_id, upstream, frame, payload=b""):
        pass

    def frame_dropped(self, station_id, upstream):
        pass

    def failover_started(self, station_id):
        pass

    def failover_ended(self, station_id, duration):
        pass
