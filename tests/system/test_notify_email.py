"""Tests for L{ocppproxy.notify.email}: the message, and delivery to a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import email
import email.policy
import os
from dataclasses import replace
from datetime import UTC, datetime

from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ocppproxy.config.model import EmailSettings, SmtpSettings
from ocppproxy.notify.alert import Alert, DeliveryError
from ocppproxy.notify.delivery import DeliveryQueue
from ocppproxy.notify.email import EmailChannel, compose

from ..certs import make_ca_and_server_cert
from ..memory import ResolvingMemoryReactor
from ..smtpserver import SmtpTestServer

SENDER = "Ladesäulen-Alarm <alerts@example.com>"
RECIPIENTS = ("ops@example.com", "night-shift@example.org")
PASSWORD = "s3cret-Pässword"
ALERT = Alert(
    "cp_status_faulted",
    "CP-0042",
    "Ladepunkt Süd (CP-0042): Faulted",
    "Ladepunkt Süd (CP-0042)\nStatus: Faulted\n.a line starting with a dot\n",
)


def email_settings(port: int, tls: str = "none", username: str | None = None, password: str | None = None):
    smtp = SmtpSettings(host="127.0.0.1", port=port, tls=tls, username=username, password=password, timeout=4.0)
    return EmailSettings(sender=SENDER, recipients=RECIPIENTS, smtp=smtp)


class ComposeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.when = datetime(2024, 5, 17, 8, 30, 15, tzinfo=UTC)
        self.raw = compose(ALERT, SENDER, RECIPIENTS, self.when).as_bytes(policy=email.policy.default)
        self.parsed = email.message_from_bytes(self.raw, policy=email.policy.default)

    def test_headers(self) -> None:
        """From, To, Subject, Date and Message-ID are set, the UTF-8 subject encoded for the wire."""
        self.assertEqual(self.parsed["Subject"], ALERT.subject)
        self.assertEqual(self.parsed["From"], SENDER)
        self.assertEqual(self.parsed["To"], ", ".join(RECIPIENTS))
        self.assertEqual(self.parsed["Date"], "Fri, 17 May 2024 08:30:15 +0000")
        self.assertRegex(self.parsed["Message-ID"], r"^<[^@>]+@example\.com>$")
        self.raw.decode("ascii")

    def test_line_breaks_in_subject_flattened(self) -> None:
        """Line breaks in the (station-provided) subject become spaces: no header injection."""
        alert = Alert("k", "CP1", "Faulted\r\nBcc: victim@example.net", "text")
        message = compose(alert, SENDER, RECIPIENTS, self.when)
        self.assertEqual(message["Subject"], "Faulted Bcc: victim@example.net")
        self.assertIsNone(message["Bcc"])

    def test_body(self) -> None:
        """The body is the alert's text, as UTF-8 plain text."""
        self.assertEqual(self.parsed.get_content_type(), "text/plain")
        self.assertEqual(self.parsed.get_content_charset(), "utf-8")
        self.assertEqual(self.parsed.get_content(), ALERT.text)


class EmailChannelInMemoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ResolvingMemoryReactor()
        self.channel = EmailChannel(email_settings(2525), self.reactor, deadline=4.0)

    def connect(self, attempt: int = 0) -> StringTransport:
        (host, port, factory, _, _) = self.reactor.tcpClients[attempt]
        self.assertEqual((host, port), ("127.0.0.1", 2525))
        transport = StringTransport()
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(transport)
        return transport

    def test_silent_server_times_out(self) -> None:
        """A server that never answers is a transient failure after the timeout; nothing is left behind."""
        sending = self.channel.send(ALERT)
        transport = self.connect()
        self.reactor.advance(3.9)
        self.assertNoResult(sending)
        self.reactor.advance(0.1)
        error = self.failureResultOf(sending, DeliveryError).value
        self.assertTrue(error.transient)
        self.assertIn("Timeout", str(error))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_slow_server_is_cut_at_the_attempt_deadline(self) -> None:
        """
        A server that answers each command just within the reply timeout still has the
        whole attempt cut at the delivery queue's deadline: the connection is dropped and
        the alert retried on a new one.
        """
        channel = EmailChannel(email_settings(2525), self.reactor, deadline=10.0)
        queue = DeliveryQueue("email", channel.send, self.reactor, 10, 3, 5.0, deadline=10.0)
        queue.put(ALERT)
        transport = self.connect()
        for reply in (b"220 slow.example.com ESMTP", b"250 slow.example.com", b"250 sender ok"):
            self.reactor.advance(3.0)
            self.protocol.dataReceived(reply + b"\r\n")
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1.0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual((queue.sent, queue.pending), (0, 1))
        self.reactor.advance(5.0)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_cancel_while_connecting(self) -> None:
        """Cancelling the send stops the connection attempt."""
        sending = self.channel.send(ALERT)
        sending.cancel()
        self.failureResultOf(sending, CancelledError)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_unknown_tls_mode(self) -> None:
        """A TLS mode other than starttls, ssl or none is refused at construction."""
        self.assertRaises(ValueError, EmailChannel, email_settings(25, tls="tls"), self.reactor)

    def test_unusable_address(self) -> None:
        """An address that SMTP without SMTPUTF8 cannot carry is refused at construction."""
        settings = replace(email_settings(25), recipients=("ops@example.com", "büro@example.com"))
        self.assertRaises(ValueError, EmailChannel, settings, self.reactor)


