"""
The instance attributes of Autobahn's protocols that the proxy's protocol classes keep in
slots (L{AUTOBAHN_SLOTS}) rather than in an instance dictionary; and the attribute names
of Twisted's TCP connections made known to their classes at start-up
(L{share_tcp_attribute_keys}).

Autobahn sets some sixty attributes on every connection (its C{__init__},
C{_connectionMade} and opening handshake). CPython 3.11 keeps an object's attributes in
a compact array shared by class only while there are at most 30 names: past that, each
instance gets a dictionary of its own, about 1.6 KiB for a protocol, and the proxy holds
three protocols per station. In slots they take 8 bytes each. Names Autobahn or Twisted
also define on the class (C{transport}, C{factory}, C{connected}, C{peer}, txaio's
observer lists) stay in the dictionary: a slot would hide the class's default until
set. A name missing here still works, in the dictionary; the unit tests check that an
open connection keeps none there but those.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet import tcp

AUTOBAHN_SLOTS = (
    # _connectionMade and __init__
    "_perMessageCompress",
    "_transport_details",
    "is_open",
    "is_closed",
    "state",
    "send_state",
    "data",
    "triggered",
    "trafficStats",
    "trackedTimings",
    "wasClean",
    "wasNotCleanReason",
    "wasServerConnectionDropTimeout",
    "wasOpenHandshakeTimeout",
    "wasCloseHandshakeTimeout",
    "wasServingFlashSocketPolicyFile",
    "wasMaxFramePayloadSizeExceeded",
    "wasMaxMessagePayloadSizeExceeded",
    "closedByMe",
    "failedByMe",
    "droppedByMe",
    "localCloseCode",
    "localCloseReason",
    "remoteCloseCode",
    "remoteCloseReason",
    "serverConnectionDropTimeoutCall",
    "openHandshakeTimeoutCall",
    "closeHandshakeTimeoutCall",
    "autoPingTimeoutCall",
    "autoPingPending",
    "autoPingPendingCall",
    "autoPingPendingSent",
    "autoPingPendingSeq",
    "current_frame",
    "inside_message",
    "websocket_version",
    "websocket_protocol_in_use",
    "websocket_extensions_in_use",
    # the opening handshake
    "http_status_line",
    "http_headers",
    "http_request_data",
    "http_response_data",
    "http_request_uri",
    "http_request_path",
    "http_request_params",
    "http_request_host",
    "websocket_key",
    "websocket_origin",
    "websocket_protocols",
    "websocket_extensions",
    "_wskey",
    # options Autobahn copies per connection even when shared by class (not plain values)
    "perMessageCompressionAccept",
    "allowedOrigins",
    "allowedOriginsPatterns",
    "versions",
    # messages on Autobahn's own frame path
    "message_data",
    "message_is_binary",
    "utf8validateIncomingCurrentMessage",
    "utf8validateLast",
    # made when first needed on the fast path (ocppproxy.fastpath.frames.LeanFrames)
    "_send_queue",
    "_utf8validator",
    "_is_closed",
)


# What Twisted's TCP connections hold once open, written to and given a producer (the
# write-buffer watch): tcp.Server a station's, tcp.Client an upstream link's.
TCP_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    tcp.Server: (
        *("_tempDataBuffer", "_tempDataLen", "client", "connected", "dataBuffer", "fileno", "hostname"),
        *("logstr", "offset", "producer", "protocol", "reactor", "repstr", "server", "sessionno", "socket"),
        "streamingProducer",
    ),
    tcp.Client: (
        *("_requiresResolution", "_tempDataBuffer", "_tempDataLen", "addr", "connected", "connector"),
        *("dataBuffer", "fileno", "logstr", "offset", "producer", "protocol", "reactor", "realAddress"),
        *("socket", "streamingProducer"),
        *("doRead", "doWrite"),  # while connecting (BaseClient), deleted once connected
    ),
}


def share_attribute_keys(cls: type, names: Iterable[str]) -> None:
    """
    Make C{names} part of the attribute keys C{cls}'s instances share, before any is made.

    CPython 3.11 keeps an instance's attributes in a compact array whose keys its class
    shares, and the room it leaves for keys not seen yet shrinks with each instance made
    (C{init_inline_values}): once a few dozen instances exist, a name set later in an
    instance's life (Twisted's connections set C{dataBuffer}, C{offset}, C{producer} at
    their first write and producer, thousands of connections after the first were made
    in a connect storm) gives that instance a dictionary of its own instead: 832 bytes
    for a station's connection, 464 for an upstream link's, against about 150. One
    instance made here with every name, before the others, avoids it; without effect
    (and harmless) on another interpreter, or once the class's keys are full.
    """
    instance = cls.__new__(cls)
    for name in names:
        object.__setattr__(instance, name, None)


def share_tcp_attribute_keys() -> None:
    """L{share_attribute_keys} for Twisted's TCP connections (L{TCP_ATTRIBUTES}); at start-up, before any connection."""
    for cls, names in TCP_ATTRIBUTES.items():
        share_attribute_keys(cls, names)
