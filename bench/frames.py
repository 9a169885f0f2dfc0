"""
CPU per relayed CALL inside one process, without sockets: a station's masked text frame
read by the proxy's server protocol and sent, masked, to two upstream client protocols,
as the proxy relays it. Compares the fast path (L{ocppproxy.fastpath.frames.LeanFrames},
masking with Autobahn's NVX C masker or Python integers) with stock Autobahn (the
fallback when an internal is missing). Quick and repeatable; C{make bench} measures the
whole proxy on sockets.

    python bench/frames.py [frames per size]
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import time

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ocppproxy.fastpath.frames import LeanFrames, share_protocol_options
from ocppproxy.fastpath.nvx import nvx_xor_mask
from ocppproxy.fastpath.wsframes import xor_mask

SIZES = (200, 800, 2000)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _classes(lean: bool):
    mixins = (LeanFrames,) if lean else ()

    class Upstream(*mixins, WebSocketClientProtocol):
        def onMessage(self, payload, isBinary):
            pass

    class Station(*mixins, WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            for upstream in self.factory.upstreams:
                upstream.sendMessage(payload)

    return Station, Upstream


def _open_upstream(protocol_class, lean: bool, masker):
    factory = WebSocketClientFactory("ws://127.0.0.1:9/CP_1", reactor=Clock())
    factory.setProtocolOptions(openHandshakeTimeout=0, autoPingInterval=0)
    factory.protocol = protocol_class
    if lean:
        share_protocol_options(factory, masker)
    protocol = factory.buildProtocol(None)
    protocol.transport = StringTransport()
    protocol.connectionMade()
    request = protocol.transport.value()
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    protocol.transport.clear()
    protocol.dataReceived(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    assert protocol.state == protocol.STATE_OPEN
    return protocol


def _open_station(protocol_class, upstreams, lean: bool, masker):
    factory = WebSocketServerFactory(reactor=Clock())
    factory.setProtocolOptions(openHandshakeTimeout=0, failByDrop=False)
    factory.protocol = protocol_class
    if lean:
        share_protocol_options(factory, masker)
    factory.upstreams = upstreams
    protocol = factory.buildProtocol(None)
    protocol.transport = StringTransport()
    protocol.connectionMade()
    protocol.dataReceived(
        b"GET /CP_1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert protocol.state == protocol.STATE_OPEN
    return protocol


def _station_frame(size: int) -> bytes:
    payload = b'[2,"1","DataTransfer",{"vendorId":"v","data":"' + b"x" * (size - 47) + b'"}]'
    mask = os.urandom(4)
    header = (
        bytes((0x81, 0x80 | len(payload))) if len(payload) <= 125 else b"\x81\xfe" + len(payload).to_bytes(2, "big")
    )
    return header + mask + xor_mask(payload, mask)


def cpu_per_call(lean: bool, size: int, frames: int, masker=xor_mask) -> float:
    """Microseconds of CPU per CALL relayed (one frame read, two written)."""
    station_class, upstream_class = _classes(lean)
    upstreams = [_open_upstream(upstream_class, lean, masker) for _ in range(2)]
    station = _open_station(station_class, upstreams, lean, masker)
    frame = _station_frame(size)
    transports = [station.transport] + [upstream.transport for upstream in upstreams]
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for number in range(frames):
            station.dataReceived(frame)
            if number % 256 == 0:
                for transport in transports:
                    transport.clear()
        best = min(best, (time.process_time() - start) / frames * 1e6)
    sent = upstreams[0].transport.value()
    assert sent[:1] == b"\x81", sent[:20]  # frames reached the upstreams
    return best


def main(frames: int) -> None:
    nvx = nvx_xor_mask()
    paths = [("stock Autobahn (fallback)", False, xor_mask), ("fast path, Python XOR", True, xor_mask)]
    if nvx is not None:
        paths.append(("fast path, NVX masker", True, nvx))
    print(f"CPU per relayed CALL (µs, best of 5 x {frames}); frame sizes {', '.join(map(str, SIZES))} B")
    for name, lean, masker in paths:
        row = [f"{cpu_per_call(lean, size, frames, masker):7.2f}" for size in SIZES]
        print(f"  {name:28}", *row)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
