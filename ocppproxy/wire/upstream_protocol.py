"""
The upstream side's WebSocket edge: the Autobahn client protocol and factory of one
station's connection to one central system, and the endpoint for its ws:// or wss:// URL.
L{ocppproxy.wire.upstream.UpstreamLink} keeps it connected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from ..logs import autobahn_logger
from .closing import CloseWaiters
from .slots import AUTOBAHN_SLOTS
from .timers import shared_batched_timer
from .tls import ClientTLS, TLSClientEndpoint, default_client_tls

if TYPE_CHECKING:
    from ..fastpath import FastPath
    from .upstream import UpstreamLink

# The status a station is refused with when its primary's handshake failed and the
# primary's own status is not known (see UpstreamProtocol.refusal_status).
GENERIC_REFUSAL = 502


class UpstreamProtocol(WebSocketClientProtocol, CloseWaiters):
    """
    The WebSocket connection to a central system; hands everything to its link. On
    Autobahn's stock frame path: given a fast path, L{UpstreamFactory} builds a subclass
    of this one with the fast path's frame hooks (L{ocppproxy.fastpath.frames}).
    """

    __slots__ = (*AUTOBAHN_SLOTS, "_lost_reason", "was_open", "refused_status", "_close_waiters", "_closed")
    log = autobahn_logger("ocppproxy.wire.upstream.UpstreamProtocol")

    def __init__(self) -> None:
        super().__init__()
        self._lost_reason: Failure | None = None
        self._init_close_waiters()
        self.was_open = False
        self.refused_status: int | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        # Autobahn never applies its tcpNoDelay option (WebSocketAdapterProtocol's
        # connectionMade reads it before _connectionMade copies it from the factory);
        # without it a relayed frame can wait ~40 ms for Nagle and delayed ACKs.
        self.transport.setTcpNoDelay(True)

    def onOpen(self) -> None:
        self.was_open = True
        self.factory.link.opened(self)

    def failHandshake(self, reason: str) -> None:
        self.refused_status = self.refusal_status(reason)
        super().failHandshake(reason)

    def refusal_status(self, reason: str) -> int | None:
        """
        The HTTP status to refuse the station with, now that this handshake failed for
        C{reason} (None: it was not refused). Autobahn gives no status, only a text whose
        wording is not an API: every failed handshake is a refusal with L{GENERIC_REFUSAL}
        (the fast path reads the primary's own status from the text).
        """
        return GENERIC_REFUSAL

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.link.received(payload, isBinary)

    def connectionLost(self, reason: Failure) -> None:
        self._lost_reason = reason
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        why = reason or (f"close code {code}" if code else "connection lost")
        lost = self._lost_reason
        # A TLS verification failure only shows in connectionLost's reason.
        if lost is not None and not lost.check(ConnectionDone, ConnectionAborted):
            detail = lost.getErrorMessage()
            if detail and detail not in why:
                why = f"{why}: {detail}"
        self._closing_now()
        self.factory.link.closed(self, why)
        self._release_close_waiters()


class UpstreamFactory(WebSocketClientFactory):
    """
    Client factory for one station's connection to one central system. With
    C{fast_path}, it builds its protocols through it (see
    L{ocppproxy.fastpath.FastPath.equip}); without, L{UpstreamProtocol}.
    """

    # One factory per link, so per station twice: Autobahn's forty-odd options in slots
    # (see L{ocppproxy.wire.slots}) instead of a dictionary of their own (about 1.6 KiB).
    __slots__ = (
        *("_batched_timer", "acceptMaskedServerFrames", "applyMask", "autoFragmentSize", "autoPingInterval"),
        *("autoPingRestartOnAnyTraffic", "autoPingSize", "autoPingTimeout", "closeHandshakeTimeout"),
        *("echoCloseCodeReason", "failByDrop", "headers", "host", "isSecure", "link", "logFrames", "logOctets"),
        *("maskClientFrames", "maxFramePayloadSize", "maxMessagePayloadSize", "openHandshakeTimeout", "origin"),
        *("params", "path", "perMessageCompressionAccept", "perMessageCompressionOffers", "port", "protocols"),
        *("proxy", "reactor", "resource", "serverConnectionDropTimeout", "tcpNoDelay", "trackTimings", "url"),
        *("useragent", "utf8validateIncoming", "version"),
    )
    protocol = UpstreamProtocol
    noisy = False

    def __init__(
        self, link: UpstreamLink, websocket_options: dict, fast_path: FastPath | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        # Autobahn gives each factory a timer of its own and a compression-accept lambda
        # of its own; one of each for all links does the same (the timer reads txaio's
        # loop at each call), and their keepalive timers are batched together.
        self._batched_timer = shared_batched_timer(txaio.config.loop)
        self.perMessageCompressionAccept = _accept_no_compression
        self.link = link
        self.setProtocolOptions(**websocket_options)
        if fast_path is not None:
            fast_path.equip(self)


def _accept_no_compression(_offers) -> None:
    """Autobahn's default C{perMessageCompressionAccept} for a client: accept no compression."""
    return None


def upstream_endpoint(
    reactor,
    url: str,
    tls: ClientTLS | Callable[[], ClientTLS | None] | None = None,
    fast_path: FastPath | None = None,
):
    """
    The client endpoint for a ws:// or wss:// URL (wss verifies the server's certificate
    and name, over L{ocppproxy.wire.tls} with C{fast_path}). C{tls} may be a function
    asked at each connection attempt (the TLS files in force then); where it gives None,
    the system's trust store is used.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    endpoint = HostnameEndpoint(reactor, parts.hostname, port, timeout=10)
    if secure and callable(tls):
        asked = tls
        endpoint = TLSClientEndpoint(endpoint, lambda: asked() or default_client_tls(parts.hostname), fast_path)
    elif secure:
        endpoint = TLSClientEndpoint(endpoint, tls or default_client_tls(parts.hostname), fast_path)
    return endpoint


@implementer(IStreamClientEndpoint)
class FailureReportingEndpoint:
    """Wraps a client endpoint to tell the link why a connection attempt failed."""

    def __init__(self, endpoint: IStreamClientEndpoint, on_failure: Callable[[str], None]) -> None:
        self._endpoint = endpoint
        self._on_failure = on_failure

    def connect(self, factory):
        def failed(failure: Failure) -> Failure:
            self._on_failure(failure.getErrorMessage())
            return failure

        return self._endpoint.connect(factory).addErrback(failed)
