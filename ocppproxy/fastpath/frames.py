"""
The fast path's Autobahn protocol hooks: L{LeanFrames} (and L{LeanClientFrames}) mixed in
before the proxy's stock protocol classes, and the protocol options shared by class.

Profiling the proxy under load (see the performance report) showed Autobahn spending a
fair share of each relayed frame on things ocppproxy never asks for: a debug log event per
read and per write whose arguments (qualified names, highlighted values) are formatted
eagerly even when debug logging is off, and a "message" event fired through txaio (a
Deferred per message) for listeners nobody registers. L{LeanFrames} skips them.

It also reads and writes the common case itself: a whole text message in one frame of at
most 64 KiB, in the open state (L{ocppproxy.fastpath.wsframes}), and sends it with one
C{send} when the socket's buffer is empty (L{write_now}). Autobahn's general frame machine
costs a dozen Python calls and a masking object per frame; every other frame (control,
binary, fragmented, oversized, invalid), and every frame in any other state, still goes
through Autobahn, with its close codes.

L{LeanFrames} also creates three things of Autobahn's per connection only when a
connection needs them (L{LeanFrames.send_queue}, L{LeanFrames.utf8validator},
L{LeanFrames.is_closed}): an idle connection never does, and a proxy holds three per
station; and shares two among all connections (the traffic counters,
L{PROCESS_TRAFFIC}, and txaio's list of valid events, L{LeanFrames.set_valid_events}).

L{share_protocol_options} saves memory instead: Autobahn copies some thirty options from
the factory into every protocol instance, and a proxy holds three protocols per station;
and time per connection: Autobahn also formats those options for a debug line.

Every Autobahn attribute used here is listed in L{ocppproxy.fastpath.check}
(C{AUTOBAHN_NAMES} and the lists after it) and checked at start-up. Autobahn's code is
cited as C{protocol.py} (autobahn/websocket/protocol.py, C{WebSocketProtocol}) and
C{twisted/websocket.py} (autobahn/twisted/websocket.py, C{WebSocketAdapterProtocol}).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from random import getrandbits

import txaio
from autobahn.twisted.websocket import WebSocketClientProtocol
from autobahn.websocket.protocol import TrafficStats
from autobahn.websocket.utf8validator import Utf8Validator
from twisted.internet.defer import Deferred

from .transport import read_directly, write_now
from .wsframes import FAST_LIMIT, read_text_frame, text_frame, xor_mask

# Autobahn's text when a server refuses the upgrade (protocol.py,
# WebSocketClientProtocol.processHandshake: "HTTP status ... upgrade failed [<status>]"),
# from which L{LeanClientFrames} reads the HTTP status.
REFUSAL_TEXT = "upgrade failed ["
_REFUSED = re.compile(r"upgrade failed \[(\d{3})\]")

Settings = tuple[int, bool, bool, Callable[[bytes, bytes], bytes], bool, bool]

# protocol.py's WebSocketProtocol.STATE_OPEN (checked at start-up), as a constant: read
# through an instance, a class attribute is one of the attribute loads CPython 3.11 does
# not specialise (a type lookup and a dict lookup each time), several per frame.
STATE_OPEN: int = WebSocketClientProtocol.STATE_OPEN

# Autobahn counts each connection's octets, frames and messages in a TrafficStats of its
# own (about 170 bytes, three per station) that nothing here reads (it is for
# applications that call setTrackTimings or read trafficStats). Once open, every
# connection counts in this one: the same additions, the process's totals.
PROCESS_TRAFFIC = TrafficStats()

# The event lists of L{LeanFrames.set_valid_events}, one per distinct list.
_VALID_EVENTS: dict[tuple, list] = {}

# What Autobahn's opening handshake leaves on a protocol and never reads once it is open:
# the request's parts (a server's), the status line and the handshake key (both sides).
_HANDSHAKE_ONLY = (
    *("http_status_line", "http_request_uri", "http_request_path", "http_request_params", "http_request_host"),
    *("websocket_origin", "websocket_protocols", "websocket_extensions", "websocket_key", "_wskey"),
    "_transport_details",  # its transport_details: peer, TLS channel id and certificate, for WAMP
)


class LeanFrames:
    """Mix in before Autobahn's server or client protocol class."""

    # Per-class settings (see L{share_protocol_options}); None: worked out per call.
    _fast: Settings | None = None

    # Autobahn's _connectionMade gives every connection an empty deque (sendData's queue
    # for sync and chopped writes, about 770 bytes) and a UTF-8 validator (reset before
    # each text message it validates itself); most connections never use either once
    # open. They are made here when first asked for; None until then (the fast path
    # reads _send_queue, which is as good as empty).
    @property
    def send_queue(self) -> deque:
        queue = self._send_queue
        if queue is None:
            queue = self._send_queue = deque()
        return queue

    @send_queue.setter
    def send_queue(self, queue: deque) -> None:
        self._send_queue = queue or None

    # Autobahn's "connection closed" Deferred (resolved at close, which goes through
    # here): made when first asked for, at the latest when the connection closes.
    @property
    def is_closed(self) -> Deferred:
        closed = self._is_closed
        if closed is None:
            closed = self._is_closed = txaio.create_future()
        return closed

    @is_closed.setter
    def is_closed(self, closed: Deferred) -> None:
        self._is_closed = None

    # txaio's event mixin (autobahn/util.py, ObservableMixin) gives every connection a list
    # of the events it may fire and a dictionary of their last results (about 250 bytes,
    # three per station), the latter written only when a listener exists (nothing here
    # registers one). The list is shared by every connection with the same events; the
    # dictionary is made when fire() first has a listener to run.
    def set_valid_events(self, valid_events=None) -> None:
        key = tuple(valid_events or ())
        shared = _VALID_EVENTS.get(key)
        if shared is None:
            shared = _VALID_EVENTS[key] = list(key)
        self._valid_events = shared

    def fire(self, event, *args, **kwargs):
        if self._results is None and self._listeners is not None:
            self._results = dict.fromkeys(self._valid_events or ())
        return super().fire(event, *args, **kwargs)

    @property
    def utf8validator(self) -> Utf8Validator:
        validator = self._utf8validator
        if validator is None:
            validator = self._utf8validator = Utf8Validator()
        return validator

    @utf8validator.setter
    def utf8validator(self, validator: Utf8Validator) -> None:
        # Autobahn resets it before each message it validates: a fresh one, made when
        # needed, validates the same.
        self._utf8validator = None

    def dataReceived(self, data: bytes) -> None:
        # Autobahn's dataReceived (twisted/websocket.py) logs a debug event per read, its
        # arguments formatted eagerly, then calls _dataReceived. Frames are read here only
        # when Autobahn holds nothing of the stream: no bytes buffered (data), no frame
        # begun (current_frame), no message in progress (inside_message), and with no
        # extension (_perMessageCompress) nor frame logging (logFrames, logOctets).
        if (
            self.state == STATE_OPEN
            and not self.data
            and self.current_frame is None
            and not self.inside_message
            and self._perMessageCompress is None
        ):
            limit, _, _, unmask, masked, may_read = self._fast or fast_settings(self)
            if may_read:
                # Whole single-frame text messages first; the rest (if any) is Autobahn's.
                # A server's peer masks its frames, a client's does not.
                position, end = 0, len(data)
                while position < end and self.state == STATE_OPEN:
                    frame = read_text_frame(data, position, masked, limit, unmask)
                    if frame is None:
                        break
                    payload, position = frame
                    # As processData does for any frame read (protocol.py): traffic puts off the keepalive timeout.
                    if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                        self._cancelAutoPingTimeoutCall()
                    # What the adapter's _onMessage (twisted/websocket.py) does, without its extra call.
                    self.onMessage(payload, False)
                if position == end:
                    return
                data = data[position:]
        self._dataReceived(data)

    def sendMessage(
        self, payload: bytes, isBinary: bool = False, fragmentSize=None, sync: bool = False, doNotCompress: bool = False
    ) -> None:
        limit, may_bypass, masked, apply_mask, _, _ = self._fast or fast_settings(self)
        if (
            self.state != STATE_OPEN
            or not may_bypass
            or isBinary
            or len(payload) > limit
            or self._send_queue  # Autobahn's own queue of writes (sendData's sync and chopsize): after them
            or fragmentSize is not None
            or sync
            or self._perMessageCompress is not None
        ):
            super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)
            return
        if masked:
            # The mask as Autobahn makes it (RFC 6455 asks masks to be unpredictable to the page).
            write_now(self.transport, text_frame(payload, getrandbits(32).to_bytes(4, "big"), apply_mask))
        else:
            write_now(self.transport, text_frame(payload))

    def onMessageEnd(self) -> None:
        # protocol.py's onMessageEnd also fires a "message" event through txaio (a
        # Deferred per message) for listeners nobody registers here.
        if not self.failedByMe:
            self._onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def onOpen(self) -> None:
        # Once open, forget the opening handshake's text and headers (a few KiB per
        # connection), which Autobahn keeps for the connection's life.
        self.http_headers = {}
        self.http_request_data = self.http_response_data = None
        # And what Autobahn parsed out of them, read only while the handshake is checked
        # and answered (protocol.py's processHandshake, succeedHandshake, startHandshake).
        for name in _HANDSHAKE_ONLY:
            if hasattr(self, name):
                setattr(self, name, None)
        self.trafficStats = PROCESS_TRAFFIC
        # Autobahn's sendData asked for the queue to send the handshake: empty, it goes.
        if not self._send_queue:
            self._send_queue = None
        read_directly(self)
        super().onOpen()

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # protocol.py's sendData: a debug event per write, formatted eagerly; the traffic
        # count (trafficStats) is kept as it keeps it.
        if sync or chopsize or self._send_queue or self.logOctets or self.state != STATE_OPEN:
            super().sendData(data, sync, chopsize)
            return
        self.transport.write(data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)


