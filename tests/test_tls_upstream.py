"""wss:// upstreams: the server certificate is verified against ca_file (or the system store)."""

from __future__ import annotations

import asyncio
import ssl

from ocpp.v16 import call

from .certs import make_ca_and_server_cert
from .e2e import ProxyTestCase, async_test
from .peers import WAIT, CentralSystem, connect_station


class TLSUpstreamTests(ProxyTestCase):
    async def tls_central(self):
        paths = make_ca_and_server_cert(self.mktemp_dir())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(paths["server.pem"], paths["server-key.pem"])
        central = CentralSystem(100, ssl_context=context)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        return central, f"wss://127.0.0.1:{port}/ocpp/", paths["ca.pem"]

    def mktemp_dir(self) -> str:
        import os

        path = self.mktemp()
        os.makedirs(path)
        return path

    @async_test
    async def test_wss_upstream_verified_with_ca_file(self):
        """With the CA that signed the central system's certificate configured, frames are relayed over TLS."""
        central, url, ca = await self.tls_central()
        base = await self.start_proxy(primary_url=url, ca_file=ca)
        station, websocket, _ = await connect_station(base, "CP_TLS")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        (connection,) = await central.wait_connections(1)
        self.assertEqual(connection.path, "/ocpp/CP_TLS")

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
