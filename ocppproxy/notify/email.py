"""
The e-mail channel: one alert, one plain-text message, sent with twisted.mail's ESMTP client.

The SMTP password travels only inside the AUTH exchange; twisted.mail keeps a transcript
of that exchange in its errors, so error messages here are built from the server's reply
code and text alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from io import BytesIO
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import Certificate, optionsForClientTLS, trustRootFromCertificates
from twisted.mail.smtp import ESMTPSender, ESMTPSenderFactory, SMTPClientError, SMTPConnectError
from twisted.python.failure import Failure

from ..config.model import TLS_MODES, EmailSettings
from ..logs import proxy_logger
from .alert import Alert, DeliveryError

# twisted.mail's client turns "\n" into "\r\n" itself: the message must use bare newlines.
_WIRE_POLICY = SMTP_POLICY.clone(linesep="\n")


def compose(alert: Alert, sender: str, recipients: Sequence[str], when: datetime) -> EmailMessage:
    """The message for C{alert}: UTF-8 subject and plain-text body, Date C{when}, a fresh Message-ID."""
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    # Station-provided text may hold line breaks, which a header must not.
    message["Subject"] = " ".join(alert.subject.split())
    message["Date"] = format_datetime(when)
    domain = parseaddr(sender)[1].rpartition("@")[2]
    message["Message-ID"] = make_msgid(domain=domain or "localhost")
    message.set_content(alert.text, charset="utf-8", cte="quoted-printable")
    return message


def load_trust_root(ca_file: str) -> Any:
    """The certificates of the PEM file C{ca_file}, as a trust root for L{optionsForClientTLS}."""
    with open(ca_file, "rb") as stream:
        certificates = x509.load_pem_x509_certificates(stream.read())
    return trustRootFromCertificates([Certificate.loadPEM(cert.public_bytes(Encoding.PEM)) for cert in certificates])


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class _AlertSender(ESMTPSender):
    """An L{ESMTPSender} that reports a lost connection itself and ignores what comes after the result."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.factory.sender_lost(reason)

    def sendError(self, exc: Exception) -> None:
        # A late idle timeout (the result already fired) would otherwise fire the result twice.
        if self.factory.sendFinished:
            self.transport.abortConnection()
            return
        super().sendError(exc)


class _AlertSenderFactory(ESMTPSenderFactory):
    """One message, one attempt; retries are the delivery queue's business."""

    protocol = _AlertSender

    def __init__(self, clock: Any, **kwargs: Any) -> None:
        super().__init__(retries=0, **kwargs)
        self._clock = clock
        self.connection: _AlertSender | None = None
        self.connecting: Deferred | None = None

    def buildProtocol(self, addr: Any) -> _AlertSender:
        sender = super().buildProtocol(addr)
        # TimeoutMixin would use the global reactor.
        sender.callLater = self._clock.callLater
        self.connection = sender
        return sender

    def sender_lost(self, reason: Failure) -> None:
        self.connection = None
        if not self.sendFinished:
            self.sendFinished = True
            self.result.errback(SMTPConnectError(-1, f"connection lost: {reason.getErrorMessage()}"))

    def connect_failed(self, failure: Failure) -> None:
        if not self.sendFinished:
            self.sendFinished = True
            self.result.errback(failure)

    def abort(self) -> None:
        """Stop at once: no QUIT, no waiting for the server."""
        self.sendFinished = True
        if self.connection is not None:
            self.connection.transport.abortConnection()
        elif self.connecting is not None:
            self.connecting.cancel()


