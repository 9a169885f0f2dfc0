"""
Autobahn protocol hooks without the per-frame work ocppproxy does not use.

Profiling the proxy under load (see README.rst, "Performance") showed Autobahn spending
a fair share of each relayed frame on things ocppproxy never asks for: a debug log event
per read and per write whose arguments (qualified names, highlighted values) are
formatted eagerly even when debug logging is off, and a "message" event fired through
txaio (a Deferred per message) for listeners nobody registers. L{LeanFrames} skips them
and leaves everything else (framing, masking, UTF-8 validation, closing) to Autobahn.
"""

from __future__ import annotations


class LeanFrames:
    """Mix in before Autobahn's server or client protocol class."""

    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self._onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.logOctets or self.state != self.STATE_OPEN:
            super().sendData(data, sync, chopsize)
            return
        self.transport.write(data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)
