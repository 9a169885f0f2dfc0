"""
The fast frame path (ocppproxy.fastpath: frames, wsframes) against stock Autobahn: the
same bytes in, the same messages out, the same close codes, the same bytes written.

Each side is a protocol after a real opening handshake over a StringTransport: the
proxy's own StationProtocol (server) and UpstreamProtocol (client), built by their
factories, and a plain Autobahn WebSocketServerProtocol / WebSocketClientProtocol with
the same options. Both get the same byte stream in the same chunks, Autobahn's random
masks are seeded alike, and everything either side does is compared.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from contextlib import contextmanager
from types import SimpleNamespace

import txaio
from autobahn.exception import Disconnected
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket import protocol as autobahn_protocol
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.relay.connection_options import websocket_options
from ocppproxy.fastpath.check import check_at_start_up, missing_internals
from ocppproxy.fastpath.frames import LeanFrames
from ocppproxy.fastpath.wsframes import FAST_LIMIT, xor_mask
from ocppproxy.wire.station import StationFactory
from ocppproxy.wire.upstream_protocol import UpstreamFactory

# The proxy's options, with a small frame limit so that oversized frames are cheap to
# make (the limit is a parameter of both paths; the config's own minimum is 1 KiB).
SMALL_LIMIT = 160
DEFAULT_OPTIONS = websocket_options(config_from_mapping({"primary_url": "ws://127.0.0.1:9/"}))
SMALL_OPTIONS = {**DEFAULT_OPTIONS, "maxFramePayloadSize": SMALL_LIMIT, "maxMessagePayloadSize": SMALL_LIMIT}
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REQUEST = (
    b"GET /CP_1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)
# Autobahn's keepalive ping carries its send time, a sequence number and random bytes
# (none at the default autoPingSize of 12); the tests freeze the time at 0, so the first
# ping of either side is this, and a peer's pong can echo it.
KEEPALIVE_PING = bytes(8) + (1).to_bytes(4, "big")
# What is compared of each protocol once the stream is in (Autobahn's own attributes).
OUTCOME = ("state", "wasClean", "wasNotCleanReason", "droppedByMe", "failedByMe", "closedByMe")
OUTCOME += ("localCloseCode", "localCloseReason", "remoteCloseCode", "remoteCloseReason")


class RecordingTransport(StringTransport):
    """A StringTransport that takes the calls our protocols make on a TCP transport."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled

    def unregisterProducer(self) -> None:
        # Autobahn unregisters itself when it drops the connection, registered or not.
        self.producer = None


class Events:
    """What a protocol handed to the code above it, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def message(self, payload: bytes, is_binary: bool) -> None:
        self.seen.append(("message", bytes(payload), is_binary))

    def closed(self) -> None:
        self.seen.append(("closed",))


class FakeSession(Events):
    """The StationProtocol's session: accepts the station's subprotocol, records the rest."""

    def negotiate(self, station_offered: bool) -> str:
        return "ocpp1.6"

    def station_open(self) -> None:
        self.seen.append(("open",))

    def from_station(self, payload: bytes, is_binary: bool) -> None:
        self.message(payload, is_binary)

    def station_closed(self, protocol, code, reason) -> None:
        self.closed()


class FakeProxy:
    def __init__(self, session: FakeSession) -> None:
        self.session = session

    def station_connecting(self, protocol, station_id, request, offers):
        return self.session


class FakeLink(Events):
    """The UpstreamProtocol's link: records what the central system sent and the close."""

    def opened(self, protocol) -> None:
        self.seen.append(("open",))

    def received(self, payload: bytes, is_binary: bool) -> None:
        self.message(payload, is_binary)

    def closed(self, protocol, reason: str) -> None:
        Events.closed(self)


class StockServer(WebSocketServerProtocol):
    def onConnect(self, request):
        return "ocpp1.6"

    def onOpen(self):
        self.factory.events.seen.append(("open",))

    def onMessage(self, payload, isBinary):
        self.factory.events.message(payload, isBinary)

    def onClose(self, wasClean, code, reason):
        self.factory.events.closed()


