"""
The instance attributes of Autobahn's protocols that the proxy's protocol classes keep in
slots (L{AUTOBAHN_SLOTS}) rather than in an instance dictionary.

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
)
