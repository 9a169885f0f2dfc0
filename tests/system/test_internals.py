"""
The fast path's start-up check: every Autobahn and Twisted internal it needs is named and
checked once; without one, the proxy warns once, naming it, and relays on the stock paths.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from unittest import SkipTest

import websockets
from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
from ocpp.v16 import call
from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import context as legacy_context
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.daemon.tap import Options, makeService
from ocppproxy.fastpath import FastPath, check, check_at_start_up, poll, transport
from ocppproxy.fastpath.check import decide, missing_internals
from ocppproxy.fastpath.frames import LeanFrames, lean_protocol
from ocppproxy.fastpath.nvx import nvx_xor_mask
from ocppproxy.fastpath.poll import EPollReactor, read_connection, use_lean_poll
from ocppproxy.fastpath.wsframes import xor_mask
from ocppproxy.wire.station import StationProtocol
from ocppproxy.wire.upstream_protocol import GENERIC_REFUSAL, UpstreamProtocol

from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station, wait_until
from ..unit.test_layers import violations


class ServerWithoutSendQueue(WebSocketServerProtocol):
    """An Autobahn whose server protocol no longer has C{send_queue} once connected."""

    def _connectionMade(self):
        super()._connectionMade()
        del self.send_queue


class ClientWithOtherRefusalText(WebSocketClientProtocol):
    """An Autobahn that words a refused upgrade differently."""

    def processHandshake(self):
        return super().processHandshake()


class ConnectionWithoutTempBuffer(tcp.Connection):
    """A Twisted whose connections keep their pending writes under another name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self._tempDataBuffer


class CheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def warnings(self) -> list[str]:
        return [formatEvent(event) for event in self.events if event.get("log_level").name == "warn"]

    def test_installed_releases_have_everything(self):
        """The Autobahn and Twisted this suite runs on have every name: the fast path is on, no warning."""
        self.assertEqual(missing_internals(), [])
        self.assertIsInstance(check_at_start_up(), FastPath)
        self.assertEqual(self.warnings(), [])

    def test_missing_autobahn_name_is_named_once(self):
        """An Autobahn without C{send_queue}: one warning naming it, the fast path off (no FastPath)."""
        missing = missing_internals(server=ServerWithoutSendQueue)
        self.assertEqual(missing, ["ServerWithoutSendQueue.send_queue"])
        self.assertIsNone(decide(missing))
        (warning,) = self.warnings()
        self.assertIn("fast path off", warning)
        self.assertIn("ServerWithoutSendQueue.send_queue", warning)

    def test_missing_refusal_text_and_twisted_buffer_are_named(self):
        """Other wording of a refused upgrade, a renamed Twisted buffer: both named."""
        missing = missing_internals(client=ClientWithOtherRefusalText, connection=ConnectionWithoutTempBuffer)
        self.assertEqual(
            missing,
            [
                "ClientWithOtherRefusalText.processHandshake: upgrade failed [<status>]",
                "ConnectionWithoutTempBuffer._tempDataBuffer",
            ],
        )

    def test_changed_endpoint_wrapper_is_named(self):
        """An endpoint wrapper whose dataReceived does more than pass the data on: named."""

        def data_received(self, data):
            self.bytes_seen = len(data)
            return self._wrappedProtocol.dataReceived(data)

        self.patch(transport._WrappingProtocol, "dataReceived", data_received)
        self.assertEqual(missing_internals(), ["_WrappingProtocol.dataReceived (changed)"])
        self.patch(transport, "_WrappingProtocol", None)  # a Twisted without it at all
        self.assertEqual(missing_internals(), ["twisted.internet.endpoints._WrappingProtocol"])

    def test_refusal_status(self):
        """With the fast path, the primary's status is read from Autobahn's text; without, it is 502."""
        text = "WebSocket connection upgrade failed [404]: Not Found"
        lean = lean_protocol(UpstreamProtocol)()
        self.assertEqual(lean.refusal_status(text), 404)
        self.assertIsNone(lean.refusal_status("Sec-WebSocket-Accept mismatch"))
        self.assertEqual(UpstreamProtocol().refusal_status(text), GENERIC_REFUSAL)
        self.assertEqual(GENERIC_REFUSAL, 502)

    def test_daemon_decides_once_and_builds_on_the_stock_path(self):
        """
        makeService checks once: with a name missing, one warning naming it, the stock
        protocol classes built, and an epoll reactor left polling as Twisted does.
        """
        self.patch(check, "missing_internals", lambda: ["WebSocketServerProtocol.send_queue"])
        options = daemon_options(self)
        reactor = EPollReactor() if EPollReactor is not None else MemoryReactorClock()
        if EPollReactor is not None:
            self.addCleanup(reactor._poller.close)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        top = makeService(options, reactor)
        proxy = top.getServiceNamed("proxy")
        self.assertIs(proxy.factory.protocol, StationProtocol)
        self.assertIsNone(proxy.write_limits.fast_path)
        self.assertNotIn("doIteration", vars(reactor))
        (warning,) = self.warnings()
        self.assertIn("fast path off", warning)
        self.assertIn("WebSocketServerProtocol.send_queue", warning)

    def test_daemon_plugs_the_fast_path_in(self):
        """With every name present, makeService hands one FastPath to the proxy's factory and write limits."""
        options = daemon_options(self)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        top = makeService(options, MemoryReactorClock())
        proxy = top.getServiceNamed("proxy")
        self.assertTrue(issubclass(proxy.factory.protocol, LeanFrames))
        self.assertTrue(issubclass(proxy.factory.protocol, StationProtocol))
        self.assertIsInstance(proxy.write_limits.fast_path, FastPath)
        self.assertEqual(self.warnings(), [])