class StockClient(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.events.seen.append(("open",))

    def onMessage(self, payload, isBinary):
        self.factory.events.message(payload, isBinary)

    def onClose(self, wasClean, code, reason):
        self.factory.events.closed()


# The fast path as the daemon decides it at start-up (None, and nothing to compare, if
# the installed Autobahn or Twisted lack a name it uses: SameAsAutobahnTests then fail).
FAST_PATH = check_at_start_up()


def _accept(request: bytes) -> bytes:
    """The server's answer to a client's opening handshake request."""
    key = re.search(rb"Sec-WebSocket-Key: (\S+)\r\n", request).group(1)
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
    )


def _connect(factory) -> tuple:
    protocol = factory.buildProtocol(None)
    transport = RecordingTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def assert_fast_path_if_proxy(kind: str, protocol) -> None:
    """The proxy's side is on the fast path: otherwise the tests would compare stock Autobahn with itself."""
    if kind == "proxy":
        assert isinstance(protocol, LeanFrames), f"fast path off (missing: {missing_internals()}): nothing to compare"


def open_server(kind: str, options: dict, clock: Clock) -> tuple:
    """(protocol, transport, events) of a server side after its opening handshake."""
    if kind == "proxy":
        events = FakeSession()
        factory = StationFactory(FakeProxy(events), clock, options, fast_path=FAST_PATH)
    else:
        events = Events()
        factory = WebSocketServerFactory(reactor=clock)
        factory.setProtocolOptions(**options)
        factory.protocol = StockServer
        factory.events = events
    protocol, transport = _connect(factory)
    assert_fast_path_if_proxy(kind, protocol)
    protocol.dataReceived(REQUEST)
    assert transport.value().startswith(b"HTTP/1.1 101"), transport.value()
    transport.clear()
    return protocol, transport, events


def open_client(kind: str, options: dict, clock: Clock) -> tuple:
    """(protocol, transport, events) of a client side after its opening handshake."""
    settings = {"url": "ws://127.0.0.1:9/ocpp/CP_1", "reactor": clock, "protocols": ["ocpp1.6"]}
    if kind == "proxy":
        events = FakeLink()
        factory = UpstreamFactory(events, options, FAST_PATH, **settings)
    else:
        events = Events()
        factory = WebSocketClientFactory(**settings)
        factory.setProtocolOptions(**options)
        factory.protocol = StockClient
        factory.events = events
    protocol, transport = _connect(factory)
    assert_fast_path_if_proxy(kind, protocol)
    protocol.dataReceived(_accept(transport.value()))
    assert events.seen == [("open",)], (kind, transport.value())
    transport.clear()
    return protocol, transport, events


@contextmanager
def autobahn_timers_on(clock: Clock):
    """
    Autobahn's timers (handshake and keepalive timeouts) on C{clock}: they are txaio's,
    which uses the global reactor unless told otherwise.
    """
    saved, txaio.config.loop = txaio.config.loop, clock
    try:
        yield
    finally:
        txaio.config.loop = saved


@contextmanager
def seeded_random(seed: int):
    """
    The global random generator seeded with C{seed}, as it was afterwards: Autobahn's
    masks (and the fast path's) come from C{random.getrandbits}.
    """
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)


def run(opener, kind: str, options: dict, chunks: list[bytes], seed: int, ping_first: bool = False) -> dict:
    """
    Feed C{chunks} to one side as TCP would (nothing after it hung up), after a keepalive
    ping if C{ping_first}; then let its timers run. What it did.
    """
    clock = Clock()
    with autobahn_timers_on(clock):
        protocol, transport, events = opener(kind, options, clock)
        with seeded_random(seed):
            return _run(protocol, transport, events, options, chunks, ping_first, clock)


def _run(protocol, transport, events, options, chunks, ping_first, clock) -> dict:
    if ping_first:
        clock.advance(options["autoPingInterval"])

    def hang_up_if_asked() -> bool:
        if transport.disconnecting and not hasattr(transport, "lost"):
            transport.lost = True
            protocol.connectionLost(Failure(ConnectionDone()))
        return transport.disconnecting

    for chunk in chunks:
        protocol.dataReceived(chunk)
        if hang_up_if_asked():
            break
    # The close handshake's, the drop's and the keepalive's timeouts, as they would run
    # (18 s: past the keepalive timeout, not up to the next ping).
    for _ in range(3):
        clock.advance(options["closeHandshakeTimeout"] + 1)
        hang_up_if_asked()
    outcome = {name: getattr(protocol, name, None) for name in OUTCOME}
    return {
        "events": events.seen,
        "written": transport.value(),
        "aborted": transport.disconnected,
        "hung up": transport.disconnecting,
        **outcome,
    }


