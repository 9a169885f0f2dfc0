"""
Bounded write buffers: what the proxy holds unsent for one connection stays under
C{limits.max_write_buffer}, with Twisted's producer/consumer machinery rather than polling.

One L{WriteBufferWatch} is the streaming producer registered on each open connection's
transport (a transport takes one producer). Twisted calls its C{pauseProducing} when the
transport's buffer passes the transport's C{bufferSize}, and C{resumeProducing} once the
buffer has drained; the watch turns that into "full" and "drained" for its owner, who
pauses or resumes whatever feeds the connection, and into "stalled" when the buffer has
not drained within C{limits.stall_timeout}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted.internet.interfaces import IPushProducer
from twisted.protocols.policies import ProtocolWrapper
from zope.interface import implementer

from ..config.model import Config
from .tls import TLSConnection

if TYPE_CHECKING:
    from ..fastpath import FastPath


class WriteLimits:
    """
    The write-buffer settings every connection shares (C{max_write_buffer} bytes,
    C{stall_timeout} seconds, time from C{clock}), and the stall episodes counted so far
    by connection (C{station}, C{primary}, C{secondary}) for the metrics. With
    C{fast_path}, a full buffer raises the read size (see L{WriteBufferWatch}).
    """

    def __init__(
        self,
        clock,
        max_write_buffer: int = Config.max_write_buffer,
        stall_timeout: float = Config.stall_timeout,
        fast_path: FastPath | None = None,
    ) -> None:
        self.clock = clock
        self.max_write_buffer = max_write_buffer
        self.stall_timeout = stall_timeout
        self.fast_path = fast_path
        self.stalls: dict[str, int] = {}

    def count_stall(self, connection: str) -> None:
        """One more stall episode on a C{connection} (station or upstream name)."""
        self.stalls[connection] = self.stalls.get(connection, 0) + 1


def socket_transport(transport):
    """The transport that holds the bytes for the socket: below a TLS wrapper, the TCP connection."""
    while isinstance(transport, ProtocolWrapper):
        transport = transport.transport
    return transport


class BufferOwner(Protocol):
    """What a L{WriteBufferWatch} reports to: the owner of the connection."""

    def write_buffer_full(self) -> None: ...

    def write_buffer_drained(self) -> None: ...

    def write_buffer_stalled(self) -> None: ...


@implementer(IPushProducer)
class WriteBufferWatch:
    """
    The producer registered on one connection's C{transport}: tells C{owner} when more
    than C{limits.max_write_buffer} bytes wait in the transport's buffer
    (C{write_buffer_full}), once the buffer is empty again (C{write_buffer_drained}), and
    when it has not drained within C{limits.stall_timeout} seconds of being full
    (C{write_buffer_stalled}). L{stopProducing} (the connection is gone) silences it.

    Where C{limits} has the fast path: Twisted also reads C{bufferSize} bytes at a time,
    and a read into a buffer of a MiB costs some ten times a 64 KiB one: so the
    transport keeps Twisted's C{bufferSize} until Twisted first pauses the watch, which
    then raises it to the limit until the buffer drains. (On the stock path the limit is
    Twisted's C{bufferSize}, 64 KiB.) The same on TLS towards stations and wss:// central systems (the
    proxy's own, L{ocppproxy.wire.tls}); on an C{ssl:} listen endpoint (Twisted's TLS,
    which passes on only the first pause) the limit is Twisted's C{bufferSize} (64 KiB).
    """

    # A proxy holds three per station.
    __slots__ = (
        "_fast_path",
        "_limits",
        "_normal_size",
        "_owner",
        "_raisable",
        "_socket",
        "_stall_timer",
        "_stopped",
        "full",
    )

    def __init__(self, transport, limits: WriteLimits, owner: BufferOwner) -> None:
        self._limits = limits
        self._owner = owner
        self._socket = socket_transport(transport)
        self._fast_path = fast_path = limits.fast_path
        # None on the stock path: Twisted's bufferSize is then left alone.
        self._normal_size = None if fast_path is None else fast_path.buffer_size(self._socket)
        # The proxy's own TLS (ocppproxy.wire.tls) sends through the socket's buffer at once
        # and passes every pause on: the same as a plain connection. Twisted's TLS does not.
        self._raisable = (
            self._normal_size is not None
            and (self._socket is transport or isinstance(transport, TLSConnection))
            and not getattr(self._socket, "TLS", False)
        )
        self._stall_timer = None
        self._stopped = False
        self.full = False
        transport.registerProducer(self, True)

    def pauseProducing(self) -> None:
        """Twisted: the buffer is over C{bufferSize}."""
        if self._stopped or self.full:
            return
        if self._raisable and self._fast_path.buffer_size(self._socket) < self._limits.max_write_buffer:
            # Over Twisted's own mark: from now on the next pause comes at ours.
            self._fast_path.set_buffer_size(self._socket, self._limits.max_write_buffer)
            return
        self.full = True
        self._stall_timer = self._limits.clock.callLater(self._limits.stall_timeout, self._stalled)
        self._owner.write_buffer_full()

    def resumeProducing(self) -> None:
        """Twisted: the buffer has drained."""
        if self._normal_size is not None:
            self._fast_path.set_buffer_size(self._socket, self._normal_size)
        if self._stopped or not self.full:
            return
        self.full = False
        self._cancel_timer()
        self._owner.write_buffer_drained()

    def stopProducing(self) -> None:
        """The connection is gone (or going): no more calls to the owner."""
        self._stopped = True
        self.full = False
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        timer, self._stall_timer = self._stall_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _stalled(self) -> None:
        self._stall_timer = None
        if not self._stopped:
            self._owner.write_buffer_stalled()