def daemon_options(case: SynchronousTestCase) -> Options:
    """The daemon's command line for a minimal configuration file."""
    path = os.path.abspath(case.mktemp() + ".yaml")
    with open(path, "w") as out:
        out.write('primary_url: "ws://127.0.0.1:1/"\nlisten: "tcp:port=0:interface=127.0.0.1"\n')
    options = Options()
    options.parseOptions(["-c", path])
    return options


class NvxMaskTests(SynchronousTestCase):
    def test_nvx_mask_equals_python_mask(self):
        """Autobahn's C masker (present in the Autobahn this suite runs on) gives xor_mask's bytes."""
        nvx = nvx_xor_mask()
        if nvx is None:
            self.skipTest("this Autobahn has no NVX masker (_nvx_xormasker)")
        for size in (0, 1, 3, 4, 5, 15, 16, 17, 127, 128, 129, 200, 2048, 65535):
            payload, key = os.urandom(size), os.urandom(4)
            self.assertEqual(nvx(payload, key), xor_mask(payload, key), size)


class RelayOnEitherPathTests(ProxyTestCase):
    """The proxy between the ocpp library's station and two central systems, on each path."""

    async def relay_boot(self, refuse_status=None, fast_path=None):
        primary, secondary = CentralSystem(100, refuse_status=refuse_status), CentralSystem(200)
        urls = []
        for central in (primary, secondary):
            urls.append(f"ws://127.0.0.1:{await central.start()}/ocpp/")
            self.addCleanup(lambda central=central: asyncio.ensure_future(central.stop()))
        self.primary, self.secondary = primary, secondary
        return await self.start_proxy(primary_url=urls[0], secondary_url=urls[1], fast_path=fast_path)

    async def boot(self, base):
        station, websocket, _ = await connect_station(base, "CP_1")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        await asyncio.wait_for(self.secondary.wait_connections(1), WAIT)
        return self.proxy.sessions["CP_1"]

    @async_test
    async def test_fast_path_in_use(self):
        """With every internal present, stations and upstreams are on the fast path."""
        session = await self.boot(await self.relay_boot(fast_path=FastPath()))
        self.assertIsInstance(session.protocol, LeanFrames)
        self.assertTrue(all(isinstance(link.protocol, LeanFrames) for link in session.links.values()))
        # Each upstream connection hands its data to the link's protocol itself (read_directly).
        for link in session.links.values():
            self.assertEqual(link.protocol.transport.protocol.dataReceived, link.protocol.dataReceived)
        # ... and the relaying still works through it: the secondary heard the station's boot.
        (secondary_side,) = self.secondary.connections
        await wait_until(lambda: secondary_side.session.received, secondary_side.session.changed)
        self.assertEqual(secondary_side.session.received[0][2], "BootNotification")

    @async_test
    async def test_stock_path_relays(self):
        """With an internal missing, the same CALL and answer go through stock Autobahn and Twisted."""
        session = await self.boot(await self.relay_boot(fast_path=None))
        self.assertNotIsInstance(session.protocol, LeanFrames)
        self.assertIs(type(session.protocol), StationProtocol)
        self.assertFalse(any(isinstance(link.protocol, LeanFrames) for link in session.links.values()))
        (secondary_side,) = self.secondary.connections
        await wait_until(lambda: secondary_side.session.received, secondary_side.session.changed)
        self.assertEqual(secondary_side.session.received[0][2], "BootNotification")

    @async_test
    async def test_stock_path_refuses_generically(self):
        """With the refusal text unknown, a station whose primary refuses it (404) is refused with 502."""
        base = await self.relay_boot(refuse_status=404, fast_path=None)
        with self.assertRaises(websockets.InvalidStatus) as caught:
            await websockets.connect(base + "CP_2", subprotocols=["ocpp1.6"], open_timeout=WAIT)
        self.assertEqual(caught.exception.response.status_code, 502)


