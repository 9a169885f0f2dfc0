"""
The fast path's socket pieces: a frame sent with one C{send} when nothing waits before it
(L{write_now}), an upstream's reads handed to its protocol without the endpoint's two
wrappers (L{read_directly}), and a plain TCP connection's read and pause size
(L{buffer_size}), which the write-buffer watch raises while a buffer is full.

Each Twisted name read or set here is listed in L{ocppproxy.fastpath.check}
(C{TWISTED_NAMES}, C{WRAPPER_DATA_RECEIVED_NAMES}) and checked at start-up.
"""

from __future__ import annotations

from twisted.internet import tcp

try:
    # Twisted's client endpoints wrap the protocol they connect in this
    # (twisted/internet/endpoints.py, _WrappingFactory.buildProtocol), whose dataReceived
    # only passes the data on to _wrappedProtocol: L{read_directly} skips it.
    from twisted.internet.endpoints import _WrappingProtocol
except ImportError:  # a Twisted without it: named by the start-up check, the fast path off
    _WrappingProtocol = None

# tcp.Server and tcp.Client are tcp.Connection, whose write buffer is
# abstract.FileDescriptor's: dataBuffer, offset and _tempDataBuffer.
_PLAIN_TCP = (tcp.Server, tcp.Client)


def read_directly(protocol) -> bool:
    """
    Have the TCP connection under C{protocol} (an upstream link's, connected through a
    client endpoint and C{ClientService}; or the TLS layer under it, L{ocppproxy.wire.tls})
    call C{protocol.dataReceived} itself; True if it now does.

    Twisted's client endpoints put a wrapper protocol (C{_WrappingProtocol}) between the
    connection and the protocol, and C{ClientService} a proxy
    (C{_ReconnectingProtocolProxy}) inside that, both only passing the data on (the proxy
    through C{__getattr__}): two calls and an attribute search per read, for each of a
    station's central systems. Their other methods (connection lost, the service's
    reconnection) stay as they are. Any other arrangement (a station's connection,
    Twisted's TLS in between) is left alone.
    """
    wrapper = getattr(protocol.transport, "protocol", None)
    if _WrappingProtocol is None or type(wrapper) is not _WrappingProtocol:
        return False
    # _WrappingProtocol._wrappedProtocol: what it passes each read to.
    inner = wrapper._wrappedProtocol
    # ClientService's proxy keeps the protocol as _protocol and passes dataReceived on
    # through __getattr__ (twisted/application/internet.py, _ReconnectingProtocolProxy).
    if getattr(inner, "_protocol", None) is protocol and "dataReceived" not in vars(type(inner)):
        inner = protocol
    if inner is not protocol:
        return False
    wrapper.dataReceived = protocol.dataReceived
    return True


def write_now(transport, data: bytes) -> None:
    """
    Write C{data} to a plain TCP transport with one C{send} now, when nothing is waiting
    in its buffer; what the socket does not take (and anything on TLS or other
    transports) goes through C{transport.write}, after what is already buffered.

    Twisted's C{write} (abstract.FileDescriptor.write) always buffers and sends on the
    next reactor turn (C{startWriting}, then C{doWrite}), which costs two C{epoll_ctl}
    calls and one more event per frame: about a fifth of the proxy's CPU per relayed
    CALL in C{make bench}. The buffer attributes read here are FileDescriptor's own
    (C{dataBuffer} and C{offset}: what is written but not sent; C{_tempDataBuffer}: what
    C{write} has collected since).
    """
    # Plain TCP connections have every name read here (checked at start-up): read directly,
    # the cheapest test first (what is buffered, set on the instance once it has written).
    if (
        type(transport) in _PLAIN_TCP
        and not transport._tempDataBuffer
        and transport.offset == len(transport.dataBuffer)
        and not transport.disconnecting
        and not transport.TLS
    ):
        try:
            # tcp.Connection.socket: the connection's own socket object.
            sent = transport.socket.send(data)
        except OSError:
            sent = 0  # EAGAIN, or an error transport.write's next attempt reports as usual
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def buffer_size(transport) -> int:
    """
    How many bytes C{transport} (a plain TCP one) reads at a time and buffers before it
    pauses its producer: abstract.FileDescriptor's C{bufferSize} (64 KiB), a class
    attribute Twisted reads in C{doRead} and C{write}, not settable through any interface.
    """
    return transport.bufferSize


def set_buffer_size(transport, size: int) -> None:
    """Set what L{buffer_size} reads, for C{transport} alone."""
    transport.bufferSize = size
