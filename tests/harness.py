"""
A synchronous harness for the relaying core: the real L{ProxyService} with its real station
and upstream protocols, between in-memory charging stations and central systems, with no
socket and no global reactor.

Everything runs on one L{MemoryReactorClock} (L{ResolvingMemoryReactor}): the proxy listens
on it and connects its upstream links through it (the production C{HostnameEndpoint} asks the
reactor's C{connectTCP}), and Autobahn's timers, which are txaio's, run on it too. Each
connection is a pair of L{iosim.FakeTransport}s joined by an L{iosim.IOPump}:

    harness = RelayHarness(self, secondary=True)
    station = harness.connect_station("CP_1")
    station.send('[2,"b-1","BootNotification",{}]')
    harness.flush()
    harness.primary.connections[0].received   # ['[2,"b-1","BootNotification",{}]']
    station.received                           # ['[3,"b-1",{"answeredBy":"primary"}]']

L{RelayHarness.flush} moves bytes until nothing moves; upstream connection attempts are
completed or refused then, as each central system's C{state} says. Time moves only with
L{RelayHarness.advance}. The harness stops the proxy when the test ends and checks that
it stopped and that nothing was left on the global reactor.
"""

from __future__ import annotations

import json
import re

import txaio
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import reactor as global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect
from txaio.tx import Logger as TxaioLogger

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.fastpath import FastPath
from ocppproxy.relay.observers import Observers
from ocppproxy.relay.proxy import ProxyService
from ocppproxy.relay.routing_state import routing_for

from .memory import ResolvingMemoryReactor

PROXY_PORT = 9000
PRIMARY_PORT = 9001
SECONDARY_PORT = 9002
THIRD_PORT = 9003
UP, DOWN, SILENT = "up", "down", "silent"


class MemoryTransport(FakeTransport):
    """
    An iosim transport with the write buffer size a TCP transport has (the proxy's
    backpressure reads it). Once C{unplugged}, what is written is lost, as on a dead
    network path; closing the connection still reaches both ends.
    """

    bufferSize = 64 * 1024
    unplugged = False

    def write(self, data: bytes) -> None:
        if not self.unplugged:
            super().write(data)


class CentralConnection(WebSocketServerProtocol):
    """
    One station connection as a central system sees it: the request, the subprotocol
    chosen, every text frame received (C{received}) and sent (C{sent}), and the close code.
    """

    # At txaio's debug level Autobahn logs whole handshakes: the harness's log is the proxy's.
    log = TxaioLogger(level="info", logger=Logger, namespace="tests.harness.CentralConnection")

    def __init__(self) -> None:
        super().__init__()
        self.request = None
        self.subprotocol: str | None = None
        self.received: list[str] = []
        self.sent: list[str] = []
        self.close_code: int | None = None
        self.closed = False

    def onConnect(self, request):
        central = self.factory.central
        self.request = request
        if central.state == SILENT:
            return Deferred()  # never answers the handshake
        if central.refuse_status is not None:
            central.refused.append(request.path)
            raise ConnectionDeny(central.refuse_status, "refused by the test central system")
        central.connections.append(self)
        self.subprotocol = next((p for p in central.subprotocols if p in request.protocols), None)
        return self.subprotocol

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        text = payload.decode("utf-8")
        self.received.append(text)
        central = self.factory.central
        if central.answer_calls:
            try:
                frame = json.loads(text)
            except ValueError:
                return
            if isinstance(frame, list) and frame[:1] == [2] and len(frame) > 1:
                self.send(json.dumps([3, frame[1], {"answeredBy": central.name}], separators=central.separators))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = True
        self.close_code = code

    def send(self, text: str) -> None:
        """Send a text frame towards the station."""
        self.sent.append(text)
        self.sendMessage(text.encode("utf-8"), False)

    def headers(self) -> dict[str, str]:
        """The handshake's request headers (lower-case names)."""
        return dict(self.request.headers)

    def frames(self) -> list[list]:
        """The frames received, decoded."""
        return [json.loads(text) for text in self.received]


