"""TLS towards the stations: security profile 2 (ssl: or station_tls) and 3 (client certificates), end to end."""

from __future__ import annotations

import asyncio
import os
import ssl

import websockets
from ocpp.v16 import call
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ConfigError, StationTLS
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.daemon.reload import compare_configs
from ocppproxy.wire.station_tls import station_tls_options

from ..certs import make_station_pki
from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, Station, _read, closed
from ..startup import config_error_output

PRIMARY = "ws://127.0.0.1:9001/ocpp/"
STATION = "CP_TLS"


ALIAS = "CP_ALIAS"


def pki(test) -> dict[str, str]:
    directory = os.path.abspath(test.mktemp())
    os.makedirs(directory)
    return make_station_pki(directory, STATION, client_dns_names=(ALIAS,))


class StationTLSConfigTests(SynchronousTestCase):
    """The station_tls section: mandatory keys, files, and no ssl: listen endpoint with it."""

    def setUp(self):
        self.paths = pki(self)
        self.base = os.path.dirname(self.paths["ca.pem"])

    def error(self, section, **raw) -> ConfigError:
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping({"primary_url": PRIMARY, "station_tls": section, **raw}, self.base)
        return caught.exception

    def test_paths_relative_to_config(self):
        """The files are taken from the configuration file's directory."""
        config = config_from_mapping(
            {"primary_url": PRIMARY, "station_tls": {"certificate": "server.pem", "private_key": "server-key.pem"}},
            self.base,
        )
        self.assertEqual(config.station_tls, StationTLS(self.paths["server.pem"], self.paths["server-key.pem"]))

    def test_reload_names_the_key(self):
        """A changed station_tls file is named by its key and applied by a reload; adding the section needs a restart."""
        section = {"certificate": "server.pem", "private_key": "server-key.pem"}
        old = config_from_mapping({"primary_url": PRIMARY, "station_tls": section}, self.base)
        new = config_from_mapping(
            {"primary_url": PRIMARY, "station_tls": {**section, "client_ca_file": "ca.pem"}}, self.base
        )
        self.assertEqual(compare_configs(old, new).live, ("station_tls.client_ca_file",))
        plain = config_from_mapping({"primary_url": PRIMARY}, self.base)
        self.assertEqual(compare_configs(plain, new).restart, ("station_tls",))

    def test_check_client_id(self):
        """check_client_id: warn by default; refuse, warn or off (YAML's bare off too); anything else named."""
        section = {"certificate": "server.pem", "private_key": "server-key.pem"}
        config = config_from_mapping({"primary_url": PRIMARY, "station_tls": section}, self.base)
        self.assertEqual(config.station_tls.check_client_id, "warn")
        for value, expected in (("refuse", "refuse"), ("off", "off"), (False, "off")):
            config = config_from_mapping(
                {"primary_url": PRIMARY, "station_tls": {**section, "check_client_id": value}}, self.base
            )
            self.assertEqual(config.station_tls.check_client_id, expected)
        error = self.error({**section, "check_client_id": "deny"})
        self.assertEqual(str(error), "station_tls.check_client_id: must be one of refuse, warn, off, got 'deny'")

    def test_certificate_and_key_mandatory(self):
        error = self.error({"certificate": "server.pem"})
        self.assertEqual(str(error), "station_tls.private_key: is mandatory in a station_tls section")

    def test_missing_file(self):
        error = self.error({"certificate": "server.pem", "private_key": "server-key.pem", "client_ca_file": "no.pem"})
        self.assertEqual(str(error), f"station_tls.client_ca_file: no such file: {self.base}/no.pem")

    def test_not_with_ssl_listen(self):
        """An ssl: listen endpoint already is TLS: with station_tls too, the configuration is refused."""
        error = self.error(
            {"certificate": "server.pem", "private_key": "server-key.pem"},
            listen="ssl:port=9443:privateKey=key.pem:certKey=cert.pem",
        )
        self.assertEqual(error.key, "station_tls")
        self.assertIn("ssl:", error.reason)

    def test_not_pem(self):
        """A certificate file without a PEM certificate is named at start-up."""
        settings = StationTLS(self.paths["server-key.pem"], self.paths["server-key.pem"])
        with self.assertRaises(ConfigError) as caught:
            station_tls_options(settings)
        expected = f"station_tls.certificate: no PEM certificate in {settings.certificate}"
        self.assertEqual(str(caught.exception), expected)

    def test_key_must_match(self):
        settings = StationTLS(self.paths["server.pem"], self.paths["client-key.pem"])
        with self.assertRaises(ConfigError) as caught:
            station_tls_options(settings)
        self.assertEqual(
            str(caught.exception),
            f"station_tls.private_key: {settings.private_key} does not match the certificate in {settings.certificate}",
        )

    def test_context_asks_tls_1_2_and_client_certificates_with_a_ca(self):
        """The context: TLS 1.2 at least, no renegotiation; with client_ca_file it requires a client certificate."""
        plain = station_tls_options(StationTLS(self.paths["server.pem"], self.paths["server-key.pem"]))
        self.assertEqual((plain.minimum_version, plain.verify_mode), (ssl.TLSVersion.TLSv1_2, ssl.CERT_NONE))
        self.assertTrue(plain.options & ssl.OP_NO_RENEGOTIATION)
        settings = StationTLS(self.paths["server.pem"], self.paths["server-key.pem"], self.paths["ca.pem"])
        self.assertEqual(station_tls_options(settings).verify_mode, ssl.CERT_REQUIRED)

    def test_checked_at_start_up(self):
        """twistd stops with one line when the station_tls files do not go together."""
        path = os.path.join(self.base, "ocppproxy.yaml")
        with open(path, "w") as out:
            out.write(f'primary_url: "{PRIMARY}"\n')
            out.write("station_tls: {certificate: server.pem, private_key: client-key.pem}\n")
        self.assertEqual(
            config_error_output(self, path),
            f"ocppproxy: configuration error in {path}: station_tls.private_key: "
            f"{self.paths['client-key.pem']} does not match the certificate in {self.paths['server.pem']}\n",
        )


