"""
Every private name of Autobahn and Twisted that the fast path relies on, listed, and the
check, run once at start-up by the daemon, that the installed releases still have them all.

Autobahn and Twisted internals are not an API, and any release may rename them. If one is
missing, L{check_at_start_up} says so once (a warning naming each as C{Class.name}) and
gives None: the daemon then builds everything on the stock Autobahn and Twisted paths
(its factories build the stock protocol classes, frames go out through
C{transport.write}, the write-buffer watch keeps Twisted's C{bufferSize}, a refused
upstream handshake is reported without its HTTP status). Nothing on the path of a frame
asks again.
"""

from __future__ import annotations

import socket
import types
from collections.abc import Callable

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import tcp
from twisted.internet.address import IPv4Address

from ..logs import proxy_logger
from . import poll, transport
from .frames import REFUSAL_TEXT
from .nvx import nvx_xor_mask
from .poll import EPollReactor
from .seam import FastPath
from .wsframes import xor_mask

# What LeanFrames and share_protocol_options read or write on Autobahn's protocols
# (autobahn/websocket/protocol.py, WebSocketProtocol): a fresh protocol has these once
# its connection is made.
AUTOBAHN_NAMES = (
    "data",  # the bytes received and not yet consumed (_dataReceived appends, consumeData eats)
    "state",
    "STATE_OPEN",
    "_onMessage",  # the adapter's hook calling onMessage (autobahn/twisted/websocket.py)
    "_dataReceived",  # what the adapter's dataReceived calls after its debug line
    "send_queue",  # sendData's queue for sync and chopped writes
    "_perMessageCompress",  # the negotiated permessage-deflate, None without
    "logFrames",
    "logOctets",
    "trafficStats",
    "autoPingTimeoutCall",  # the keepalive timeout, put off by any traffic (processData)
    "autoPingRestartOnAnyTraffic",
    "_cancelAutoPingTimeoutCall",
    "failedByMe",  # set once the protocol has failed the connection: no more messages
    "CONFIG_ATTRS",  # the options _connectionMade copies from the factory
    "maxFramePayloadSize",
    "maxMessagePayloadSize",
    "autoFragmentSize",
    "applyMask",
)
# Set only by the opening handshake or a message (processHandshake, processData,
# onMessageBegin): present when Autobahn's code uses them.
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

# What write_now and the write-buffer watch (buffer_size) read or set on Twisted's TCP
# connections (tcp.Server and tcp.Client are tcp.Connection; the buffer is
# abstract.FileDescriptor's).
TWISTED_NAMES = ("TLS", "disconnecting", "socket", "dataBuffer", "offset", "_tempDataBuffer", "bufferSize")

# What Twisted's epoll reactor's doPoll uses, as read from its code: lean_do_poll
# replaces it, and a doPoll that uses anything else (or less) is no longer the one it
# was written against.
EPOLL_DO_POLL_NAMES = frozenset(
    ("_poller", "poll", "len", "_selectables", "OSError", "errno", "EINTR", "_doReadOrWrite", "log")
    + ("callWithLogger", "KeyError")
)

# What read_connection (ocppproxy/fastpath/poll.py) does in place of the epoll reactor's
# _doReadOrWrite (when a TCP connection is readable) and of that connection's doRead and
# _dataReceived, each class's: the names their code uses, as read from it (each name set
# one release's code). Twisted before 25 also warned about a value returned by a
# protocol's dataReceived and disconnected with it; the proxy's protocols return None.
READ_PATH_NAMES = {
    "_doReadOrWrite": (
        frozenset(
            ("BaseException", "CONNECTION_DONE", "CONNECTION_LOST", "_NO_FILEDESC", "_POLL_DISCONNECTED", "_POLL_IN")
            + ("_POLL_OUT", "_disconnectSelectable", "_reads", "doRead", "doWrite", "err", "exc_info", "fileno", "log")
            + ("sys",)
        ),
    ),
    "doRead": (
        frozenset(
            ("CONNECTION_LOST", "EWOULDBLOCK", "OSError", "_dataReceived", "args", "bufferSize", "main", "recv")
            + ("socket",)
        ),
    ),
    "_dataReceived": (
        frozenset(("CONNECTION_DONE", "dataReceived", "main", "protocol")),
        frozenset(
            ("CONNECTION_DONE", "Version", "dataReceived", "deprecate", "getDeprecationWarningString", "main")
            + ("protocol", "versions", "warnAboutFunction")
        ),
    ),
}