class InMemoryCentralSystem:
    """
    A central system the proxy connects to on C{port}, written with Autobahn's server
    protocol. C{state}: L{UP} accepts connections, L{DOWN} refuses them (TCP), L{SILENT}
    accepts TCP but never answers the WebSocket handshake. It answers every CALL with
    C{[3, id, {"answeredBy": name}]} while C{answer_calls}; C{refuse_status} refuses
    handshakes with that HTTP status. C{connections} holds the accepted connections,
    C{attempts} counts the TCP connection attempts (refused ones too).
    """

    def __init__(self, clock, name: str, port: int, subprotocols=("ocpp1.6", "ocpp2.0.1", "ocpp2.1")) -> None:
        self.name = name
        self.port = port
        self.state = UP
        self.answer_calls = True
        self.separators = (",", ":")
        """How its answers are written: compact, or C{(", ", ": ")} as C{json.dumps} writes by default."""
        self.refuse_status: int | None = None
        self.refused: list[str] = []
        self.attempts = 0
        self.subprotocols = list(subprotocols)
        self.connections: list[CentralConnection] = []
        self.factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}", reactor=clock)
        self.factory.protocol = CentralConnection
        self.factory.central = self

    @property
    def connection(self) -> CentralConnection:
        """The latest accepted connection."""
        return self.connections[-1]

    def received(self) -> list[str]:
        """Every frame received, over all connections, in order."""
        return [text for connection in self.connections for text in connection.received]


class StationClient(WebSocketClientProtocol):
    """
    A charging station written with Autobahn's client protocol: records the frames it
    receives (C{received}), the subprotocol it got, the close code, or the HTTP status of
    a refused handshake (C{refused_status}).
    """

    log = TxaioLogger(level="info", logger=Logger, namespace="tests.harness.StationClient")

    def __init__(self) -> None:
        super().__init__()
        self.received: list[str] = []
        self.opened = False
        self.closed = False
        self.close_code: int | None = None
        self.subprotocol: str | None = None

    @property
    def refused_status(self) -> int | None:
        """The HTTP status the handshake was refused with; None while it was not."""
        response = self.http_response_data
        if self.opened or not response:
            return None
        return int(response.split()[1])

    def onConnect(self, response) -> None:
        self.subprotocol = response.protocol

    def onOpen(self) -> None:
        self.opened = True

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.received.append(payload.decode("utf-8"))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed = True
        self.close_code = code

    def send(self, text: str) -> None:
        """Send a text frame to the proxy."""
        self.sendMessage(text.encode("utf-8"), False)

    def frames(self) -> list[list]:
        """The frames received, decoded."""
        return [json.loads(text) for text in self.received]


class RawStation(Protocol):
    """A client that writes C{request} (raw bytes) and records every byte of the answer."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.response = b""
        self.lost = False

    def connectionMade(self) -> None:
        if self.request:
            self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.response += data

    def connectionLost(self, reason=None) -> None:
        self.lost = True

    @property
    def status(self) -> int | None:
        """The HTTP status of the answer, once its status line came."""
        found = re.match(rb"HTTP/1\.1 (\d{3}) ", self.response)
        return int(found.group(1)) if found else None


def websocket_request(path: str, protocols: str | None = None) -> bytes:
    """A WebSocket opening handshake request for C{path}, exactly as written."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{PROXY_PORT}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _FrameLog:
    """A frame observer calling C{record} (see L{ocppproxy.core.observer.FrameObserver})."""

    def __init__(self, record) -> None:
        self.frame_crossed = record