class EmailChannel:
    """
    Sends alerts by e-mail through one SMTP server.

    C{settings.smtp.tls} is C{starttls} (STARTTLS required), C{ssl} (TLS from the
    first byte) or C{none}; AUTH is used when a username and password are set. The
    server certificate is checked against the system's trust store, or against the
    PEM certificates in C{ca_file} when given. C{deadline} (the delivery queue's, for
    this channel) also bounds the connection attempt and each wait for a server reply,
    so that the channel alone never waits for ever; the queue's deadline bounds the
    whole attempt, and cancelling the Deferred of L{send} drops the connection.
    """

    _log = proxy_logger()

    def __init__(
        self, settings: EmailSettings, reactor: Any, ca_file: str | None = None, deadline: float = 30.0
    ) -> None:
        smtp = settings.smtp
        self._deadline = deadline
        if smtp.tls not in TLS_MODES:
            raise ValueError(f"smtp.tls must be one of {', '.join(TLS_MODES)}, got {smtp.tls!r}")
        self._settings = settings
        self._reactor = reactor
        self._server = f"SMTP server {smtp.host}:{smtp.port}"
        self._envelope_from = parseaddr(settings.sender)[1]
        self._envelope_to = [address for _, address in getaddresses(settings.recipients)]
        for address in (self._envelope_from, *self._envelope_to):
            if "@" not in address or not address.isascii():
                raise ValueError(f"not a usable e-mail address: {address!r}")
        self._tls = None
        if smtp.tls != "none":
            trust = {"trustRoot": load_trust_root(ca_file)} if ca_file else {}
            self._tls = optionsForClientTLS(smtp.host, **trust)

    def send(self, alert: Alert) -> Deferred[None]:
        """
        Send C{alert} to every recipient; the Deferred fires with None once the server
        accepted the message for at least one of them (refused ones are logged), or
        fails with a L{DeliveryError}: transient for network trouble, timeouts and 4xx
        replies, permanent for 5xx replies. Cancelling it drops the connection.
        """
        smtp = self._settings.smtp
        when = datetime.fromtimestamp(self._reactor.seconds(), UTC)
        message = compose(alert, self._settings.sender, self._settings.recipients, when)
        authenticate = bool(smtp.username and smtp.password)
        result: Deferred = Deferred(lambda _: factory.abort())
        factory = _AlertSenderFactory(
            self._reactor,
            username=smtp.username.encode("utf-8") if authenticate else None,
            password=smtp.password.encode("utf-8") if authenticate else None,
            fromEmail=self._envelope_from,
            toEmail=self._envelope_to,
            file=BytesIO(message.as_bytes(policy=_WIRE_POLICY)),
            deferred=result,
            timeout=self._deadline,
            contextFactory=self._tls if smtp.tls == "starttls" else None,
            heloFallback=True,
            requireAuthentication=authenticate,
            requireTransportSecurity=smtp.tls == "starttls",
        )
        factory.connecting = self._endpoint().connect(factory)
        factory.connecting.addErrback(factory.connect_failed)
        result.addCallbacks(self._sent, self._failed, callbackArgs=(alert,), errbackArgs=(factory,))
        return result

    def _endpoint(self) -> Any:
        smtp = self._settings.smtp
        endpoint = HostnameEndpoint(self._reactor, smtp.host, smtp.port, timeout=self._deadline)
        return wrapClientTLS(self._tls, endpoint) if smtp.tls == "ssl" else endpoint

    def _sent(self, outcome: tuple[int, list], alert: Alert) -> None:
        _, replies = outcome
        for address, code, reply in replies:
            if not 200 <= code < 300:
                self._log.warn(
                    "alerts: e-mail for alert {key} not accepted for {recipient}: {code} {reply}",
                    key=alert.key,
                    recipient=_text(address),
                    code=code,
                    reply=_text(reply),
                )

    def _failed(self, failure: Failure, factory: _AlertSenderFactory) -> Failure:
        factory.abort()
        if failure.check(CancelledError):
            return failure
        error = failure.value
        if not isinstance(error, SMTPClientError):
            raise DeliveryError(f"cannot reach {self._server}: {failure.getErrorMessage()}", transient=True)
        if error.code <= 0:
            raise DeliveryError(f"{self._server}: {_text(error.resp)}", transient=True)
        message = f"{self._server}: {error.code} {_text(error.resp)}"
        refused = [
            f"{_text(address)}: {code} {_text(reply)}"
            for address, code, reply in error.addresses or ()
            if not 200 <= code < 300
        ]
        if refused:
            message += f" ({'; '.join(refused)})"
        raise DeliveryError(message, transient=error.code < 500)
