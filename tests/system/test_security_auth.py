"""
Credentials and addresses towards the central systems: upstream_auth, trusted_proxies,
and no credential in the log at any level (on the synchronous harness, and under twistd).
"""

from __future__ import annotations

import asyncio
import base64
import signal

import txaio
from ocpp.v16 import call
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.logs import set_log_level
from ocppproxy.wire.station import StationFactory, StationProtocol
from ocppproxy.wire.upstream_protocol import UpstreamProtocol

from ..e2e import async_test
from ..harness import RelayHarness
from ..peers import WAIT, CentralSystem, connect_station
from .test_daemon import DaemonTestCase

STATION_PASSWORD = "st4tion-Pa55"
STATION_AUTH = "Basic " + base64.b64encode(f"CP_1:{STATION_PASSWORD}".encode()).decode()
PROXY_PASSWORD = "pr0xy-Secret"


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def lowered(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def secrets_in(lines: list[str]) -> list[str]:
    """The lines that hold a password or an Authorization value, in clear or encoded."""
    secrets = [
        STATION_PASSWORD,
        STATION_AUTH.split()[1],
        PROXY_PASSWORD,
        basic("CP_1", PROXY_PASSWORD).split()[1],
    ]
    return [line for line in lines if any(secret in line for secret in secrets)]


class UpstreamAuthTests(SynchronousTestCase):
    """What each upstream's handshake carries, as the central systems receive it (on tests/harness.py)."""

    def headers_received(self, **settings) -> tuple[dict[str, str], dict[str, str]]:
        """Connect CP_1 (with Basic credentials) through a proxy with C{settings}; the headers each upstream got."""
        self.harness = RelayHarness(self, secondary=True, **settings)
        station = self.harness.connect_station(
            "CP_1", headers={"Authorization": STATION_AUTH, "X-Forwarded-For": "203.0.113.9"}
        )
        station.send('[2,"h-1","Heartbeat",{}]')
        self.harness.flush()
        return self.harness.primary.connection.headers(), self.harness.secondary.connection.headers()

    def test_default_both_upstreams_get_the_station_credentials(self):
        """Without upstream_auth the station's Authorization reaches both upstreams, unchanged."""
        primary, secondary = self.headers_received()
        self.assertEqual(primary["authorization"], STATION_AUTH)
        self.assertEqual(secondary["authorization"], STATION_AUTH)

    def test_drop_and_credentials_with_station_id(self):
        """drop: no Authorization; credentials: Basic with the station id as user, the station's header replaced."""
        primary, secondary = self.headers_received(
            upstream_auth={"primary": "drop", "secondary": {"username": "{station_id}", "password": PROXY_PASSWORD}}
        )
        self.assertNotIn("authorization", primary)
        self.assertEqual(secondary["authorization"], basic("CP_1", PROXY_PASSWORD))

    def test_forwarded_for_from_untrusted_station_ignored(self):
        """A station's own X-Forwarded-For is not believed: the upstreams get its socket address only."""
        primary, secondary = self.headers_received(trusted_proxies=["10.0.0.0/8"])
        for headers in (primary, secondary):
            self.assertEqual(headers["x-forwarded-for"], "127.0.0.1")
            self.assertEqual(headers["x-real-ip"], "127.0.0.1")

    def test_forwarded_for_from_trusted_proxy_honoured(self):
        """From a trusted proxy the incoming chain is extended with its address; X-Real-IP is the client."""
        primary, secondary = self.headers_received(trusted_proxies=["127.0.0.0/8"])
        for headers in (primary, secondary):
            self.assertEqual(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1")
            self.assertEqual(headers["x-real-ip"], "203.0.113.9")

    def test_autobahn_does_not_trust_forwarded_for(self):
        """Autobahn's trustXForwardedFor stays off: the station's peer (logged) is the socket's address."""
        self.headers_received(trusted_proxies=["127.0.0.0/8"])
        self.assertTrue(self.harness.logged("station CP_1 connected from tcp4:127.0.0.1:"))
        self.assertFalse(self.harness.logged("203.0.113.9"))

    def test_no_credentials_in_the_log_at_debug(self):
        """At log_level debug, even with txaio (Autobahn's logging) at debug, no password or Authorization is logged."""
        previous = txaio.get_global_log_level()
        txaio.set_global_log_level("debug")
        self.addCleanup(txaio.set_global_log_level, previous)
        set_log_level("debug")
        self.addCleanup(set_log_level, "info")
        self.headers_received(
            log_level="debug",
            upstream_auth={"secondary": {"username": "{station_id}", "password": PROXY_PASSWORD}},
        )
        self.assertTrue(self.harness.logged("station CP_1 -> primary,secondary"), "debug events were not captured")
        self.assertEqual(secrets_in(self.harness.log_lines), [])


class AutobahnSettingsTests(SynchronousTestCase):
    def test_trust_forwarded_for_off(self):
        """The station factory never lets Autobahn replace the peer with X-Forwarded-For."""
        factory = StationFactory(None, MemoryReactorClock(), {})
        self.assertEqual(factory.trustXForwardedFor, 0)

    def test_autobahn_handshake_debugging_stays_off(self):
        """Our protocols' Autobahn loggers stay at info when txaio's global level is debug (it logs raw handshakes)."""
        previous = txaio.get_global_log_level()
        txaio.set_global_log_level("debug")
        self.addCleanup(txaio.set_global_log_level, previous)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for protocol in (StationProtocol, UpstreamProtocol):
            protocol.log.debug("received HTTP request: {data}", data=STATION_AUTH)
            protocol.log.info("info still shown")
        self.assertEqual([event["log_format"] for event in events], ["info still shown"] * 2)


class DaemonLogTests(DaemonTestCase):
    @async_test
    async def test_twistd_log_at_debug_has_no_credentials(self):
        """Under twistd (whose observer shows every level) at log_level debug, no credential reaches the log."""
        primary, secondary = CentralSystem(100), CentralSystem(200)
        primary_port, secondary_port = await primary.start(), await secondary.start()
        self.addCleanup(lambda: asyncio.ensure_future(primary.stop()))
        self.addCleanup(lambda: asyncio.ensure_future(secondary.stop()))
        process = await self.run_daemon(
            'listen: "tcp:port=0:interface=127.0.0.1"\n'
            f'primary_url: "ws://127.0.0.1:{primary_port}/ocpp/"\n'
            f'secondary_url: "ws://127.0.0.1:{secondary_port}/ocpp/"\n'
            "log_level: debug\n"
            f'upstream_auth: {{secondary: {{username: "{{station_id}}", password: "{PROXY_PASSWORD}"}}}}\n'
        )
        found, lines = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        station, websocket, _ = await connect_station(
            f"ws://127.0.0.1:{found.group(1)}/", "CP_1", headers={"Authorization": STATION_AUTH}
        )
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        (connection,) = await secondary.wait_connections(1)
        self.assertEqual(lowered(connection.headers)["authorization"], basic("CP_1", PROXY_PASSWORD))
        await websocket.close()
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
        output = "".join(lines) + (await process.stdout.read()).decode("utf-8", "replace")
        output += (await process.stderr.read()).decode("utf-8", "replace")
        self.assertIn("station CP_1 -> primary,secondary", output)
        self.assertIn("[ocppproxy", output)
        self.assertEqual(secrets_in(output.splitlines()), [])