class StationTLSEndToEndTests(ProxyTestCase):
    async def tls_proxy(self, **settings) -> str:
        """A central system and a proxy with C{settings}; returns the wss:// base URL."""
        self.central = CentralSystem(100)
        port = await self.central.start()
        self.addCleanup(lambda: asyncio.ensure_future(self.central.stop()))
        base = await self.start_proxy(primary_url=f"ws://127.0.0.1:{port}/ocpp/", **settings)
        return "wss://" + base[len("ws://") :]

    def context(self, client: str | None = None) -> ssl.SSLContext:
        """A station's TLS context trusting the test CA, with the client certificate C{client} if given."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.paths["ca.pem"])
        if client is not None:
            context.load_cert_chain(self.paths[f"{client}.pem"], self.paths[f"{client}-key.pem"])
        return context

    async def connect(self, url: str, context: ssl.SSLContext):
        return await websockets.connect(url, subprotocols=["ocpp1.6"], ssl=context, open_timeout=WAIT)

    async def boots(self, base: str, context: ssl.SSLContext, station_id: str = STATION) -> None:
        """A station connects over wss:// with C{context} and its BootNotification is answered by the central system."""
        websocket = await self.connect(base + station_id, context)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        station = Station(station_id, websocket, response_timeout=WAIT)
        asyncio.ensure_future(_read(station))
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        self.assertEqual(self.central.connections[-1].path, f"/ocpp/{station_id}")

    async def refused(self, base: str, context: ssl.SSLContext) -> None:
        """The station's connection fails in the TLS handshake; nothing reaches the central system."""
        with self.assertRaises((OSError, EOFError, websockets.InvalidHandshake)):
            websocket = await self.connect(base + STATION, context)
            await websocket.close()
        await self.until(lambda: self.logged("TLS handshake with station"))
        self.assertEqual(self.central.connections, [])
        self.assertEqual(self.proxy.sessions, {})

    def setUp(self):
        super().setUp()
        self.paths = pki(self)

    def station_tls(self, **extra) -> dict:
        return {"certificate": self.paths["server.pem"], "private_key": self.paths["server-key.pem"], **extra}

    @async_test
    async def test_profile_2_with_ssl_endpoint(self):
        """listen: ssl:... serves wss:// to stations that trust the proxy's CA."""
        key, certificate = self.paths["server-key.pem"], self.paths["server.pem"]
        listen = f"ssl:port=0:interface=127.0.0.1:privateKey={key}:certKey={certificate}"
        base = await self.tls_proxy(listen=listen)
        await self.boots(base, self.context())

    @async_test
    async def test_profile_2_with_station_tls(self):
        """station_tls without client_ca_file serves wss:// on a tcp: endpoint; no client certificate is asked."""
        base = await self.tls_proxy(station_tls=self.station_tls())
        await self.boots(base, self.context())
        self.assertEqual(self.logged("client certificate"), [])

    @async_test
    async def test_profile_3_valid_client_certificate(self):
        """With client_ca_file, a station with a client certificate from that CA is relayed; its CN is logged."""
        base = await self.tls_proxy(station_tls=self.station_tls(client_ca_file=self.paths["ca.pem"]))
        await self.boots(base, self.context("client"))
        self.assertEqual(len(self.logged(f"station {STATION} presented a client certificate for '{STATION}'")), 1)
        self.assertEqual(self.logged("not the station id"), [])

    @async_test
    async def test_profile_3_other_name_warned_not_refused(self):
        """A valid client certificate whose CN is not the station id is accepted, with a warning."""
        base = await self.tls_proxy(station_tls=self.station_tls(client_ca_file=self.paths["ca.pem"]))
        await self.boots(base, self.context("client"), "CP_ELSE")
        self.assertEqual(len(self.logged(f"station CP_ELSE: its client certificate names '{STATION}'")), 1)

    @async_test
    async def test_profile_3_other_name_refused_with_403(self):
        """
        check_client_id: refuse: a valid client certificate naming another station is
        refused with 403 before any upstream handshake, with one line naming both ids.
        """
        base = await self.tls_proxy(
            station_tls=self.station_tls(client_ca_file=self.paths["ca.pem"], check_client_id="refuse")
        )
        with self.assertRaises(websockets.InvalidStatus) as caught:
            await self.connect(base + "CP_ELSE", self.context("client"))
        self.assertEqual(caught.exception.response.status_code, 403)
        (line,) = self.logged("refused station CP_ELSE")
        self.assertIn(f"with 403: its client certificate is for '{STATION}'", line)
        self.assertEqual(self.central.connections, [])
        await self.boots(base, self.context("client"))

    @async_test
    async def test_profile_3_san_dns_name_is_the_station(self):
        """check_client_id: refuse accepts a certificate whose SAN DNS name is the station id; case counts."""
        base = await self.tls_proxy(
            station_tls=self.station_tls(client_ca_file=self.paths["ca.pem"], check_client_id="refuse")
        )
        await self.boots(base, self.context("client"), ALIAS)
        with self.assertRaises(websockets.InvalidStatus) as caught:
            await self.connect(base + ALIAS.lower(), self.context("client"))
        self.assertEqual(caught.exception.response.status_code, 403)

    @async_test
    async def test_profile_3_check_off(self):
        """check_client_id: off: another station's certificate is accepted without a word."""
        base = await self.tls_proxy(
            station_tls=self.station_tls(client_ca_file=self.paths["ca.pem"], check_client_id="off")
        )
        await self.boots(base, self.context("client"), "CP_ELSE")
        self.assertEqual(self.logged("client certificate"), [])

    @async_test
    async def test_profile_3_without_client_certificate_refused(self):
        """With client_ca_file, a station without a client certificate fails the TLS handshake."""
        base = await self.tls_proxy(station_tls=self.station_tls(client_ca_file=self.paths["ca.pem"]))
        await self.refused(base, self.context())

    @async_test
    async def test_profile_3_certificate_from_other_ca_refused(self):
        """With client_ca_file, a client certificate signed by another CA fails the TLS handshake."""
        base = await self.tls_proxy(station_tls=self.station_tls(client_ca_file=self.paths["ca.pem"]))
        await self.refused(base, self.context("other-client"))
        self.assertEqual(self.proxy.limits.handshakes, 0)

    @async_test
    async def test_tls_handshakes_counted_and_timed_out(self):
        """
        A TLS handshake counts against limits.max_handshakes: beyond it the oldest
        unfinished one is shed at once, and one that never starts TLS is closed by the
        handshake timeout.
        """
        base = await self.tls_proxy(
            station_tls=self.station_tls(client_ca_file=self.paths["ca.pem"]),
            handshake_timeout=0.1,
            limits={"max_handshakes": 1},
        )
        port = int(base.rsplit(":", 1)[1].strip("/"))
        loop = asyncio.get_event_loop()
        started = loop.time()
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for _, writer in silent:
            self.addCleanup(writer.close)
        await asyncio.wait_for(closed(silent[0][0]), WAIT)
        self.assertLess(loop.time() - started, 2)
        self.assertEqual((self.proxy.limits.handshakes, self.proxy.limits.shed), (1, 1))
        await asyncio.wait_for(closed(silent[1][0]), 5.1 + WAIT)
        # Autobahn's timers round their due time down to a whole second: up to 1 s early.
        self.assertGreater(loop.time() - started, 4)
        await self.until(lambda: self.proxy.limits.handshakes == 0)
        await self.boots(base, self.context("client"))
