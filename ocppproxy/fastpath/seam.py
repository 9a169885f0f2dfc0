"""
L{FastPath}: the one value through which the fast path plugs into the proxy. The daemon
decides at start-up (L{ocppproxy.fastpath.check.check_at_start_up}) whether there is one,
and hands it to what it builds; everything that takes one runs on the stock Autobahn and
Twisted paths without it (None).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from .frames import lean_protocol, share_protocol_options
from .nvx import nvx_xor_mask
from .poll import use_lean_poll
from .transport import buffer_size, read_directly, set_buffer_size, write_now
from .wsframes import xor_mask


def best_xor_mask() -> Callable[[bytes, bytes], bytes]:
    """Autobahn's NVX C masker where this Autobahn has one (see L{nvx_xor_mask}), else L{xor_mask}."""
    return nvx_xor_mask() or xor_mask


@dataclass(frozen=True)
class FastPath:
    """
    The fast path, on: each method is one place where it stands in for a stock path.
    C{xor_mask} masks and unmasks the frames it reads and writes itself (by default the
    quickest this Autobahn offers).
    """

    xor_mask: Callable[[bytes, bytes], bytes] = field(default_factory=best_xor_mask)

    def equip(self, factory) -> None:
        """
        Have C{factory} (an Autobahn server or client factory whose C{protocol} is the
        proxy's stock protocol class) build that class with L{LeanFrames} mixed in, with
        the options shared by class. Call after C{setProtocolOptions}.
        """
        factory.protocol = lean_protocol(factory.protocol)
        share_protocol_options(factory, self.xor_mask)

    def tls_sender(self, connection) -> Callable[[bytes], None]:
        """
        For the proxy's TLS layer (L{ocppproxy.wire.tls.TLSConnection}, whose C{transport}
        is the TCP connection): its TCP connection hands reads to it directly
        (L{read_directly}), and the function that sends what TLS produces at once (L{write_now}).
        """
        read_directly(connection)
        return partial(write_now, connection.transport)

    def buffer_size(self, transport) -> int:
        """A plain TCP C{transport}'s read and pause size (Twisted's C{bufferSize})."""
        return buffer_size(transport)

    def set_buffer_size(self, transport, size: int) -> None:
        """Set C{transport}'s read and pause size (see L{buffer_size})."""
        set_buffer_size(transport, size)

    def install_poll(self, reactor) -> bool:
        """Where C{reactor} is Twisted's epoll reactor, have it poll without a log context per event; True if it now does."""
        return use_lean_poll(reactor)