class RelayHarness:
    """
    The real proxy service between in-memory stations and central systems, for C{testcase}
    (a SynchronousTestCase). C{settings} are configuration keys, as in the YAML file; the
    primary listens on 127.0.0.1:9001 and, with C{secondary}, the secondary on 9002, both
    choosing from C{subprotocols} in their order; C{recorder} sees the frames crossing the wire
    (as a frame observer's C{frame_crossed}).
    C{log_lines} holds every log line formatted. Reconnects back off from 0.5 s (factor 2,
    at most 4 s, 3 attempts) unless C{reconnect} says otherwise.
    """

    def __init__(self, testcase, secondary: bool = False, subprotocols=None, recorder=None, **settings) -> None:
        self.clock = ResolvingMemoryReactor()
        self._testcase = testcase
        # Autobahn's timers are txaio's, on the global reactor unless txaio is told otherwise.
        saved_loop, txaio.config.loop = txaio.config.loop, self.clock
        global_calls = set(global_reactor.getDelayedCalls())
        testcase.addCleanup(self._check_global_reactor, global_calls)
        testcase.addCleanup(setattr, txaio.config, "loop", saved_loop)
        self.log_lines: list[str] = []
        globalLogPublisher.addObserver(self._observe)
        testcase.addCleanup(globalLogPublisher.removeObserver, self._observe)
        offered = {"subprotocols": subprotocols} if subprotocols else {}
        self.primary = InMemoryCentralSystem(self.clock, "primary", PRIMARY_PORT, **offered)
        self.secondary = InMemoryCentralSystem(self.clock, "secondary", SECONDARY_PORT, **offered)
        self._centrals = {PRIMARY_PORT: self.primary}
        raw = {
            "listen": f"tcp:{PROXY_PORT}:interface=127.0.0.1",
            "primary_url": f"ws://127.0.0.1:{PRIMARY_PORT}/ocpp/",
            "reconnect": {"initial_delay": 0.5, "factor": 2, "max_delay": 4, "max_attempts": 3},
        }
        if secondary:
            raw["secondary_url"] = f"ws://127.0.0.1:{SECONDARY_PORT}/ocpp/"
            self._centrals[SECONDARY_PORT] = self.secondary
        self.third = InMemoryCentralSystem(self.clock, "third", THIRD_PORT, **offered)
        if "upstreams" in settings:
            # Named upstreams instead of the legacy keys: any of the three central systems may be one.
            del raw["primary_url"]
            self._centrals.update({SECONDARY_PORT: self.secondary, THIRD_PORT: self.third})
        raw.update(settings)
        self.raw = raw
        observer = None if recorder is None else Observers(_FrameLog(recorder))
        self.proxy = ProxyService(config_from_mapping(raw), self.clock, observer=observer, fast_path=FastPath())
        self._pumps: list[IOPump] = []
        self._peer_port = 40000
        self.proxy.startService()
        testcase.addCleanup(self._stop_proxy)

    # --- connections

    def _listening_factory(self):
        for port, factory, _backlog, _interface in self.clock.tcpServers:
            if port == PROXY_PORT:
                return factory
        raise AssertionError(f"the proxy is not listening on port {PROXY_PORT}")

    def _join(self, server_factory, client_protocol, server_port: int, client_host: str) -> None:
        """Connect C{client_protocol} to a protocol of C{server_factory}, both in memory."""
        self._peer_port += 1
        client_address = IPv4Address("TCP", client_host, self._peer_port)
        server_address = IPv4Address("TCP", "127.0.0.1", server_port)
        server_protocol = server_factory.buildProtocol(client_address)
        if server_protocol is None:
            raise AssertionError("the server refused the connection")
        server_transport = MemoryTransport(server_protocol, True, server_address, client_address)
        client_transport = MemoryTransport(client_protocol, False, client_address, server_address)
        pump = connect(
            server_protocol, server_transport, client_protocol, client_transport, greet=False, clock=self.clock
        )
        self._pumps.append(pump)

    def connect_station(
        self,
        station_id: str,
        subprotocols=("ocpp1.6",),
        headers: dict | None = None,
        useragent: str | None = None,
        host: str = "127.0.0.1",
    ) -> StationClient:
        """Connect a station from C{host} to ws://proxy/C{station_id}, then L{flush}; returns it."""
        factory = WebSocketClientFactory(
            f"ws://127.0.0.1:{PROXY_PORT}/{station_id}",
            protocols=list(subprotocols or []),
            headers=headers or {},
            useragent=useragent,
            reactor=self.clock,
        )
        factory.protocol = StationClient
        # The station waits as long as any test lets a silent primary keep it waiting.
        factory.setProtocolOptions(openHandshakeTimeout=60)
        station = factory.buildProtocol(None)
        self._join(self._listening_factory(), station, PROXY_PORT, host)
        self.flush()
        return station

    def connect_raw(self, request: bytes = b"", host: str = "127.0.0.1") -> RawStation:
        """Connect a client from C{host} that sends C{request} as it is, then L{flush}; returns it."""
        client = RawStation(request)
        self._join(self._listening_factory(), client, PROXY_PORT, host)
        self.flush()
        return client

    def _complete_attempts(self) -> bool:
        """Complete or refuse the proxy's pending connection attempts, as each central system's state says."""
        moved = False
        while self.clock.tcpClients:
            _host, port, factory, _timeout, _bind = self.clock.tcpClients.pop(0)
            connector = self.clock.connectors.pop(0)
            central = self._centrals.get(port)
            moved = True
            if central is not None:
                central.attempts += 1
            if central is None or central.state == DOWN:
                factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
            else:
                self._join(central.factory, factory.buildProtocol(None), port, "127.0.0.1")
        return moved

    def unplug(self, protocol) -> None:
        """From now on, nothing C{protocol} and its peer write reaches the other (a dead peer, for keepalives)."""
        for pump in self._pumps:
            if protocol in (pump.client, pump.server):
                pump.clientIO.unplugged = pump.serverIO.unplugged = True
                return
        raise AssertionError(f"{protocol!r} is not connected here")

    # --- time and traffic

    def flush(self) -> None:
        """Move every byte and complete every connection attempt, until nothing moves; no time passes."""
        for _ in range(1000):
            moved = self._complete_attempts()
            for pump in list(self._pumps):
                moved = pump.flush() or moved
            # Closed connections have nothing left to move (a flood test makes hundreds).
            self._pumps = [
                pump for pump in self._pumps if not (pump.clientIO.disconnected and pump.serverIO.disconnected)
            ]
            if not moved:
                return
        raise AssertionError("the connections never went quiet")

    def advance(self, seconds: float, step: float = 0.1) -> None:
        """Let C{seconds} pass in steps of C{step}, with a L{flush} after each."""
        steps = max(1, round(seconds / step))
        for _ in range(steps):
            self.clock.advance(seconds / steps)
            self.flush()

    def _observe(self, event: dict) -> None:
        self.log_lines.append(formatEvent(event))

    def logged(self, text: str) -> list[str]:
        """The log lines that contain C{text}."""
        return [line for line in self.log_lines if text in line]

    def reroute(self, **settings) -> None:
        """
        What a reload with these configuration keys changed does to the routing (the
        thread phase skipped): the proxy swaps the new routing in; then its first turn.
        """
        self.raw = {**self.raw, **settings}
        self.proxy.reroute(routing_for(config_from_mapping(self.raw)))
        self.advance(0)

    # --- the end

    def _stop_proxy(self) -> None:
        stopped = self.proxy.stopService() if self.proxy.running else None
        # The close handshakes, then Autobahn's close timers if a peer never answers.
        self.advance(10, step=1)
        if stopped is not None:
            self._testcase.successResultOf(stopped)

    def _check_global_reactor(self, before: set) -> None:
        left = [call for call in global_reactor.getDelayedCalls() if call not in before]
        if left:
            raise AssertionError(f"the harness left calls on the global reactor: {left}")