# Frames as a peer may send them, valid or not.
def frame(
    opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bytes | None = None, length_size: int = 0
) -> bytes:
    """One RFC 6455 frame; C{length_size} 2 or 8 forces a 16- or 64-bit length even when a shorter one fits."""
    length = len(payload)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length_size == 8 or length > 0xFFFF:
        header = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
    elif length_size == 2 or length > 125:
        header = bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | length))
    if mask is None:
        return header + payload
    return header + mask + xor_mask(payload, mask)


texts = st.text(max_size=60).map(lambda text: text.encode("utf-8"))
bad_utf8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe2\x82"])
payloads = st.one_of(
    texts,
    st.builds(lambda head, bad, tail: head + bad + tail, texts, bad_utf8, texts),
    st.binary(max_size=40),
    st.integers(SMALL_LIMIT - 2, SMALL_LIMIT + 2).map(lambda size: b"x" * size),  # around the limit
)
close_payloads = st.one_of(
    st.just(b""),
    st.just(b"\x03"),  # a 1-byte close body is invalid
    st.builds(
        lambda code, reason: code.to_bytes(2, "big") + reason,
        st.sampled_from([1000, 1001, 1002, 1005, 1006, 1011, 1015, 999, 2000, 3000, 4999, 5000]),
        st.one_of(texts, bad_utf8),
    ),
)


@st.composite
def pieces(draw, masked: bool) -> bytes:
    """One message, control frame or odd frame, mostly as a well-behaved peer sends them."""

    def mask() -> bytes | None:
        proper = masked if draw(st.integers(0, 19)) else not masked  # now and then the wrong way
        return draw(st.binary(min_size=4, max_size=4)) if proper else None

    kind = draw(st.sampled_from(["text", "text", "text", "fragmented", "binary", "control", "pong", "close", "odd"]))
    if kind == "text":
        size = draw(st.sampled_from([0, 0, 0, 0, 2, 8]))  # mostly minimal lengths
        return frame(1, draw(payloads), mask=mask(), length_size=size)
    if kind == "fragmented":
        parts = draw(st.lists(payloads, min_size=1, max_size=3))
        opcode = draw(st.sampled_from([1, 1, 2]))
        stream = b""
        for number, part in enumerate(parts):
            if number and draw(st.booleans()):
                stream += frame(9, b"in between", mask=mask())
            stream += frame(0 if number else opcode, part, fin=number == len(parts) - 1, mask=mask())
        return stream
    if kind == "binary":
        return frame(2, draw(payloads), mask=mask())
    if kind == "control":
        return frame(draw(st.sampled_from([9, 10])), draw(st.binary(max_size=130)), mask=mask())
    if kind == "pong":  # the answer to the keepalive ping, if one was sent
        return frame(10, KEEPALIVE_PING, mask=mask())
    if kind == "close":
        return frame(8, draw(close_payloads), mask=mask())
    return frame(
        draw(st.sampled_from([0, 1, 2, 3, 7, 8, 9, 10, 11, 15])),
        draw(payloads),
        fin=draw(st.booleans()),
        rsv=draw(st.integers(0, 7)),
        mask=mask(),
        length_size=draw(st.sampled_from([0, 2, 8])),
    )


def streams(masked: bool, most: int):
    return st.lists(pieces(masked), min_size=1, max_size=most).map(b"".join)


def every_split(stream: bytes) -> list[list[bytes]]:
    """The stream whole, then cut in two at every offset."""
    return [[stream]] + [[stream[:cut], stream[cut:]] for cut in range(1, len(stream))]