class ChangedDoPollReactor(EPollReactor or object):
    """A Twisted whose epoll reactor polls otherwise."""

    def doPoll(self, timeout):
        return super().doPoll(timeout)

    doIteration = doPoll


class SocketReader(FileDescriptor):
    """One end of a socket pair, read by the reactor: what it read, or the error it raises."""

    def __init__(self, reactor, sock, fail=False):
        super().__init__(reactor)
        self.socket, self.fail, self.received = sock, fail, []

    def fileno(self):
        return self.socket.fileno()

    def doRead(self):
        if self.fail:
            raise RuntimeError("handler failed")
        self.received.append(self.socket.recv(100))


class LeanPollTests(SynchronousTestCase):
    """Twisted's epoll reactor without its per-event log context."""

    def setUp(self) -> None:
        if EPollReactor is None:
            raise SkipTest("no epoll reactor here (not Linux)")
        self.reactor = EPollReactor()
        self.addCleanup(self.reactor._poller.close)

    def reader(self, fail=False) -> SocketReader:
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        reader = SocketReader(self.reactor, ours, fail)
        self.reactor.addReader(reader)
        self.addCleanup(self.reactor.removeReader, reader)
        theirs.send(b"frame")
        return reader

    def test_changed_do_poll_is_named(self):
        """A doPoll that is not the one lean_do_poll replaces: named, the fast path off."""
        self.assertEqual(missing_internals(), [])
        missing = missing_internals(reactor_class=ChangedDoPollReactor)
        self.assertEqual(missing, ["ChangedDoPollReactor.doPoll (changed)"])

    def test_events_are_handled_without_log_context(self):
        """Installed on an epoll reactor, each ready reader is read; no legacy log context is made per event."""
        self.assertTrue(FastPath().install_poll(self.reactor))
        readers = [self.reader(), self.reader()]
        contexts = []
        self.patch(legacy_context, "call", lambda *args, **kwargs: contexts.append(args))
        self.reactor.doIteration(1.0)
        self.assertEqual([reader.received for reader in readers], [[b"frame"], [b"frame"]])
        self.assertEqual(contexts, [])

    def test_failure_is_logged_and_connection_dropped(self):
        """A handler that raises is logged as before and its connection dropped; the others still read."""
        use_lean_poll(self.reactor)
        failing, working = self.reader(fail=True), self.reader()
        self.reactor.doIteration(1.0)
        self.assertEqual(working.received, [b"frame"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertNotIn(failing, self.reactor.getReaders())

    def test_other_reactors_untouched(self):
        """Not the epoll reactor: nothing replaced. (The stock path has no FastPath to install it:
        see CheckTests.test_daemon_decides_once_and_builds_on_the_stock_path.)"""
        self.assertFalse(FastPath().install_poll(Clock()))
        self.assertFalse(use_lean_poll(Clock()))
        self.assertNotIn("doIteration", vars(self.reactor))


class RecordingProtocol(Protocol):
    """What a TCP connection gave it, and why it was lost; raises on data if asked to."""

    def __init__(self, fail=False):
        self.fail, self.received, self.lost = fail, [], []

    def dataReceived(self, data):
        if self.fail:
            raise RuntimeError("protocol failed")
        self.received.append(data)

    def connectionLost(self, reason):
        self.lost.append(reason)


class ChangedDoReadConnection(tcp.Connection):
    """A Twisted whose TCP connections read otherwise."""

    def doRead(self):
        return super().doRead()


class ReadConnectionTests(SynchronousTestCase):
    """A readable TCP connection read by lean_do_poll itself (read_connection), as _doReadOrWrite would."""

    def setUp(self) -> None:
        if EPollReactor is None:
            raise SkipTest("no epoll reactor here (not Linux)")
        self.reactor = EPollReactor()
        self.addCleanup(self.reactor._poller.close)
        use_lean_poll(self.reactor)
        self.reads = []
        self.patch(
            poll,
            "read_connection",
            lambda reactor, connection: (self.reads.append(connection), read_connection(reactor, connection)),
        )

    def connection(self, fail=False):
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.addCleanup(theirs.close)
        protocol = RecordingProtocol(fail)
        connection = tcp.Server(ours, protocol, ("127.0.0.1", 1), None, 1, self.reactor)
        protocol.makeConnection(connection)
        connection.startReading()
        self.addCleanup(lambda: connection.connected and connection.connectionLost(Failure(ConnectionDone())))
        return connection, protocol, theirs

    def test_data_reaches_the_protocol(self):
        """Readable and nothing else: read here, the bytes given to the protocol, the connection kept."""
        connection, protocol, peer = self.connection()
        peer.send(b"frame")
        self.reactor.doIteration(1.0)
        self.assertEqual(protocol.received, [b"frame"])
        self.assertEqual(self.reads, [connection])
        self.assertIn(connection, self.reactor.getReaders())

    def test_peer_gone_is_a_clean_close(self):
        """The peer closed its side (an empty read): the connection is lost with ConnectionDone, as Twisted loses it."""
        connection, protocol, peer = self.connection()
        peer.shutdown(socket.SHUT_WR)
        read_connection(self.reactor, connection)
        (reason,) = protocol.lost
        self.assertTrue(reason.check(ConnectionDone))
        self.assertNotIn(connection, self.reactor.getReaders())

    def test_nothing_to_read_changes_nothing(self):
        """Nothing there after all (EWOULDBLOCK): no data, the connection kept."""
        connection, protocol, _ = self.connection()
        read_connection(self.reactor, connection)
        self.assertEqual((protocol.received, protocol.lost), ([], []))
        self.assertIn(connection, self.reactor.getReaders())

    def test_protocol_failure_is_logged_and_connection_dropped(self):
        """The protocol raises: logged, and the connection lost with that error, as _doReadOrWrite does."""
        connection, protocol, peer = self.connection(fail=True)
        peer.send(b"frame")
        self.reactor.doIteration(1.0)
        self.assertEqual(self.reads, [connection])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        (reason,) = protocol.lost
        self.assertTrue(reason.check(RuntimeError))
        self.assertNotIn(connection, self.reactor.getReaders())

    def test_changed_read_path_is_named(self):
        """A TCP connection whose doRead is not the one read_connection stands in for: named, the fast path off."""
        self.assertEqual(
            missing_internals(connection=ChangedDoReadConnection),
            [
                "ChangedDoReadConnection.doRead (changed)",
                "Server.doRead (not ChangedDoReadConnection's)",
                "Client.doRead (not ChangedDoReadConnection's)",
            ],
        )


class SeamTests(SynchronousTestCase):
    """The fast path is one package behind one value: nothing but the daemon imports it at run time."""

    def test_fastpath_imports_nothing_of_ours_but_logs(self):
        """ocppproxy/fastpath imports Twisted, Autobahn, itself and ocppproxy.logs: no layer of the proxy."""

        def allowed(module: str) -> bool:
            return not module.startswith("ocppproxy.") or module.startswith(("ocppproxy.fastpath", "ocppproxy.logs"))

        self.assertEqual(violations("fastpath", allowed), [])

    def test_only_the_daemon_imports_fastpath(self):
        """The layers it plugs into take a FastPath as a value (type hints aside): only the daemon imports it."""
        for subpackage in ("core", "config", "wire", "relay", "notify", "status", "cluster"):
            self.assertEqual(violations(subpackage, lambda module: not module.startswith("ocppproxy.fastpath")), [])
