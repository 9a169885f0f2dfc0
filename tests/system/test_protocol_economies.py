"""The Autobahn protocol economies: options shared by class, handshake text released."""

from __future__ import annotations

import asyncio
import socket
import types

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.relay.connection_options import websocket_options
from ocppproxy.fastpath import FastPath
from ocppproxy.fastpath.frames import LeanFrames
from ocppproxy.fastpath.transport import write_now
from ocppproxy.fastpath.wsframes import text_frame, xor_mask
from ocppproxy.wire.station import StationFactory, StationProtocol

from ..e2e import async_test, autobahn_timers_settled, needs_asyncio_reactor


def factory(**settings) -> StationFactory:
    config = config_from_mapping({"primary_url": "ws://127.0.0.1:9/", **settings})
    return StationFactory(proxy=None, reactor=Clock(), websocket_options=websocket_options(config), fast_path=FastPath())


class ShareProtocolOptionsTests(SynchronousTestCase):
    def test_equal_options_share_one_class(self):
        """Factories with the same options build protocols of one class, a StationProtocol."""
        first, second = factory(), factory()
        self.assertIs(first.protocol, second.protocol)
        self.assertTrue(issubclass(first.protocol, StationProtocol))

    def test_different_options_different_classes(self):
        """A factory's own options are what its protocols see."""
        small, large = factory(max_frame_size=2048), factory(max_frame_size=4096)
        self.assertIsNot(small.protocol, large.protocol)
        self.assertEqual((small.protocol.maxMessagePayloadSize, large.protocol.maxMessagePayloadSize), (2048, 4096))

    def test_options_not_copied_into_instances(self):
        """Autobahn finds the plain options on the class and copies only the others (callables) per instance."""
        built = factory(keepalive={"interval": 7, "timeout": 3})
        protocol = built.buildProtocol(None)
        protocol._connectionMade = lambda: None  # only the copying step is under test
        for name in protocol.CONFIG_ATTRS:
            if not hasattr(protocol, name):
                setattr(protocol, name, getattr(built, name))
        self.assertEqual((protocol.autoPingInterval, protocol.autoPingTimeout), (7, 3))
        self.assertNotIn("autoPingInterval", vars(protocol))
        self.assertNotIn("maxMessagePayloadSize", vars(protocol))
        self.assertIs(protocol.perMessageCompressionAccept, built.perMessageCompressionAccept)

    def test_connection_walks_only_per_instance_options(self):
        """
        Autobahn's connection setup walks (and formats for its debug log) only the options
        not shared by class; the connected protocol still sees every option.
        """
        built = factory(keepalive={"interval": 7, "timeout": 3})
        shared = built.protocol
        per_instance = ["versions", "perMessageCompressionAccept", "allowedOrigins", "allowedOriginsPatterns"]
        self.assertEqual(shared.CONFIG_ATTRS, per_instance)
        protocol = built.buildProtocol(None)
        protocol.openHandshakeTimeout = 0  # Autobahn's timers run on the global reactor
        protocol.transport = _Transport()
        protocol._connectionMade()
        for name in StationProtocol.CONFIG_ATTRS:
            self.assertEqual(getattr(protocol, name), getattr(built, name) if name != "openHandshakeTimeout" else 0)
        copied = instance_attributes(protocol) & set(StationProtocol.CONFIG_ATTRS)
        self.assertEqual(copied, {"openHandshakeTimeout", *per_instance})


def instance_attributes(instance) -> set[str]:
    """The names C{instance} holds itself: in its dictionary, or in a slot that is set."""
    slots = {
        name
        for cls in type(instance).__mro__
        for name in cls.__dict__.get("__slots__", ())
        if hasattr(instance, name) and isinstance(cls.__dict__.get(name), types.MemberDescriptorType)
    }
    return set(vars(instance)) | slots


class _Recorder(LeanFrames, WebSocketServerProtocol):
    def onConnect(self, request):
        return None

    def onMessage(self, payload, isBinary):
        self.factory.received.append((payload, isBinary))


class _Transport(StringTransport):
    def unregisterProducer(self):
        """Autobahn unregisters itself when it drops the connection, registered or not."""
        self.producer = None


