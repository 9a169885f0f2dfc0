"""
The proxy's TLS layer (L{ocppproxy.wire.tls}) in memory: a client and a server
L{TLSConnection} over two memory transports, the bytes between them pumped by hand.
"""

from __future__ import annotations

import os
import ssl

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.fastpath import FastPath
from ocppproxy.wire.tls import ClientTLS, TLSClientFactory, TLSServerFactory, common_name

from ..certs import make_station_pki

STATION = "CP_TLS"


class Recorder(Protocol):
    """The protocol inside: what it received, and why its connection ended."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lost = None

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason) -> None:
        self.lost = reason


class Pair:
    """
    A TLS client and server, each on a memory transport, on the fast path unless
    C{fast_path} is None; L{pump} carries the bytes until both are quiet.
    """

    def __init__(
        self, server_context: ssl.SSLContext, client_context: ssl.SSLContext, fast_path: FastPath | None = FastPath()
    ) -> None:
        self.server_inside, self.client_inside = Recorder(), Recorder()
        server_factory = TLSServerFactory(server_context, Factory.forProtocol(lambda: self.server_inside), fast_path)
        client_factory = TLSClientFactory(
            ClientTLS(client_context, "127.0.0.1"), Factory.forProtocol(lambda: self.client_inside), fast_path
        )
        self.server = server_factory.buildProtocol(None)
        self.client = client_factory.buildProtocol(None)
        self.server_wire, self.client_wire = StringTransport(), StringTransport()
        self.server.makeConnection(self.server_wire)
        self.client.makeConnection(self.client_wire)

    def pump(self) -> None:
        for _ in range(20):
            to_server, to_client = self.client_wire.value(), self.server_wire.value()
            if not (to_server or to_client):
                return
            self.client_wire.clear()
            self.server_wire.clear()
            if to_server:
                self.server.dataReceived(to_server)
            if to_client:
                self.client.dataReceived(to_client)
        raise AssertionError("still talking after 20 rounds")


class TLSConnectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.paths = make_station_pki(directory, STATION)

    def server_context(self, client_certificates: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.paths["server.pem"], self.paths["server-key.pem"])
        if client_certificates:
            context.load_verify_locations(self.paths["ca.pem"])
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self, certificate: str | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.paths["ca.pem"])
        if certificate:
            context.load_cert_chain(self.paths[f"{certificate}.pem"], self.paths[f"{certificate}-key.pem"])
        return context

    def test_writes_wait_for_the_handshake_then_flow_both_ways(self):
        """What the client writes before the handshake arrives after it, in order; then both ways."""
        pair = Pair(self.server_context(), self.client_context())
        pair.client.write(b"GET / HTTP/1.1\r\n")
        pair.client.writeSequence([b"Host: x\r\n", b"\r\n"])
        self.assertFalse(pair.client.handshake_done)
        pair.pump()
        self.assertTrue(pair.client.handshake_done and pair.server.handshake_done)
        self.assertEqual(b"".join(pair.server_inside.received), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        pair.server.write(b"frame" * 5000)  # more than one TLS record
        pair.pump()
        self.assertEqual(b"".join(pair.client_inside.received), b"frame" * 5000)
        self.assertEqual(common_name(pair.client.peer_certificate()), "127.0.0.1")

    def test_fast_path_off(self):
        """With the fast path off (an internal missing), TLS writes go through the transport's write, and flow."""
        pair = Pair(self.server_context(), self.client_context(), fast_path=None)
        self.assertEqual(pair.client._send, pair.client_wire.write)
        pair.client.write(b"hello")
        pair.pump()
        self.assertEqual(pair.server_inside.received, [b"hello"])

    def test_close_notify_both_ways(self):
        """loseConnection sends close_notify; the peer answers with its own and closes; later writes are dropped."""
        pair = Pair(self.server_context(), self.client_context())
        pair.pump()
        pair.server.loseConnection()
        self.assertTrue(pair.server_wire.disconnecting)
        pair.server.write(b"too late")
        pair.pump()
        self.assertTrue(pair.client_wire.disconnecting)
        self.assertEqual(pair.client_inside.received, [])

    def test_client_certificate_named(self):
        """A client certificate the server's CA signed: its CN is read on the server's side."""
        pair = Pair(self.server_context(client_certificates=True), self.client_context("client"))
        pair.client.write(b"hello")
        pair.pump()
        self.assertEqual(pair.server_inside.received, [b"hello"])
        self.assertEqual(common_name(pair.server.peer_certificate()), STATION)

    def test_handshake_failure_reaches_the_inner_protocol(self):
        """No client certificate where one is required: both sides close; the server's protocol learns why."""
        pair = Pair(self.server_context(client_certificates=True), self.client_context())
        pair.client.write(b"never delivered")
        pair.pump()
        self.assertTrue(pair.server_wire.disconnecting)
        pair.server.connectionLost(None)
        self.assertTrue(pair.server_inside.lost.check(ssl.SSLError))
        self.assertEqual(pair.server_inside.received, [])

    def test_untrusted_server_is_refused_with_the_reason(self):
        """A server certificate no trusted CA signed: the client closes, and its protocol is told why."""
        pair = Pair(self.server_context(), ssl.create_default_context())  # the system's CAs, not the test CA
        pair.client.write(b"never delivered")
        pair.pump()
        self.assertTrue(pair.client_wire.disconnecting)
        pair.client.connectionLost(None)
        self.assertIn("certificate verify failed", pair.client_inside.lost.getErrorMessage())
        self.assertEqual(pair.server_inside.received, [])

    def test_common_name(self):
        """The subject's CN from getpeercert's form; "" without one; None without a certificate."""
        self.assertEqual(common_name({"subject": ((("countryName", "DE"),), (("commonName", "CP_1"),))}), "CP_1")
        self.assertEqual(common_name({"subject": ((("countryName", "DE"),),)}), "")
        self.assertIsNone(common_name(None))
        self.assertIsNone(common_name({}))
