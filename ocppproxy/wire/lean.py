"""
Autobahn protocol hooks without the per-frame work ocppproxy does not use.

Profiling the proxy under load (see README.rst, "Performance") showed Autobahn spending
a fair share of each relayed frame on things ocppproxy never asks for: a debug log event
per read and per write whose arguments (qualified names, highlighted values) are
formatted eagerly even when debug logging is off, and a "message" event fired through
txaio (a Deferred per message) for listeners nobody registers. L{LeanFrames} skips them.

It also reads and writes the common case itself: a whole text message in one frame of
at most 64 KiB, in the open state (L{ocppproxy.wire.wsframes}), and sends it with one
C{send} when the socket's buffer is empty (L{write_now}). Autobahn's general frame
machine costs a dozen Python calls and a masking object per frame; every other frame
(control, binary, fragmented, oversized, invalid), and every frame in any other state,
still goes through Autobahn, with its close codes.

L{share_protocol_options} saves memory instead: Autobahn copies some thirty options from
the factory into every protocol instance, and a proxy holds three protocols per station;
and time per connection: Autobahn also formats those options for a debug line.
"""

from __future__ import annotations

import random

from twisted.internet import tcp

from .wsframes import FAST_LIMIT, read_text_frame, text_frame


class LeanFrames:
    """Mix in before Autobahn's server or client protocol class."""

    # Per-class settings (see L{share_protocol_options}); None: worked out per call.
    _fast = None

    def _fast_settings(self) -> tuple[int, bool, bool]:
        """(largest payload read or written here, whether sending may bypass Autobahn, whether to mask)."""
        fast = self._fast
        if fast is None:
            fast = fast_settings(self)
        return fast

    def dataReceived(self, data: bytes) -> None:
        if self.state == self.STATE_OPEN and not self.data and self.current_frame is None and self._plain_frames():
            # Whole single-frame text messages first; the rest (if any) is Autobahn's.
            masked = self.factory.isServer
            limit = self._fast_settings()[0]
            position, end = 0, len(data)
            while position < end and self.state == self.STATE_OPEN:
                frame = read_text_frame(data, position, masked, limit)
                if frame is None:
                    break
                payload, position = frame
                if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                    self._cancelAutoPingTimeoutCall()
                self._onMessage(payload, False)
            if position == end:
                return
            data = data[position:]
        self._dataReceived(data)

    def _plain_frames(self) -> bool:
        """No extension, no logging, no message in progress: frames may be read here."""
        return not (self.inside_message or self._perMessageCompress is not None or self.logFrames or self.logOctets)

    def sendMessage(
        self, payload: bytes, isBinary: bool = False, fragmentSize=None, sync: bool = False, doNotCompress: bool = False
    ) -> None:
        limit, may_bypass, masked = self._fast_settings()
        if (
            not may_bypass
            or isBinary
            or fragmentSize is not None
            or sync
            or len(payload) > limit
            or self.state != self.STATE_OPEN
            or self.send_queue
            or self._perMessageCompress is not None
        ):
            super().sendMessage(payload, isBinary, fragmentSize, sync, doNotCompress)
            return
        # The mask as Autobahn makes it (RFC 6455 asks masks to be unpredictable to the page).
        mask = random.getrandbits(32).to_bytes(4, "big") if masked else None
        write_now(self.transport, text_frame(payload, mask))

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self._onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def release_handshake(self) -> None:
        """Once open, forget the opening handshake's text and headers (a few KiB per connection)."""
        self.http_headers = {}
        self.http_request_data = self.http_response_data = None

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.logOctets or self.state != self.STATE_OPEN:
            super().sendData(data, sync, chopsize)
            return
        self.transport.write(data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)


_PLAIN_TCP = (tcp.Server, tcp.Client)


def write_now(transport, data: bytes) -> None:
    """
    Write C{data} to a plain TCP transport with one C{send} now, when nothing is waiting
    in its buffer; what the socket does not take (and anything on TLS or other
    transports) goes through C{transport.write}, after what is already buffered.

    Twisted's C{write} always buffers and sends on the next reactor turn, which costs
    two C{epoll_ctl} calls and one more event per frame: about a fifth of the proxy's
    CPU per relayed CALL in C{make bench}. The buffer attributes read here are
    Twisted's own (C{abstract.FileDescriptor}); if they are missing, this is C{write}.
    """
    if (
        type(transport) in _PLAIN_TCP
        and not transport.TLS
        and not transport.disconnecting
        and not getattr(transport, "_tempDataBuffer", True)
        and getattr(transport, "offset", -1) == len(getattr(transport, "dataBuffer", b"-"))
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0  # EAGAIN, or an error transport.write's next attempt reports as usual
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def fast_settings(options) -> tuple[int, bool, bool]:
    """What L{LeanFrames} needs of a protocol's (or factory's) options, worked out once."""
    limits = [limit for limit in (options.maxFramePayloadSize, options.maxMessagePayloadSize) if limit > 0]
    server = getattr(options, "factory", options).isServer
    masked = bool(options.maskServerFrames if server else options.maskClientFrames)
    may_bypass = not (
        options.autoFragmentSize or options.logFrames or options.logOctets or (masked and not options.applyMask)
    )
    return min([FAST_LIMIT, *limits]), may_bypass, masked


_PLAIN = (bool, int, float, str, type(None))
_OPTION_CLASSES: dict[tuple[type, str], type] = {}


def share_protocol_options(factory) -> None:
    """
    Give C{factory}'s protocols its options as class attributes, so that Autobahn finds
    them there and does not copy them into each instance. Call after
    C{setProtocolOptions}; factories with equal options share one class.
    """
    base = factory.protocol
    # Plain values only: a callable option (Autobahn's default compression accept
    # function is a new lambda per factory) stays per instance, as Autobahn does it.
    options = {
        name: value
        for name in base.CONFIG_ATTRS
        if isinstance(value := getattr(factory, name), _PLAIN) or (isinstance(value, (list, tuple)) and not value)
    }
    key = (base, repr(sorted(options.items())))
    shared = _OPTION_CLASSES.get(key)
    if shared is None:
        attributes = {
            "__module__": base.__module__,
            **options,
            "_fast": fast_settings(factory),
            # Autobahn's connectionMade walks CONFIG_ATTRS to copy what the instance lacks
            # and pformats the whole list for a debug line it then drops: a third of the
            # proxy's CPU when a site reconnects at once. The shared options need neither.
            "CONFIG_ATTRS": [name for name in base.CONFIG_ATTRS if name not in options],
        }
        shared = _OPTION_CLASSES[key] = type(base.__name__, (base,), attributes)
    factory.protocol = shared