class EmailChannelOverNetworkTests(TestCase):
    timeout = 5

    def setUp(self) -> None:
        self.certs = make_ca_and_server_cert(self.mktemp_dir())
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def mktemp_dir(self) -> str:
        path = self.mktemp()
        os.makedirs(path)
        return path

    def serve(self, **options) -> tuple[SmtpTestServer, int]:
        server = SmtpTestServer(certs=self.certs, **options)
        port = server.listen(reactor)
        self.addCleanup(server.stop)
        return server, port

    def channel(self, port: int, tls: str = "none", trusted: bool = True, **auth) -> EmailChannel:
        return EmailChannel(email_settings(port, tls, **auth), reactor, self.certs["ca.pem"] if trusted else None)

    def assertNoSecretLogged(self) -> None:
        logged = "\n".join(formatEvent(event) + repr(event) for event in self.events)
        for secret in (PASSWORD, base64.b64encode(PASSWORD.encode()).decode()):
            self.assertNotIn(secret, logged)

    async def test_plain_delivery_to_two_recipients(self) -> None:
        """Without TLS the message reaches both recipients with its headers intact."""
        server, port = self.serve()
        self.assertIsNone(await self.channel(port).send(ALERT))
        self.assertEqual([mail.recipient for mail in server.received], list(RECIPIENTS))
        self.assertEqual({mail.sender for mail in server.received}, {"alerts@example.com"})
        message = email.message_from_bytes(server.received[0].data, policy=email.policy.default)
        self.assertEqual(message["Subject"], "Ladepunkt Süd (CP-0042): Faulted")
        self.assertEqual(message["From"], SENDER)
        self.assertEqual(message["To"], ", ".join(RECIPIENTS))
        self.assertIsNotNone(message["Date"].datetime)
        self.assertTrue(message["Message-ID"].endswith("@example.com>"))
        self.assertEqual(message.get_content(), ALERT.text)
        self.assertEqual(server.received[1].data, server.received[0].data)

    async def test_starttls_with_auth(self) -> None:
        """STARTTLS against the test certificate (trusted through ca_file), then AUTH, then delivery."""
        server, port = self.serve(tls="starttls", users={"alerts": PASSWORD})
        await self.channel(port, "starttls", username="alerts", password=PASSWORD).send(ALERT)
        self.assertEqual([mail.username for mail in server.received], ["alerts", "alerts"])
        await server.stop()
        self.assertEqual(server.starttls_sessions, [True])
        self.assertNoSecretLogged()

    async def test_implicit_tls_with_auth(self) -> None:
        """With tls: ssl the connection speaks TLS from the first byte."""
        server, port = self.serve(tls="ssl", users={"alerts": PASSWORD})
        await self.channel(port, "ssl", username="alerts", password=PASSWORD).send(ALERT)
        self.assertEqual([mail.recipient for mail in server.received], list(RECIPIENTS))

    async def test_untrusted_certificate(self) -> None:
        """A certificate the client does not trust stops the delivery before any AUTH."""
        server, port = self.serve(tls="starttls", users={"alerts": PASSWORD})
        channel = self.channel(port, "starttls", trusted=False, username="alerts", password=PASSWORD)
        with self.assertRaises(DeliveryError) as caught:
            await channel.send(ALERT)
        self.assertIn("certificate verify failed", str(caught.exception))
        self.assertEqual(server.received, [])

    async def test_starttls_required(self) -> None:
        """With tls: starttls, a server that offers no STARTTLS gets nothing: a permanent error."""
        server, port = self.serve()
        with self.assertRaises(DeliveryError) as caught:
            await self.channel(port, "starttls", username="alerts", password=PASSWORD).send(ALERT)
        self.assertFalse(caught.exception.transient)
        self.assertEqual(server.received, [])

    async def test_wrong_password_is_permanent(self) -> None:
        """A refused AUTH (535) is permanent, and the password shows nowhere."""
        _, port = self.serve(tls="starttls", users={"alerts": "another password"})
        with self.assertRaises(DeliveryError) as caught:
            await self.channel(port, "starttls", username="alerts", password=PASSWORD).send(ALERT)
        self.assertFalse(caught.exception.transient)
        self.assertIn("535", str(caught.exception))
        self.assertNotIn(PASSWORD, str(caught.exception))
        self.assertNoSecretLogged()

    async def test_refused_connection_is_transient(self) -> None:
        """Nothing listening on the port: a transient error."""
        server, port = self.serve()
        await server.stop()
        with self.assertRaises(DeliveryError) as caught:
            await self.channel(port).send(ALERT)
        self.assertTrue(caught.exception.transient)
        self.assertIn(f"cannot reach SMTP server 127.0.0.1:{port}", str(caught.exception))

    async def test_one_recipient_refused(self) -> None:
        """A refused recipient does not stop delivery to the others; it is logged."""
        server, port = self.serve(refuse={"night-shift@example.org": 550})
        await self.channel(port).send(ALERT)
        self.assertEqual([mail.recipient for mail in server.received], ["ops@example.com"])
        warnings = [formatEvent(event) for event in self.events if "not accepted" in formatEvent(event)]
        self.assertEqual(len(warnings), 1)
        self.assertIn("night-shift@example.org: 550", warnings[0])

    async def test_all_recipients_refused_temporarily_is_transient(self) -> None:
        """Every recipient refused with 4xx: transient."""
        _, port = self.serve(refuse={address: 450 for address in RECIPIENTS})
        with self.assertRaises(DeliveryError) as caught:
            await self.channel(port).send(ALERT)
        self.assertTrue(caught.exception.transient)
        self.assertIn("ops@example.com: 450", str(caught.exception))

    async def test_all_recipients_refused_permanently_is_permanent(self) -> None:
        """Every recipient refused with 5xx: permanent."""
        _, port = self.serve(refuse={address: 550 for address in RECIPIENTS})
        with self.assertRaises(DeliveryError) as caught:
            await self.channel(port).send(ALERT)
        self.assertFalse(caught.exception.transient)