class LeanClientFrames(LeanFrames):
    """L{LeanFrames} for a client protocol: also reads a refusing server's HTTP status."""

    def refusal_status(self, reason: str) -> int | None:
        """
        The HTTP status with which the central system refused the upgrade, read from
        Autobahn's C{reason} for the failed handshake (see L{REFUSAL_TEXT}): None if the
        handshake failed otherwise.
        """
        found = _REFUSED.search(reason)
        return int(found.group(1)) if found else None


def fast_settings(options, masker: Callable[[bytes, bytes], bytes] = xor_mask) -> Settings:
    """
    What L{LeanFrames} needs of a protocol's (or factory's) options, worked out once:
    (largest payload read or written here, whether sending may bypass Autobahn, whether
    to mask what it sends, the function that masks and unmasks, whether what it reads is
    masked (a server's), whether reading may bypass Autobahn).
    """
    limits = [limit for limit in (options.maxFramePayloadSize, options.maxMessagePayloadSize) if limit > 0]
    server = getattr(options, "factory", options).isServer
    masked = bool(options.maskServerFrames if server else options.maskClientFrames)
    may_bypass = not (
        options.autoFragmentSize or options.logFrames or options.logOctets or (masked and not options.applyMask)
    )
    may_read = not (options.logFrames or options.logOctets)
    return min([FAST_LIMIT, *limits]), may_bypass, masked, masker, bool(server), may_read


