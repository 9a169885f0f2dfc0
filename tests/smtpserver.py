"""
A real ESMTP server on 127.0.0.1 for the tests, built from twisted.mail's own server classes.

It stores what it receives, checks AUTH against a user table when one is given (and
then refuses unauthenticated senders), offers STARTTLS or speaks TLS from the first
byte, and can refuse chosen recipients with a chosen reply code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.cred.checkers import AllowAnonymousAccess, InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, succeed
from twisted.internet.ssl import PrivateCertificate
from twisted.mail import smtp
from twisted.mail.imap4 import PLAINCredentials
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
from zope.interface import implementer


@dataclass(frozen=True)
class ReceivedMail:
    """One message as stored for one recipient; C{data} has b"\\n" line ends."""

    sender: str
    recipient: str
    data: bytes
    username: str | None


@implementer(IMessageSMTP)
class _StoredMessage:
    def __init__(self, server: SmtpTestServer, sender: str, recipient: str, username: str | None) -> None:
        self._server = server
        self._envelope = (sender, recipient, username)
        self._lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self._lines.append(line)

    def eomReceived(self) -> Deferred[None]:
        sender, recipient, username = self._envelope
        self._server.received.append(
            ReceivedMail(sender, recipient, b"".join(line + b"\n" for line in self._lines), username)
        )
        return succeed(None)

    def connectionLost(self) -> None:
        self._lines = []


@implementer(IMessageDelivery)
class _Delivery:
    def __init__(self, server: SmtpTestServer, username: str | None) -> None:
        self._server = server
        self._username = username

    def receivedHeader(self, helo, origin, recipients):
        return None

    def validateFrom(self, helo, origin):
        return origin

    def validateTo(self, user):
        recipient = str(user.dest)
        code = self._server.refuse.get(recipient)
        if code is not None:
            raise smtp.SMTPBadRcpt(recipient, code=code, resp=f"{recipient} refused by the test")
        return lambda: _StoredMessage(self._server, str(user.orig), recipient, self._username)


@implementer(IRealm)
class _Realm:
    def __init__(self, server: SmtpTestServer) -> None:
        self._server = server

    def requestAvatar(self, avatar_id, mind, *interfaces):
        if IMessageDelivery not in interfaces:
            raise NotImplementedError(interfaces)
        username = avatar_id.decode("utf-8") if isinstance(avatar_id, bytes) else None
        return IMessageDelivery, _Delivery(self._server, username), lambda: None


class _ServerProtocol(smtp.ESMTP):
    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.connections += 1

    def connectionLost(self, reason) -> None:
        super().connectionLost(reason)
        self.factory.server.starttls_sessions.append(self.startedTLS)
        self.factory.connection_closed()


class _ServerFactory(smtp.SMTPFactory):
    protocol = _ServerProtocol
    domain = "smtp.test"

    def __init__(self, server: SmtpTestServer, portal: Portal, tls_options) -> None:
        super().__init__(portal)
        self.server = server
        self._tls_options = tls_options
        self.connections = 0
        self._idle: list[Deferred[None]] = []

    def buildProtocol(self, addr):
        server = super().buildProtocol(addr)
        server.challengers = {b"LOGIN": smtp.LOGINCredentials, b"PLAIN": PLAINCredentials}
        server.ctx = self._tls_options
        return server

    def connection_closed(self) -> None:
        self.connections -= 1
        if self.connections == 0:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)

    def when_idle(self) -> Deferred[None]:
        if self.connections == 0:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle.append(waiter)
        return waiter


@dataclass
class SmtpTestServer:
    """
    The server's settings and what it received.

    C{tls} is "none", "starttls" (offered, with C{certs}) or "ssl" (C{certs} needed);
    C{certs} is the mapping from L{tests.certs.make_ca_and_server_cert}; C{users}
    maps user names to passwords and makes AUTH mandatory; C{refuse} maps recipient
    addresses to the code that refuses them. C{starttls_sessions} tells, for each
    closed connection, whether STARTTLS was done on it.
    """

    tls: str = "none"
    certs: dict[str, str] | None = None
    users: dict[str, str] = field(default_factory=dict)
    refuse: dict[str, int] = field(default_factory=dict)
    received: list[ReceivedMail] = field(default_factory=list)
    starttls_sessions: list[bool] = field(default_factory=list)

    def listen(self, reactor) -> int:
        """Listen on 127.0.0.1 with a free port; return the port number."""
        checkers = [AllowAnonymousAccess()]
        if self.users:
            database = InMemoryUsernamePasswordDatabaseDontUse()
            for name, password in self.users.items():
                database.addUser(name.encode("utf-8"), password.encode("utf-8"))
            checkers = [database]
        options = None
        if self.certs is not None:
            with open(self.certs["server.pem"]) as cert, open(self.certs["server-key.pem"]) as key:
                options = PrivateCertificate.loadPEM(cert.read() + key.read()).options()
        self._factory = _ServerFactory(
            self, Portal(_Realm(self), checkers), options if self.tls == "starttls" else None
        )
        if self.tls == "ssl":
            self._port = reactor.listenSSL(0, self._factory, options, interface="127.0.0.1")
        else:
            self._port = reactor.listenTCP(0, self._factory, interface="127.0.0.1")
        return self._port.getHost().port

    def stop(self) -> Deferred[None]:
        """Wait until every client connection is gone, then stop listening."""
        return self._factory.when_idle().addCallback(lambda _: self._port.stopListening())
