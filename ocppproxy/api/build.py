"""
How the daemon builds the API (L{ocppproxy.daemon.tap}): its observers (the frame
history and the event feed), its audit trail, and the service, given what it reads.
"""

from __future__ import annotations

from twisted.internet.defer import succeed

from ..config.model import Config
from ..core.api_auth import Tokens
from ..core.frame_history import FrameHistory
from ..core.redact import Redactor
from ..relay.registry import StationSessions
from ..status.fleet import StationQuery, fleet_listing
from ..status.snapshot import station_entry
from .audit import AuditTrail
from .history import EventFeed, FrameTrace
from .service import ApiService


class ApiParts:
    """What the API observes, built before the proxy (its observers go into the proxy's constructor)."""

    def __init__(self, config: Config, reactor, redactor: Redactor) -> None:
        self.config = config
        self.trace = FrameTrace(FrameHistory(config.api.history), reactor, redactor)
        self.events = EventFeed(reactor)
        self.audit = AuditTrail(reactor, config.traffic_log_directory)
        self.audit.setName("audit")
        self._reactor = reactor
        self._redactor = redactor

    def service(self, proxy, sessions: StationSessions, activity, notifier, status=None) -> ApiService:
        """The C{api} service: the fleet read as the status page reads it (its cluster view too, with one)."""
        reactor = self._reactor

        def listing(query: StationQuery):
            if status is not None:
                return status.read_stations(query)
            return succeed(fleet_listing(proxy.snapshot(), activity, notifier.names, query, reactor.seconds()))

        def describe(station_id: str) -> dict | None:
            station = proxy.snapshot().stations.get(station_id)
            record = activity.stations.get(station_id)
            if station is None and record is None:
                return None
            entry = station_entry(station_id, station, record, notifier.names)
            session = sessions.current.get(station_id)
            if session is not None and session.relay is not None:
                entry["calls_waiting"] = session.relay.calls_waiting
                entry["links"] = {name: {"connected": bool(link.connected)} for name, link in session.links.items()}
            return entry

        api = self.config.api
        service = ApiService(
            api.listen,
            reactor,
            Tokens(api.tokens),
            sessions,
            self.trace,
            self.events,
            self.audit,
            self._redactor,
            self.config.pending_call_timeout,
            listing,
            describe,
            cluster=self.config.cluster,
        )
        service.setName("api")
        return service
