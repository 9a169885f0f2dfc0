"""
Autobahn protocol hooks without the per-frame work ocppproxy does not use.

Profiling the proxy under load (see README.rst, "Performance") showed Autobahn spending
a fair share of each relayed frame on things ocppproxy never asks for: a debug log event
per read and per write whose arguments (qualified names, highlighted values) are
formatted eagerly even when debug logging is off, and a "message" event fired through
txaio (a Deferred per message) for listeners nobody registers. L{LeanFrames} skips them
and leaves everything else (framing, masking, UTF-8 validation, closing) to Autobahn.

L{share_protocol_options} saves memory instead: Autobahn copies some thirty options from
the factory into every protocol instance, and a proxy holds three protocols per station.
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
        shared = _OPTION_CLASSES[key] = type(base.__name__, (base,), {"__module__": base.__module__, **options})
    factory.protocol = shared
