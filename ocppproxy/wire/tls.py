"""
TLS over a TCP connection with Python's own C{ssl} module, for the stations
(C{station_tls}: OCPP security profiles 2 and 3) and for C{wss://} central systems.

Why not Twisted's TLS (C{twisted.protocols.tls}, pyOpenSSL): profiled under C{make
bench}, two thirds of the proxy's CPU per relayed CALL with TLS both ways was Python
code around the encryption, not the encryption (under a tenth): pyOpenSSL's Python
wrappers of every OpenSSL call, an exception raised and caught to learn that nothing
more is to be read, and Twisted's buffering of each write to the next reactor turn (a
timer, then the socket's buffer, then two C{epoll_ctl} calls). Here the same OpenSSL
work is a few calls into the C{ssl} module per frame: the bytes read go into a memory
BIO, the frames come out of the C{SSLObject}, and what it encrypts goes out at once
(L{ocppproxy.fastpath.transport.write_now}, where the daemon plugged in the fast path),
as plain frames do.

L{TLSConnection} is the transport the WebSocket protocol writes to and the protocol the
TCP connection reads into (a L{ProtocolWrapper}: what it does not define, such as
C{getPeer} or C{setTcpNoDelay}, is the TCP connection's). Writes made before the TLS
handshake is complete wait for it; a handshake or TLS failure closes the connection, and
the wrapped protocol's C{connectionLost} gets that failure (an C{ssl.SSLError} naming
the reason, e.g. C{certificate verify failed}) instead of the TCP connection's.
Listening on an C{ssl:} endpoint string still uses Twisted's own TLS.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer


if TYPE_CHECKING:
    from ..fastpath import FastPath

# Plain text read from the TLS object at a time: a TLS record holds at most 16 KiB.
_READ_SIZE = 1 << 16
# The oldest TLS accepted either way: the OCPP security white paper's floor.
TLS_FLOOR = ssl.TLSVersion.TLSv1_2


class TLSConnection(ProtocolWrapper):
    """One TLS connection over a TCP connection: see the module's docstring."""

    def __init__(self, factory: TLSServerFactory | TLSClientFactory, wrappedProtocol) -> None:
        super().__init__(factory, wrappedProtocol)
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = factory.context.wrap_bio(
            self._incoming, self._outgoing, server_side=factory.server_side, server_hostname=factory.server_hostname
        )
        self.handshake_done = False
        self._waiting: list[bytes] = []  # written before the handshake completed
        self._failure: Failure | None = None  # why TLS failed: given to the wrapped protocol
        self._shut = False  # close_notify sent, TLS failed, or the connection is gone: nothing more is written
        self._aborted = False
        self._deliver = None  # the wrapped protocol's dataReceived, once looked up
        self._send = None  # how TLS's output goes to the TCP connection: set once connected

    # --- the TCP connection's side

    def connectionMade(self) -> None:
        fast_path = self.factory.fast_path
        if fast_path is None:
            self._send = self.transport.write
        else:
            # The TCP connection hands its data to this object directly, and what TLS
            # produces goes out at once.
            self._send = fast_path.tls_sender(self)
        # A client starts the handshake now (its hello goes out); a server waits for the client's.
        self._handshake()

    def dataReceived(self, data: bytes) -> None:
        if self._shut or self._aborted:
            return
        incoming, tls = self._incoming, self._tls
        incoming.write(data)
        if not self.handshake_done and not self._handshake():
            return
        deliver = self._deliver
        if deliver is None:
            # Looked up once: for an upstream, through ClientService's proxy (__getattr__).
            deliver = self._deliver = self.wrappedProtocol.dataReceived
        while not (self._aborted or self._shut):
            try:
                plain = tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break  # the rest of a record is still to come
            except ssl.SSLError:
                self._fail(Failure())
                return
            if not plain:  # the peer ended TLS (close_notify): so do we
                self.loseConnection()
                return
            deliver(plain)
            if not (incoming.pending or tls.pending()):
                break  # all read: asking again would only raise SSLWantReadError
        if self._outgoing.pending:
            self._flush()  # e.g. a TLS 1.3 key update answered

    def connectionLost(self, reason: Failure) -> None:
        self._shut = True
        self._deliver = self._send = None  # (references to the protocol and the TCP connection)
        super().connectionLost(self._failure or reason)

    # --- the wrapped protocol's side (its transport)

    def write(self, data: bytes) -> None:
        if self._shut or self.disconnecting or not data:
            return
        if not self.handshake_done:
            self._waiting.append(data)
            return
        try:
            self._tls.write(data)
        except ssl.SSLError:
            self._fail(Failure())
            return
        self._send(self._outgoing.read())

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Send TLS's close_notify (once the handshake is done), then close the TCP connection."""
        if self.disconnecting:
            return
        self.disconnecting = True
        if self.handshake_done and not self._shut:
            self._shut = True
            try:
                self._tls.unwrap()
            except ssl.SSLError:
                pass  # unwrap waits for the peer's close_notify, which is not awaited here
            self._flush()
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        self._aborted = True
        self.transport.abortConnection()

    def peer_certificate(self) -> dict | None:
        """The peer's verified certificate as C{ssl.SSLObject.getpeercert} gives it; None without one."""
        if not self.handshake_done:
            return None
        return self._tls.getpeercert() or None

    # --- inside

    def _handshake(self) -> bool:
        """Go on with the TLS handshake: True once it is complete (writes waiting for it then go out)."""
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except ssl.SSLError:
            self._fail(Failure())
            return False
        self.handshake_done = True
        waiting, self._waiting = self._waiting, []
        try:
            for data in waiting:
                self._tls.write(data)
        except ssl.SSLError:
            self._fail(Failure())
            return False
        self._flush()
        return True

    def _fail(self, failure: Failure) -> None:
        """TLS failed: send what OpenSSL has to say (an alert), then close; the wrapped protocol gets C{failure}."""
        if self._failure is None:
            self._failure = failure
        self._flush()
        self._shut = True
        self.transport.loseConnection()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self._send(data)


