"""
The station sessions the proxy holds, as an object of their own: built before the
proxy, so that what counts the open links (the notifier) gets it in its constructor;
and what cluster mode is told of them (L{Ownership}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..core.routes import Route
from ..logs import proxy_logger
from .session import REPLACED

if TYPE_CHECKING:
    from .session import StationSession

_log = proxy_logger(__name__)


class Ownership(Protocol):
    """Cluster mode's hook (L{ocppproxy.cluster.service.ClusterService}): told of each session's start and end."""

    instance: str

    def station_connected(self, session: StationSession) -> None:
        """A station's handshake was accepted here: claim it."""

    def station_ended(self, session: StationSession) -> None:
        """A session ended: release the station if it was the last one here."""


class StationSessions:
    """
    C{current}: the session of each connected station id; C{every}: each session not
    yet ended, including those replaced and still closing. Filled by the proxy service.
    """

    def __init__(self) -> None:
        self.current: dict[str, StationSession] = {}
        self.every: set[StationSession] = set()

    def connected_links(self, upstream: str) -> int:
        """How many stations have an open link to C{upstream} right now."""
        count = 0
        for session in self.current.values():
            link = session.links.get(upstream)
            if link is not None and link.connected:
                count += 1
        return count

    def route_of(self, station_id: str) -> Route | None:
        """The route in force of the station connected as C{station_id} (None: not connected, or no route yet)."""
        session = self.current.get(station_id)
        relay = session.relay if session is not None else None
        return relay.route if relay is not None else None

    def stations_of(self, upstream: str) -> int:
        """How many connected stations have C{upstream} on their route (a link to it, open or not)."""
        return sum(1 for session in self.current.values() if upstream in session.links)


def close_replaced(session: StationSession, instance: str) -> None:
    """
    Cluster mode: a newer connection of this station is on C{instance}; close this one
    with 4000 and its upstream links, as a local replacement does.
    """
    _log.info(
        "station {station}: new connection on instance {instance} replaces this one",
        station=session.station_id,
        instance=instance,
    )
    session.close(REPLACED, f"replaced by a new connection of the same station on {instance}")