# What read_directly takes the place of: the endpoint wrapper's dataReceived, which only
# passes the data on (the names its code uses).
WRAPPER_DATA_RECEIVED_NAMES = ("_wrappedProtocol", "dataReceived")

_log = proxy_logger(__name__)


def check_at_start_up() -> FastPath | None:
    """
    The fast path, if the installed Autobahn and Twisted have every name it uses (masking
    with Autobahn's C masker where there is one); otherwise None, with one warning naming
    what is missing. For the daemon, once, at start-up.
    """
    return decide(missing_internals(), nvx_xor_mask() or xor_mask)


def decide(missing: list[str], masker: Callable[[bytes, bytes], bytes] = xor_mask) -> FastPath | None:
    """The fast path masking with C{masker}; or, C{missing} something, None and one warning naming it."""
    if missing:
        _log.warn(
            "fast path off: the installed Autobahn/Twisted lack {missing}; relaying through their stock paths "
            "(more CPU per frame; a station whose primary refuses it is refused with HTTP 502,"
            " not the primary's status)",
            missing=", ".join(missing),
        )
        return None
    return FastPath(masker)


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
    missing += _missing_on_connection(connection)
    wrapping = transport._WrappingProtocol
    if wrapping is None:
        missing.append("twisted.internet.endpoints._WrappingProtocol")
    elif wrapping.dataReceived.__code__.co_names != WRAPPER_DATA_RECEIVED_NAMES:
        missing.append("_WrappingProtocol.dataReceived (changed)")
    if reactor_class is not None and not _is_stock_do_poll(reactor_class):
        missing.append(f"{reactor_class.__name__}.doPoll (changed)")
    missing += _changed_read_path(reactor_class, connection)
    return missing


def _changed_read_path(reactor_class: type | None, connection: type) -> list[str]:
    """The methods L{ocppproxy.fastpath.poll.read_connection} stands in for that no longer use L{READ_PATH_NAMES}."""
    owners = [(connection, "doRead"), (connection, "_dataReceived")]
    if reactor_class is not None:
        owners.append((reactor_class, "_doReadOrWrite"))
    changed = []
    for owner, name in owners:
        code = getattr(getattr(owner, name, None), "__code__", None)
        if code is None or frozenset(code.co_names) not in READ_PATH_NAMES[name]:
            changed.append(f"{owner.__name__}.{name} (changed)")
    # The TCP connections the reactor reads that way must read as the class checked here.
    for subclass in poll.CONNECTIONS:
        for name in ("doRead", "_dataReceived"):
            if getattr(subclass, name, None) is not getattr(connection, name, None):
                changed.append(f"{subclass.__name__}.{name} (not {connection.__name__}'s)")
    return changed


def _missing_on_connection(connection: type) -> list[str]:
    """The L{TWISTED_NAMES} a C{connection} over a real socket pair lacks."""
    ends = socket.socketpair()
    try:
        made = connection(ends[0], None, _NoReactor())
        return [f"{connection.__name__}.{name}" for name in TWISTED_NAMES if not hasattr(made, name)]
    finally:
        for end in ends:
            end.close()


class _NoReactor:
    """A reactor for a connection that is only looked at: never asked anything."""


def _is_stock_do_poll(reactor_class: type) -> bool:
    do_poll = getattr(reactor_class, "doPoll", None)
    return (
        getattr(do_poll, "__code__", None) is not None
        and frozenset(do_poll.__code__.co_names) == EPOLL_DO_POLL_NAMES
        and getattr(reactor_class, "doIteration", None) is do_poll
    )


class _MemoryTransport:
    """
    Takes what a protocol writes and drops it: enough for Autobahn's connectionMade
    (which writes nothing for a server and its opening handshake for a client).
    """

    def write(self, data: bytes) -> None:
        pass

    def writeSequence(self, data) -> None:
        pass

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def getPeer(self) -> IPv4Address:
        return _NOWHERE

    def getHost(self) -> IPv4Address:
        return _NOWHERE


_NOWHERE = IPv4Address("TCP", "127.0.0.1", 9)


def _connected(protocol: type, factory_class: type):
    """A C{protocol} whose connection is made, on a transport that sends nothing anywhere."""
    factory = factory_class("ws://127.0.0.1:9/", reactor=_NoReactor())
    # Autobahn's timers run on the global reactor whatever the factory's: start none.
    factory.setProtocolOptions(openHandshakeTimeout=0)
    factory.protocol = protocol
    instance = factory.buildProtocol(None)
    instance.transport = _MemoryTransport()
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
