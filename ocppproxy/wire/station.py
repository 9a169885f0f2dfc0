"""
The station's edge: the Autobahn server protocol a charging station connects to. The pure
checks of its handshake (station id from the path, subprotocol choice) are in
L{ocppproxy.core.handshake}.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from OpenSSL import SSL
from twisted.internet.defer import Deferred

from ..core.handshake import BadStationPath, certificate_names_station, ocpp_offers, station_id_from_path
from ..logs import autobahn_logger, proxy_logger
from .closing import CloseWaiters
from .limits import MAX_HANDSHAKE_BYTES, StationLimits
from .slots import AUTOBAHN_SLOTS
from .station_tls import client_certificate_names
from .timers import shared_batched_timer

if TYPE_CHECKING:
    from ..fastpath import FastPath

TOO_MANY_REQUESTS = 429


class StationProtocol(WebSocketServerProtocol, CloseWaiters):
    """
    A charging station's WebSocket connection; its traffic goes to its session. On
    Autobahn's stock frame path: given a fast path, L{StationFactory} builds a subclass
    of this one with the fast path's frame hooks (L{ocppproxy.fastpath.frames}).
    """

    __slots__ = (
        *AUTOBAHN_SLOTS,
        *("session", "station_id", "was_opened", "_handshaking", "_request_read", "_retry_after"),
        *("_close_waiters", "_closed"),
    )
    _log = proxy_logger()
    log = autobahn_logger("ocppproxy.wire.station.StationProtocol")

    def __init__(self) -> None:
        super().__init__()
        self.session = None
        self.station_id: str | None = None
        self._init_close_waiters()
        self.was_opened = False
        self._handshaking = False
        self._request_read = False
        self._retry_after: int | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.setTcpNoDelay(True)
        host = getattr(self.transport.getPeer(), "host", None)
        admission = self.factory.limits.begin_handshake(self, self.peer, host)
        if admission.shed is not None:
            admission.shed.transport.abortConnection()
        self._handshaking = admission.admitted
        if not admission.admitted:
            self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        if self._handshaking and reason.check(ssl.SSLError, SSL.Error):
            self._log.info(
                "TLS handshake with station {peer} failed: {reason}", peer=self.peer, reason=reason.getErrorMessage()
            )
        self._handshake_over()
        super().connectionLost(reason)

    def _handshake_over(self) -> None:
        if self._handshaking:
            self._handshaking = False
            self.factory.limits.end_handshake(self)

    def processHandshake(self) -> None:
        # Autobahn buffers the request until its blank line, however long, and parses
        # the buffer again when more bytes come while onConnect waits for the primary:
        # WebSocketProtocol.data (autobahn/websocket/protocol.py, _dataReceived appends to
        # it), which has no public accessor. Empty if this Autobahn keeps it elsewhere (the
        # start-up check then names it, and requests are not limited here).
        received = getattr(self, "data", b"")
        if self._request_read:
            if len(received) > MAX_HANDSHAKE_BYTES:
                self.dropConnection(abort=True)
            return
        end = received.find(b"\r\n\r\n", 0, MAX_HANDSHAKE_BYTES)
        if end < 0 and len(received) >= MAX_HANDSHAKE_BYTES:
            self._log.warn(
                "closed connection from {peer}: its handshake request is over {limit} bytes",
                peer=self.peer,
                limit=MAX_HANDSHAKE_BYTES,
            )
            self.failHandshake("request header too large", 431)
            return
        super().processHandshake()

    def onConnect(self, request):
        self._request_read = True
        self.factory.limits.request_read(self)
        try:
            station_id = station_id_from_path(request.path)
        except BadStationPath as error:
            self._log.warn(
                "refused connection from {peer}: bad path {path!r}: {reason}",
                peer=request.peer,
                path=request.path[:100],
                reason=str(error),
            )
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, str(error)) from None
        offered = [entry for entry in request.protocols if entry.strip()]
        offers = ocpp_offers(offered)
        if offered and not offers:
            self._log.warn(
                "refused station {station} from {peer}: it offers no OCPP subprotocol ({offered})",
                station=station_id,
                peer=request.peer,
                offered=", ".join(offered)[:100],
            )
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, "no OCPP subprotocol offered")
        self._check_client_certificate(station_id)
        retry_after = self.factory.limits.admit_connect(station_id, request.peer)
        if retry_after is not None:
            # Before any upstream handshake, and without touching the station's open connection.
            self._retry_after = retry_after
            raise ConnectionDeny(TOO_MANY_REQUESTS, "too many connections of this station, retry later")
        self.station_id = station_id
        self.session = self.factory.proxy.station_connecting(self, station_id, request, offers)
        # Autobahn lets onConnect return a Deferred: the station's handshake waits for
        # the primary's, so the station is answered with the subprotocol the primary chose
        # (or refused with the primary's HTTP status).
        return self.session.negotiate(station_offered=bool(offers))

    def _check_client_certificate(self, station_id: str) -> None:
        """
        A client certificate that names another station: refused with 403 (one warning
        naming both), accepted with a warning, or not looked at, as
        C{station_tls.check_client_id} says.
        """
        check = self.factory.check_client_id()
        if check == "off":
            return
        names = client_certificate_names(self.transport)
        if names is None:
            return
        common_name, dns_names = names
        if certificate_names_station(station_id, common_name, dns_names):
            self._log.info(
                "station {station} presented a client certificate for {name!r}", station=station_id, name=common_name
            )
            return
        if check == "refuse":
            self._log.warn(
                "refused station {station} from {peer} with 403: its client certificate is for {name!r}"
                " (station_tls.check_client_id: refuse)",
                station=station_id,
                peer=self.peer,
                name=common_name,
                dns_names=dns_names,
            )
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "client certificate issued for another station")
        self._log.info(
            "station {station} presented a client certificate for {name!r}", station=station_id, name=common_name
        )
        # Accepted all the same (station_tls.check_client_id: warn): the CA vouches for the station, not its id.
        self._log.warn(
            "station {station}: its client certificate names {name!r}, not the station id",
            station=station_id,
            name=common_name,
            dns_names=dns_names,
        )

    def failHandshake(self, reason: str, code: int = 400, responseHeaders=None) -> None:
        # Every refusal with an HTTP error passes here: a bad request, a refused id or
        # subprotocol, too many stations or connections, the primary's own refusal.
        self.factory.handshakes_refused += 1
        if code == TOO_MANY_REQUESTS and self._retry_after is not None:
            responseHeaders = [*(responseHeaders or ()), ("Retry-After", str(self._retry_after))]
        super().failHandshake(reason, code, responseHeaders)

    def onOpen(self) -> None:
        self.was_opened = True
        self._handshake_over()
        self.session.station_open()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.session.from_station(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._closing_now()
        if self.session is not None:
            self.session.station_closed(self, code, reason)
        self._release_close_waiters()


class StationFactory(WebSocketServerFactory):
    """
    Server factory for charging stations; C{proxy} is the L{ProxyService} they report to,
    C{limits} counts their handshakes in progress and connections (default limits when
    not given), C{check_client_id} says what C{station_tls.check_client_id} is now
    (a reload may change it). With C{fast_path}, it builds its protocols through it (see
    L{ocppproxy.fastpath.FastPath.equip}); without, L{StationProtocol}.
    C{handshakes_refused} counts the handshakes answered with an HTTP error.
    """

    protocol = StationProtocol
    noisy = False

    def __init__(
        self,
        proxy,
        reactor,
        websocket_options: dict,
        limits: StationLimits | None = None,
        check_client_id: Callable[[], str] = lambda: "warn",
        fast_path: FastPath | None = None,
    ) -> None:
        super().__init__(reactor=reactor)
        self._batched_timer = shared_batched_timer(txaio.config.loop)
        self.proxy = proxy
        self.check_client_id = check_client_id
        self.handshakes_refused = 0
        self.limits = limits if limits is not None else StationLimits(reactor)
        self.server = "ocppproxy"
        self.setProtocolOptions(**websocket_options)
        if fast_path is not None:
            fast_path.equip(self)