_LEAN_CLASSES: dict[type, type] = {}


def lean_protocol(stock: type) -> type:
    """
    C{stock} (a subclass of Autobahn's server or client protocol) with L{LeanFrames} (a
    client: L{LeanClientFrames}) mixed in first; one class per stock class.
    """
    lean = _LEAN_CLASSES.get(stock)
    if lean is None:
        mixin = LeanClientFrames if issubclass(stock, WebSocketClientProtocol) else LeanFrames
        lean = _LEAN_CLASSES[stock] = type(
            f"Lean{stock.__name__}",
            (mixin, stock),
            {"__module__": stock.__module__, "__doc__": f"L{{{stock.__name__}}} on the fast frame path."},
        )
    return lean


_PLAIN = (bool, int, float, str, type(None))
_OPTION_CLASSES: dict[tuple, type] = {}


def share_protocol_options(factory, masker: Callable[[bytes, bytes], bytes] = xor_mask) -> None:
    """
    Give C{factory}'s protocols its options as class attributes, so that Autobahn finds
    them there and does not copy them into each instance (and their frames masked with
    C{masker}). Call after C{setProtocolOptions}; factories with equal options share one class.
    """
    base = factory.protocol
    # Plain values only: a callable option (Autobahn's default compression accept
    # function is a new lambda per factory) stays per instance, as Autobahn does it.
    options = {
        name: value
        for name in base.CONFIG_ATTRS
        if isinstance(value := getattr(factory, name), _PLAIN) or (isinstance(value, (list, tuple)) and not value)
    }
    settings = fast_settings(factory, masker)
    key = (base, settings, repr(sorted(options.items())))
    shared = _OPTION_CLASSES.get(key)
    if shared is None:
        attributes = {
            "__module__": base.__module__,
            **options,
            "_fast": settings,
            # Autobahn's _connectionMade (protocol.py) walks CONFIG_ATTRS to copy what the
            # instance lacks and pformats the whole list for a debug line it then drops: a
            # third of the proxy's CPU when a site reconnects at once. The shared options need neither.
            "CONFIG_ATTRS": [name for name in base.CONFIG_ATTRS if name not in options],
        }
        shared = _OPTION_CLASSES[key] = type(base.__name__, (base,), attributes)
    factory.protocol = shared
