"""
wss:// upstreams: the server certificate is verified against ca_file (or the system
store, or the upstream's own upstream_tls ca_file); client certificates (mutual TLS).
"""

from __future__ import annotations

import asyncio
import ssl

from ocpp.v16 import call

from ocppproxy.wire.tls import TLSConnection

from ..certs import make_ca_and_server_cert, make_proxy_client_cert
from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station


class TLSUpstreamTests(ProxyTestCase):
    async def tls_central(self, interval: int = 100, client_ca: str | None = None):
        """A wss:// central system with a certificate of its own CA; with C{client_ca}, client certificates are required."""
        paths = make_ca_and_server_cert(self.mktemp_dir())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(paths["server.pem"], paths["server-key.pem"])
        if client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        central = CentralSystem(interval, ssl_context=context)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        return central, f"wss://127.0.0.1:{port}/ocpp/", paths["ca.pem"]

    def mktemp_dir(self) -> str:
        import os

        path = self.mktemp()
        os.makedirs(path)
        return path

    async def boot_answered_by_primary(self, base: str, station_id: str) -> None:
        """A station connects through the proxy and its BootNotification is answered by the primary (interval 100)."""
        station, websocket, _ = await connect_station(base, station_id)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)

    @async_test
    async def test_wss_upstream_verified_with_ca_file(self):
        """With the CA that signed the central system's certificate configured, frames are relayed over TLS."""
        central, url, ca = await self.tls_central()
        base = await self.start_proxy(primary_url=url, ca_file=ca)
        await self.boot_answered_by_primary(base, "CP_TLS")
        (connection,) = await central.wait_connections(1)
        self.assertEqual(connection.path, "/ocpp/CP_TLS")
        # The proxy's own TLS layer, which the TCP connection hands its data to directly.
        tls = self.proxy.sessions["CP_TLS"].links["primary"].protocol.transport
        self.assertIsInstance(tls, TLSConnection)
        self.assertEqual(tls.transport.protocol.dataReceived, tls.dataReceived)

    @async_test
    async def test_untrusted_certificate_is_refused_and_logged(self):
        """Without its CA, the central system's certificate is refused; the log names the upstream and the reason."""
        central, url, _ = await self.tls_central()
        base = await self.start_proxy(
            primary_url=url, reconnect={"initial_delay": 0.1, "max_delay": 0.2, "max_attempts": 2}
        )
        _, websocket, _ = await connect_station(base, "CP_TLS")
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1013)
        self.assertEqual(central.connections, [])
        failures = self.logged("connection to primary")
        self.assertTrue(failures)
        self.assertTrue(any("certificate" in line.lower() for line in failures), failures)
        self.assertTrue(self.logged("giving up on primary"))

    @async_test
    async def test_ca_file_per_upstream(self):
        """Each upstream is verified against its own upstream_tls ca_file: the one without it is refused."""
        _, primary_url, primary_ca = await self.tls_central(100)
        secondary, secondary_url, _ = await self.tls_central(200)
        base = await self.start_proxy(
            primary_url=primary_url,
            secondary_url=secondary_url,
            upstream_tls={"primary": {"ca_file": primary_ca}},
            reconnect={"initial_delay": 0.1, "max_delay": 0.2, "max_attempts": 2},
        )
        await self.boot_answered_by_primary(base, "CP_TLS")
        await self.until(lambda: self.logged("giving up on secondary"))
        self.assertEqual(secondary.connections, [])
        failures = self.logged("connection to secondary")
        self.assertTrue(any("certificate" in line.lower() for line in failures), failures)
        self.assertFalse(self.logged("connection to primary"))

    @async_test
    async def test_ca_file_per_upstream_overrides_the_top_level_one(self):
        """An upstream's own ca_file replaces the top-level ca_file (here another CA's) for that upstream."""
        central, url, ca = await self.tls_central()
        _, _, other_ca = await self.tls_central()
        base = await self.start_proxy(primary_url=url, ca_file=other_ca, upstream_tls={"primary": {"ca_file": ca}})
        await self.boot_answered_by_primary(base, "CP_TLS")
        await central.wait_connections(1)

    @async_test
    async def test_client_certificate_accepted(self):
        """An upstream that requires a client certificate accepts the proxy with client_cert and client_key."""
        client = make_proxy_client_cert(self.mktemp_dir())
        central, url, ca = await self.tls_central(client_ca=client["proxy-ca.pem"])
        tls = {"ca_file": ca, "client_cert": client["proxy.pem"], "client_key": client["proxy-key.pem"]}
        base = await self.start_proxy(primary_url=url, upstream_tls={"primary": tls})
        await self.boot_answered_by_primary(base, "CP_MTLS")
        (connection,) = await central.wait_connections(1)
        self.assertEqual(connection.path, "/ocpp/CP_MTLS")
        peer = connection.websocket.transport.get_extra_info("peercert")
        self.assertIn(((("commonName", "ocppproxy"),)), peer["subject"])

    @async_test
    async def test_client_certificate_required(self):
        """Without client_cert the same upstream refuses the proxy: attempts fail, the station is closed with 1013."""
        client = make_proxy_client_cert(self.mktemp_dir())
        central, url, ca = await self.tls_central(client_ca=client["proxy-ca.pem"])
        base = await self.start_proxy(
            primary_url=url,
            upstream_tls={"primary": {"ca_file": ca}},
            reconnect={"initial_delay": 0.1, "max_delay": 0.2, "max_attempts": 2},
        )
        _, websocket, _ = await connect_station(base, "CP_MTLS")
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1013)
        self.assertEqual(central.connections, [])
        self.assertTrue(self.logged("giving up on primary"))