# Cutting at every offset runs each example a few hundred times: fewer examples of it,
# in the CI profile 10 (HYPOTHESIS_PROFILE=explore: 200).
fewer_examples = settings(max_examples=max(10, settings.default.max_examples // 10))


class SameAsAutobahnTests(SynchronousTestCase):
    """The proxy's protocols do what stock Autobahn protocols with the same options do, byte for byte."""

    def setUp(self) -> None:
        self.assertIsNotNone(FAST_PATH, f"the fast path is off (missing: {missing_internals()})")
        # Autobahn formats all its options for a debug line at every connection (about a
        # millisecond); the examples here make thousands of connections, on both sides.
        self.patch(autobahn_protocol, "pformat", lambda value: "")
        self.patch(autobahn_protocol, "time", SimpleNamespace(time_ns=lambda: 0))

    def assertSame(self, opener, options: dict, chunks: list[bytes], ping_first: bool = False) -> None:
        stock = run(opener, "stock", options, chunks, 1, ping_first)
        proxy = run(opener, "proxy", options, chunks, 1, ping_first)
        self.assertEqual(proxy, stock, f"chunks: {chunks!r}, ping first: {ping_first}")

    @fewer_examples
    @given(streams(masked=True, most=3))
    def test_station_side_at_every_offset(self, stream):
        """What a station sends, whole and cut in two anywhere."""
        for chunks in every_split(stream):
            self.assertSame(open_server, SMALL_OPTIONS, chunks)

    @fewer_examples
    @given(streams(masked=False, most=3))
    def test_upstream_side_at_every_offset(self, stream):
        """What a central system sends, whole and cut in two anywhere."""
        for chunks in every_split(stream):
            self.assertSame(open_client, SMALL_OPTIONS, chunks)

    @given(st.booleans(), st.booleans(), st.data())
    def test_both_sides_in_any_chunks(self, server, ping_first, data):
        """Longer streams cut anywhere, any number of times, with or without a keepalive ping waiting for its pong."""
        stream = data.draw(streams(masked=server, most=12))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
        chunks = [stream[start:stop] for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        self.assertSame(open_server if server else open_client, SMALL_OPTIONS, chunks, ping_first)

    def test_keepalive_timeout_against_traffic(self):
        """A keepalive ping then nothing, a text frame, or the pong: timed out or not alike."""
        for server, opener in ((True, open_server), (False, open_client)):
            mask = b"\x01\x02\x03\x04" if server else None
            for stream in (b"", frame(1, b"[2]", mask=mask), frame(10, KEEPALIVE_PING, mask=mask)):
                self.assertSame(opener, SMALL_OPTIONS, [stream], ping_first=True)
        stock = run(open_server, "stock", SMALL_OPTIONS, [b""], 1, ping_first=True)
        self.assertTrue(stock["hung up"])  # the timeout is in play
        self.assertIn("ping", stock["wasNotCleanReason"].lower())

    @given(st.booleans(), st.booleans(), st.integers(0, 2**32 - 1), st.data())
    def test_sending_writes_the_same_bytes(self, server, binary, seed, data):
        """sendMessage of any size, text or binary, open or after any stream (closing, closed): the same bytes
        written, masks from the same random state."""
        opener = open_server if server else open_client
        before = data.draw(st.one_of(st.just(b""), streams(masked=server, most=3)))
        sizes = st.one_of(st.integers(0, 130), st.integers(126, 300), st.sampled_from([FAST_LIMIT, FAST_LIMIT + 1]))
        payload = data.draw(st.one_of(texts, texts, sizes.map(lambda size: b"y" * size)))
        written = []
        for kind in ("stock", "proxy"):
            clock = Clock()
            with autobahn_timers_on(clock):
                protocol, transport, _ = opener(kind, DEFAULT_OPTIONS, clock)
                with seeded_random(seed):
                    protocol.dataReceived(before)
                    try:
                        protocol.sendMessage(payload, isBinary=binary)
                    except Disconnected as refused:
                        written.append(("refused", str(refused)))
                        continue
            written.append(transport.value())
        self.assertEqual(written[1], written[0])

    def test_proxy_limits_at_the_fast_path_edge(self):
        """The proxy's own options: frames of FAST_LIMIT bytes and one more, masked and not, a few cuts."""
        for server, opener in ((True, open_server), (False, open_client)):
            for size in (125, 126, FAST_LIMIT, FAST_LIMIT + 1):
                mask = b"\x01\x02\x03\x04" if server else None
                stream = frame(1, b"a" * size, mask=mask) + frame(1, b"next", mask=mask)
                for cut in (0, 1, 3, 8, len(stream) // 2, len(stream) - 6):
                    chunks = [stream[:cut], stream[cut:]] if cut else [stream]
                    self.assertSame(opener, DEFAULT_OPTIONS, chunks)