def _open_server() -> tuple[_Recorder, StringTransport]:
    factory = WebSocketServerFactory(reactor=Clock())  # its timers stay off the real reactor
    factory.setProtocolOptions(failByDrop=False)  # as the proxy: a close frame, not a TCP drop
    factory.protocol = _Recorder
    factory.received = []
    protocol = factory.buildProtocol(None)
    transport = _Transport()
    protocol.makeConnection(transport)
    protocol.dataReceived(
        b"GET /CP_1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 101"), transport.value()
    transport.clear()
    return protocol, transport


def _masked(first_byte: int, payload: bytes, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    """A masked frame of any kind (C{first_byte}: FIN, RSV and opcode) as a station sends it."""
    length = len(payload)
    header = (
        bytes((first_byte, 0x80 | length)) if length <= 125 else bytes((first_byte, 0xFE)) + length.to_bytes(2, "big")
    )
    return header + mask + xor_mask(payload, mask)


class LeanFramesTests(SynchronousTestCase):
    """Frames read by ocppproxy itself and by Autobahn, mixed and cut anywhere, arrive whole and in order."""

    @given(
        st.lists(st.tuples(st.text(max_size=200), st.sampled_from(["whole", "fragmented", "after ping"])), max_size=8),
        st.data(),
    )
    def test_mixed_frames_in_any_chunks(self, messages, data):
        protocol, transport = _open_server()
        stream, expected, pings = b"", [], 0
        for text, shape in messages:
            payload = text.encode("utf-8")
            expected.append((payload, False))
            if shape == "after ping":
                stream += _masked(0x89, b"p")
                pings += 1
            if shape == "fragmented" and len(payload) > 1:
                stream += _masked(0x01, payload[:1]) + _masked(0x80, payload[1:])
            else:
                stream += text_frame(payload, b"\x0a\x0b\x0c\x0d")
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
        for start, stop in zip([0, *cuts], [*cuts, len(stream)]):
            protocol.dataReceived(stream[start:stop])
        self.assertEqual(protocol.factory.received, expected)
        self.assertEqual(transport.value().count(b"\x8a\x01p"), pings)

    def test_invalid_utf8_closes_with_1007(self):
        """A text frame that is not UTF-8 is Autobahn's to refuse, with close code 1007."""
        protocol, transport = _open_server()
        protocol.dataReceived(_masked(0x81, b"\xc3\x28"))
        self.assertEqual(protocol.factory.received, [])
        closing = transport.value()
        self.assertEqual((closing[0], closing[2:4]), (0x88, (1007).to_bytes(2, "big")))

    def test_sent_text_frame_unmasked_from_server(self):
        protocol, transport = _open_server()
        protocol.sendMessage(b'[3,"1",{}]')
        self.assertEqual(transport.value(), text_frame(b'[3,"1",{}]'))


class WriteNowTests(TestCase):
    """write_now on a real TCP connection whose peer does not read: nothing lost, nothing reordered."""

    timeout = 20

    async def _accepted(self):
        accepted: Deferred = Deferred()

        class Accept(Protocol):
            def connectionMade(self):
                accepted.callback(self.transport)

        port = reactor.listenTCP(0, Factory.forProtocol(Accept), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)
        transport = await Deferred.asFuture(accepted, asyncio.get_event_loop())
        self.addCleanup(transport.abortConnection)
        return client, transport

    def setUp(self):
        needs_asyncio_reactor()

    @async_test
    async def test_partial_sends_keep_order(self):
        """A small write goes out at once; 16 MB written at once arrive whole and in order."""
        await autobahn_timers_settled()  # the frame tests above leave some on the reactor
        client, transport = await self._accepted()
        self.assertIsInstance(transport, tcp.Server)
        write_now(transport, b"first")
        self.assertEqual((transport._tempDataBuffer, transport.dataBuffer), ([], b""), "sent at once, not buffered")
        chunks = [bytes([number % 251]) * 65536 for number in range(256)]
        for chunk in chunks:
            write_now(transport, chunk)
        self.assertGreater(len(transport._tempDataBuffer) + len(transport.dataBuffer), 0, "the socket never filled")
        expected = b"first" + b"".join(chunks)
        client.setblocking(False)
        received = bytearray()
        loop = asyncio.get_event_loop()
        while len(received) < len(expected):
            data = await asyncio.wait_for(loop.sock_recv(client, 1 << 20), 10)
            if not data:
                break
            received += data
        self.assertEqual(len(received), len(expected))
        if received != expected:
            mismatch = next(index for index, (a, b) in enumerate(zip(received, expected)) if a != b)
            self.fail(f"first difference at byte {mismatch}")
