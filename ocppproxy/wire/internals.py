"""
Every private name of Autobahn and Twisted that ocppproxy relies on, in one module: the
fast frame path that uses them, the lists of the names it needs, and the check, run once
at start-up, that the installed releases still have them all.

Autobahn and Twisted internals are not an API, and any release may rename them. If one
is missing, L{fast_path} says so once (a warning naming what is missing) and the proxy
runs on the stock Autobahn and Twisted paths: its factories build protocols without
L{LeanFrames}, frames go out through C{transport.write}, the write-buffer watch keeps
Twisted's C{bufferSize}, and a refused upstream handshake is reported without its HTTP
status. The decision is taken once, where the protocol factories are built (they pick
their protocol class by it); nothing on the path of a frame asks again.

The fast path itself, L{LeanFrames}: Autobahn protocol hooks without the per-frame work
ocppproxy does not use. Profiling the proxy under load (see README.rst, "Performance") showed Autobahn spending
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

import errno
import random
import re
import socket
import types
from collections.abc import Callable
from dataclasses import dataclass

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import tcp
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import log as legacy_log

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # not Linux: no epoll reactor, nothing of it to replace
    EPollReactor = None
try:
    from twisted.internet.endpoints import _WrappingProtocol
except ImportError:  # a Twisted without it: named by missing_internals, the fast path off
    _WrappingProtocol = None

from ..logs import proxy_logger
from .wsframes import FAST_LIMIT, read_text_frame, text_frame, xor_mask

# What L{LeanFrames} and L{share_protocol_options} read or write on Autobahn's protocols:
# a fresh protocol has these once its connection is made.
AUTOBAHN_NAMES = (
    "data",
    "state",
    "STATE_OPEN",
    "_onMessage",
    "_dataReceived",
    "send_queue",
    "_perMessageCompress",
    "logFrames",
    "logOctets",
    "trafficStats",
    "autoPingTimeoutCall",
    "autoPingRestartOnAnyTraffic",
    "_cancelAutoPingTimeoutCall",
    "failedByMe",
    "CONFIG_ATTRS",
    "maxFramePayloadSize",
    "maxMessagePayloadSize",
    "autoFragmentSize",
    "applyMask",
)
# Set only by the opening handshake or a message: present when Autobahn's code uses them.
AUTOBAHN_NAMES_SET_LATER = (
    "current_frame",
    "inside_message",
    "message_data",
    "message_is_binary",
    "http_headers",
    "http_request_data",
    "http_response_data",
)
AUTOBAHN_SERVER_NAMES = ("maskServerFrames",)
AUTOBAHN_CLIENT_NAMES = ("maskClientFrames",)

# What L{write_now} and the write-buffer watch (L{buffer_size}) read or set on Twisted's
# TCP connections (tcp.Server and tcp.Client are tcp.Connection; the buffer is
# abstract.FileDescriptor's).
TWISTED_NAMES = ("TLS", "disconnecting", "socket", "dataBuffer", "offset", "_tempDataBuffer", "bufferSize")

# What Twisted's epoll reactor's C{doPoll} uses, as read from its code: L{lean_do_poll}
# replaces it, and a C{doPoll} that uses anything else (or less) is no longer the one it
# was written against.
EPOLL_DO_POLL_NAMES = frozenset(
    ("_poller", "poll", "len", "_selectables", "OSError", "errno", "EINTR", "_doReadOrWrite", "log")
    + ("callWithLogger", "KeyError")
)

# What L{read_directly} takes the place of: the endpoint wrapper's C{dataReceived}, which
# only passes the data on (the names its code uses).
WRAPPER_DATA_RECEIVED_NAMES = ("_wrappedProtocol", "dataReceived")

# Autobahn's text when a server refuses the upgrade, from which the HTTP status is read.
REFUSAL_TEXT = "upgrade failed ["
_REFUSED = re.compile(r"upgrade failed \[(\d{3})\]")
# Without that text: the status a station is refused with when its primary's handshake failed.
GENERIC_REFUSAL = 502


def missing_internals(
    server: type = WebSocketServerProtocol,
    client: type = WebSocketClientProtocol,
    connection: type = tcp.Connection,
    reactor_class: type | None = EPollReactor,
) -> list[str]:
    """
    The names listed above (Autobahn's, Twisted's, the refusal text, the epoll reactor's
    C{doPoll}) that the given classes lack (by default the installed Autobahn's and
    Twisted's), each as C{Class.name}; empty when the fast path may be used.
    """
    missing = []
    for protocol, factory, own in (
        (server, WebSocketServerFactory, AUTOBAHN_SERVER_NAMES),
        (client, WebSocketClientFactory, AUTOBAHN_CLIENT_NAMES),
    ):
        instance = _connected(protocol, factory)
        used = _names_used_by(protocol)
        missing += [f"{protocol.__name__}.{name}" for name in AUTOBAHN_NAMES + own if not hasattr(instance, name)]
        missing += [f"{protocol.__name__}.{name}" for name in AUTOBAHN_NAMES_SET_LATER if name not in used]
    if not any(REFUSAL_TEXT in text for text in _texts_of(client.processHandshake)):
        missing.append(f"{client.__name__}.processHandshake: {REFUSAL_TEXT}<status>]")
    ends = socket.socketpair()
    try:
        transport = connection(ends[0], None, Clock())
        missing += [f"{connection.__name__}.{name}" for name in TWISTED_NAMES if not hasattr(transport, name)]
    finally:
        for end in ends:
            end.close()
    if _WrappingProtocol is None:
        missing.append("twisted.internet.endpoints._WrappingProtocol")
    elif _WrappingProtocol.dataReceived.__code__.co_names != WRAPPER_DATA_RECEIVED_NAMES:
        missing.append("_WrappingProtocol.dataReceived (changed)")
    if reactor_class is not None and not _is_stock_do_poll(reactor_class):
        missing.append(f"{reactor_class.__name__}.doPoll (changed)")
    return missing


def _is_stock_do_poll(reactor_class: type) -> bool:
    do_poll = getattr(reactor_class, "doPoll", None)
    return (
        getattr(do_poll, "__code__", None) is not None
        and frozenset(do_poll.__code__.co_names) == EPOLL_DO_POLL_NAMES
        and getattr(reactor_class, "doIteration", None) is do_poll
    )


def _connected(protocol: type, factory_class: type):
    """A C{protocol} whose connection is made, on a memory transport (nothing sent anywhere)."""
    factory = factory_class("ws://127.0.0.1:9/", reactor=Clock())
    # Autobahn's timers run on the global reactor whatever the factory's: start none.
    factory.setProtocolOptions(openHandshakeTimeout=0)
    factory.protocol = protocol
    instance = factory.buildProtocol(None)
    instance.transport = StringTransport()
    instance.connectionMade()
    return instance


def _names_used_by(cls: type) -> set[str]:
    """Every attribute name the Autobahn code of C{cls} and its bases reads or sets."""
    names: set[str] = set()
    for base in cls.__mro__:
        if base.__module__.startswith("autobahn."):
            for member in vars(base).values():
                code = getattr(member, "__code__", None)
                if code is not None:
                    names |= _code_names(code)
    return names


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _texts_of(function) -> list[str]:
    return [const for const in function.__code__.co_consts if isinstance(const, str)]


# Payloads this long and longer are masked in C: below, the C call's set-up costs more
# than L{xor_mask}'s Python integers (0.43 against 0.62 µs at 30 bytes, equal at 128).
NVX_FROM = 128


def nvx_xor_mask() -> Callable[[bytes, bytes], bytes] | None:
    """
    L{xor_mask} done by Autobahn's NVX C masker (in its wheels since 25.9.1) from
    L{NVX_FROM} bytes, or None where this Autobahn has none. As quick as L{xor_mask}'s
    Python integers at 128 bytes, twice as quick at 500, five times at 2 KB (see
    README.rst, "Performance").
    """
    try:
        from _nvx_xormasker import ffi, lib
    except ImportError:
        return None
    new, process, free, null, from_buffer = (
        lib.nvx_xormask_new,
        lib.nvx_xormask_process,
        lib.nvx_xormask_free,
        ffi.NULL,
        ffi.from_buffer,
    )

    def nvx_mask(payload: bytes, key: bytes) -> bytes:
        """C{payload} XOR the 4-byte C{key} repeated, in C (below L{NVX_FROM} bytes, L{xor_mask} is quicker)."""
        if len(payload) < NVX_FROM:
            return xor_mask(payload, key)
        masker = new(key)
        if masker == null:  # out of memory: the slow way still works
            return xor_mask(payload, key)
        data = bytearray(payload)
        process(masker, from_buffer(data), len(data))
        free(masker)
        return bytes(data)

    return nvx_mask


@dataclass(frozen=True)
class FastPath:
    """
    The decision taken at start-up: C{missing} names (none when the fast path is on) and
    the C{xor_mask} function the fast path masks and unmasks frames with.
    """

    missing: tuple[str, ...] = ()
    xor_mask: Callable[[bytes, bytes], bytes] = xor_mask

    @property
    def enabled(self) -> bool:
        """Whether the fast path is in effect."""
        return not self.missing

    def refused_status(self, reason: str) -> int | None:
        """
        The HTTP status with which a central system refused the upgrade, read from
        Autobahn's C{reason} for the failed handshake: None if the handshake failed
        otherwise. Where the fast path is off, every failed handshake is a refusal with
        L{GENERIC_REFUSAL}.
        """
        if not self.enabled:
            return GENERIC_REFUSAL
        found = _REFUSED.search(reason)
        return int(found.group(1)) if found else None


_log = proxy_logger(__name__)
_decided: FastPath | None = None


def fast_path() -> FastPath:
    """
    The fast-path decision, checked (L{missing_internals}) on the first call only; when
    something is missing, that call logs one warning naming it.
    """
    global _decided
    if _decided is None:
        _decided = decide(missing_internals(), nvx_xor_mask() or xor_mask)
    return _decided


def decide(missing: list[str], masker: Callable[[bytes, bytes], bytes] = xor_mask) -> FastPath:
    """
    Put the fast path on (masking with C{masker}), or off with one warning naming
    C{missing}; for L{fast_path}, and for tests that need one or the other.
    """
    global _decided
    if missing:
        _log.warn(
            "fast path off: the installed Autobahn/Twisted lack {missing}; relaying through their stock paths "
            "(more CPU per frame; a station whose primary refuses it is refused with HTTP 502,"
            " not the primary's status)",
            missing=", ".join(missing),
        )
    _decided = FastPath(tuple(missing), masker)
    return _decided


class LeanFrames:
    """Mix in before Autobahn's server or client protocol class."""

    # Per-class settings (see L{share_protocol_options}); None: worked out per call.
    _fast = None

    def _fast_settings(self) -> tuple[int, bool, bool, Callable[[bytes, bytes], bytes]]:
        """
        (largest payload read or written here, whether sending may bypass Autobahn,
        whether to mask, the function that masks and unmasks).
        """
        fast = self._fast
        if fast is None:
            fast = fast_settings(self)
        return fast

    def dataReceived(self, data: bytes) -> None:
        if self.state == self.STATE_OPEN and not self.data and self.current_frame is None and self._plain_frames():
            # Whole single-frame text messages first; the rest (if any) is Autobahn's.
            masked = self.factory.isServer
            limit, _, _, unmask = self._fast_settings()
            position, end = 0, len(data)
            while position < end and self.state == self.STATE_OPEN:
                frame = read_text_frame(data, position, masked, limit, unmask)
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
        limit, may_bypass, masked, apply_mask = self._fast_settings()
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
        write_now(self.transport, text_frame(payload, mask, apply_mask))

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self._onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def onOpen(self) -> None:
        # Once open, forget the opening handshake's text and headers (a few KiB per connection).
        self.http_headers = {}
        self.http_request_data = self.http_response_data = None
        read_directly(self)
        super().onOpen()

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.logOctets or self.state != self.STATE_OPEN:
            super().sendData(data, sync, chopsize)
            return
        self.transport.write(data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)


_PLAIN_TCP = (tcp.Server, tcp.Client)


def read_directly(protocol) -> bool:
    """
    Have the TCP connection under C{protocol} (an upstream link's, connected through a
    client endpoint and C{ClientService}; or the TLS layer under it, L{ocppproxy.wire.tls})
    call C{protocol.dataReceived} itself; True if it now does.

    Twisted's client endpoints put a wrapper protocol between the connection and the
    protocol, and C{ClientService} a proxy inside that, both only passing the data on
    (the proxy through C{__getattr__}): two calls and an attribute search per read, for
    each of a station's central systems. Their other methods (connection lost, the
    service's reconnection) stay as they are. Any other arrangement (a station's
    connection, Twisted's TLS in between) is left alone.
    """
    wrapper = getattr(protocol.transport, "protocol", None)
    if _WrappingProtocol is None or type(wrapper) is not _WrappingProtocol:
        return False
    inner = wrapper._wrappedProtocol
    if getattr(inner, "_protocol", None) is protocol and "dataReceived" not in vars(type(inner)):
        inner = protocol  # ClientService's proxy: passes dataReceived on through __getattr__
    if inner is not protocol:
        return False
    wrapper.dataReceived = protocol.dataReceived
    return True


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


def fast_settings(options) -> tuple[int, bool, bool, Callable[[bytes, bytes], bytes]]:
    """What L{LeanFrames} needs of a protocol's (or factory's) options, worked out once."""
    limits = [limit for limit in (options.maxFramePayloadSize, options.maxMessagePayloadSize) if limit > 0]
    server = getattr(options, "factory", options).isServer
    masked = bool(options.maskServerFrames if server else options.maskClientFrames)
    may_bypass = not (
        options.autoFragmentSize or options.logFrames or options.logOctets or (masked and not options.applyMask)
    )
    return min([FAST_LIMIT, *limits]), may_bypass, masked, fast_path().xor_mask


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
    settings = fast_settings(factory)
    key = (base, settings, repr(sorted(options.items())))
    shared = _OPTION_CLASSES.get(key)
    if shared is None:
        attributes = {
            "__module__": base.__module__,
            **options,
            "_fast": settings,
            # Autobahn's connectionMade walks CONFIG_ATTRS to copy what the instance lacks
            # and pformats the whole list for a debug line it then drops: a third of the
            # proxy's CPU when a site reconnects at once. The shared options need neither.
            "CONFIG_ATTRS": [name for name in base.CONFIG_ATTRS if name not in options],
        }
        shared = _OPTION_CLASSES[key] = type(base.__name__, (base,), attributes)
    factory.protocol = shared


def use_fast_path(factory, lean_protocol: type) -> None:
    """
    Where the fast path is on, let C{factory} build C{lean_protocol} (its protocol class
    with L{LeanFrames} mixed in first) with the options shared by class; otherwise it
    keeps its stock protocol. Call after C{setProtocolOptions}.
    """
    if fast_path().enabled:
        factory.protocol = lean_protocol
        share_protocol_options(factory)


def lean_do_poll(reactor, timeout: float | None) -> None:
    """
    Twisted's C{EPollReactor.doPoll} without C{callWithLogger} around each I/O event.

    That wrapper gives every event a legacy log context (a dict built and pushed on a
    stack, the connection's C{logPrefix} asked), used only by C{twisted.python.log}
    lines written while the event is handled: about a sixth of the proxy's Python time
    per relayed CALL. ocppproxy logs through C{twisted.logger}, which does not read it.
    An exception escaping the event handler is still logged (C{log.err}), as the
    wrapper did; Twisted's own C{_doReadOrWrite} already logs what the protocol raises
    and drops the connection. The only difference: such legacy lines carry no
    C{system} (the connection's log prefix).
    """
    if timeout is None:
        timeout = -1  # wait indefinitely
    try:
        events = reactor._poller.poll(timeout, len(reactor._selectables))
    except OSError as error:
        if error.errno == errno.EINTR:
            return
        raise
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is not None:
            try:
                handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                legacy_log.err()


def use_lean_poll(reactor) -> bool:
    """
    Where the fast path is on and C{reactor} is Twisted's epoll reactor (as C{twistd}
    installs on Linux), have it poll with L{lean_do_poll}; True if it now does. Other
    reactors (asyncio's in the tests, select, kqueue) are left as they are.
    """
    if EPollReactor is None or type(reactor) is not EPollReactor or not fast_path().enabled:
        return False
    if "doIteration" not in vars(reactor):
        reactor.doIteration = types.MethodType(lean_do_poll, reactor)
    return True


def request_bytes(protocol) -> bytes:
    """
    What Autobahn has received of C{protocol}'s opening handshake so far; empty if this
    Autobahn keeps it elsewhere (the start-up warning then names C{data}).
    """
    return getattr(protocol, "data", b"")


def buffer_size(transport) -> int | None:
    """
    How many bytes C{transport} (a plain TCP one) reads at a time and buffers before it
    pauses its producer (Twisted's C{bufferSize}), or None where the fast path is off.
    """
    return transport.bufferSize if fast_path().enabled else None


def set_buffer_size(transport, size: int) -> None:
    """Set what L{buffer_size} reads (only where it was not None)."""
    transport.bufferSize = size