class TLSServerFactory(WrappingFactory):
    """
    Wraps a server factory: each connection's TLS handshake (as server, with C{context})
    comes first. C{context} may be a function returning the context, asked at each
    new connection (a reload's renewed certificate then serves the next handshake).
    C{fast_path}: see L{TLSConnection.connectionMade} (None: Twisted's own writes).
    """

    protocol = TLSConnection
    server_side = True
    server_hostname = None

    def __init__(
        self,
        context: ssl.SSLContext | Callable[[], ssl.SSLContext],
        wrappedFactory,
        fast_path: FastPath | None = None,
    ) -> None:
        super().__init__(wrappedFactory)
        self._context = context
        self.fast_path = fast_path

    @property
    def context(self) -> ssl.SSLContext:
        """The context for a connection made now."""
        return self._context() if callable(self._context) else self._context


@dataclass(frozen=True)
class ClientTLS:
    """How to speak TLS to one central system: the C{context} (trust, client certificate) and its C{hostname}."""

    context: ssl.SSLContext
    hostname: str


class TLSClientFactory(WrappingFactory):
    """
    Wraps a client factory: each connection's TLS handshake (as client, per C{tls}) comes
    first. C{fast_path}: see L{TLSConnection.connectionMade} (None: Twisted's own writes).
    """

    protocol = TLSConnection
    server_side = False

    def __init__(self, tls: ClientTLS, wrappedFactory, fast_path: FastPath | None = None) -> None:
        super().__init__(wrappedFactory)
        self.context = tls.context
        self.server_hostname = tls.hostname
        self.fast_path = fast_path


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint:
    """
    C{endpoint}'s connections with TLS over them (as Twisted's C{wrapClientTLS}, on
    L{TLSConnection}); C{tls} may be a function, asked at each connection attempt.
    C{fast_path}: see L{TLSConnection.connectionMade}.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        tls: ClientTLS | Callable[[], ClientTLS],
        fast_path: FastPath | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._tls = tls
        self._fast_path = fast_path

    def connect(self, factory):
        tls = self._tls() if callable(self._tls) else self._tls
        return self._endpoint.connect(TLSClientFactory(tls, factory, self._fast_path)).addCallback(
            lambda connection: connection.wrappedProtocol
        )


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """
    A client context verifying certificates and host names against C{ca_file}'s CAs, or
    the system's trust store (or C{SSL_CERT_FILE}) without one; L{TLS_FLOOR} at least.
    """
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = TLS_FLOOR
    return context


@lru_cache(maxsize=64)
def default_client_tls(hostname: str) -> ClientTLS:
    """TLS to C{hostname} verified against the system's trust store; one context per host."""
    return ClientTLS(client_context(), hostname)


def common_name(certificate: dict | None) -> str | None:
    """The subject CN of a certificate as C{getpeercert} gives it ("" if it has none); None without a certificate."""
    if not certificate:
        return None
    for relative_name in certificate.get("subject", ()):
        for attribute, value in relative_name:
            if attribute == "commonName":
                return value
    return ""
