"""
Certificates renewed without dropping a station: SIGHUP re-reads every TLS file of the
running daemon (``twistd``), with real TLS peers; a bad renewal changes nothing; the
expiry of a certificate is told before it bites.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import ssl

import websockets
from cryptography import x509
from ocpp.v16 import call
from prometheus_client.parser import text_string_to_metric_families

from ..certs import make_ca_and_server_cert, make_proxy_client_cert, make_station_pki
from ..e2e import async_test
from ..peers import WAIT, CentralSystem, Station, _read, connect_station
from .test_daemon import DaemonTestCase

STATION = "CP_RENEW"
BOOT = call.BootNotification(charge_point_model="M", charge_point_vendor="V")


def replace_file(source: str, target: str) -> None:
    """C{target} replaced by a copy of C{source} at once (written beside it, then renamed), as renewal hooks do."""
    shutil.copyfile(source, target + ".new")
    os.replace(target + ".new", target)


def trusting(ca: str) -> ssl.SSLContext:
    """A station's TLS context that trusts only the CA in C{ca}."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    return context


def serial(path: str) -> int:
    with open(path, "rb") as stream:
        return x509.load_pem_x509_certificate(stream.read()).serial_number


def presented(connection) -> int:
    """The serial number of the client certificate the proxy presented on a central system's C{connection}."""
    return int(connection.websocket.transport.get_extra_info("peercert")["serialNumber"], 16)


class TLSReloadTestCase(DaemonTestCase):
    timeout = 60

    def directory(self, name: str) -> str:
        path = os.path.abspath(os.path.join(self.mktemp(), name))
        os.makedirs(path)
        return path

    async def central(self, ssl_context=None) -> tuple[CentralSystem, int]:
        central = CentralSystem(100, ssl_context=ssl_context) if ssl_context else CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        return central, port

    async def daemon(self, text: str):
        """twistd with the configuration C{text}; returns the process and the port it listens on."""
        process = await self.run_daemon('listen: "tcp:port=0:interface=127.0.0.1"\n' + text)
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        return process, int(found.group(1))

    async def reload(self, process) -> str:
        """SIGHUP; returns what the reload line says was applied (or the refusal)."""
        process.send_signal(signal.SIGHUP)
        found, _ = await self.read_until(process.stdout, r"configuration (reloaded .*|reload refused: .*)")
        return found.group(1)

    async def tls_station(self, port: int, ca: str, station_id: str) -> Station:
        """A station connected over wss:// trusting only C{ca}, its BootNotification answered."""
        websocket = await websockets.connect(
            f"wss://127.0.0.1:{port}/{station_id}", subprotocols=["ocpp1.6"], ssl=trusting(ca), open_timeout=WAIT
        )
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        station = Station(station_id, websocket, response_timeout=WAIT)
        asyncio.ensure_future(_read(station))
        self.assertEqual((await station.call(BOOT)).interval, 100)
        return station

    async def refused(self, port: int, ca: str) -> None:
        """A station trusting only C{ca} fails the TLS handshake: the proxy's certificate is not of that CA."""
        with self.assertRaises(ssl.SSLCertVerificationError):
            websocket = await websockets.connect(
                f"wss://127.0.0.1:{port}/CP_OLD", subprotocols=["ocpp1.6"], ssl=trusting(ca), open_timeout=WAIT
            )
            await websocket.close()

    async def stop(self, process) -> str:
        """SIGTERM; the exit status is 0; returns the rest of the output."""
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
        return (await process.stdout.read()).decode()


class StationCertificateReloadTests(TLSReloadTestCase):
    async def proxy_with(self, old: dict[str, str]):
        """A daemon serving station_tls from a directory of its own holding C{old}'s server certificate and key."""
        _, central_port = await self.central()
        work = self.directory("tls")
        self.certificate, self.key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        shutil.copyfile(old["server.pem"], self.certificate)
        shutil.copyfile(old["server-key.pem"], self.key)
        return await self.daemon(
            f'primary_url: "ws://127.0.0.1:{central_port}/ocpp/"\n'
            f'station_tls: {{certificate: "{self.certificate}", private_key: "{self.key}"}}\n'
        )

    @async_test
    async def test_renewed_by_another_ca_without_dropping_a_station(self):
        """
        The files replaced by a certificate of another CA, then SIGHUP: the connected
        station is still answered, a new station trusting only the new CA connects, one
        trusting only the old CA is refused.
        """
        old, new = make_station_pki(self.directory("old"), STATION), make_station_pki(self.directory("new"), STATION)
        process, port = await self.proxy_with(old)
        connected = await self.tls_station(port, old["ca.pem"], STATION)
        replace_file(new["server-key.pem"], self.key)
        replace_file(new["server.pem"], self.certificate)
        self.assertEqual(await self.reload(process), f"reloaded from {self.config_path}: no live setting changed")
        await asyncio.wait_for(connected.call(call.Heartbeat()), WAIT)
        await self.tls_station(port, new["ca.pem"], "CP_NEW")
        await self.refused(port, old["ca.pem"])
        await asyncio.wait_for(connected.call(call.Heartbeat()), WAIT)
        await self.stop(process)

    @async_test
    async def test_changed_path_applied(self):
        """station_tls pointed at other files is applied by a reload like new contents."""
        old, new = make_station_pki(self.directory("old"), STATION), make_station_pki(self.directory("new"), STATION)
        process, port = await self.proxy_with(old)
        with open(self.config_path) as stream:
            text = stream.read().replace(self.certificate, new["server.pem"]).replace(self.key, new["server-key.pem"])
        with open(self.config_path, "w") as out:
            out.write(text)
        self.assertIn("station_tls.certificate, station_tls.private_key applied", await self.reload(process))
        await self.tls_station(port, new["ca.pem"], "CP_NEW")
        await self.refused(port, old["ca.pem"])
        await self.stop(process)

    @async_test
    async def test_mismatched_key_refused_after_one_retry(self):
        """
        Only the certificate replaced (the key is the old one): the reload reads the files
        again 5 s later, then is refused with one line naming the file; the old certificate
        keeps serving.
        """
        old, new = make_station_pki(self.directory("old"), STATION), make_station_pki(self.directory("new"), STATION)
        process, port = await self.proxy_with(old)
        replace_file(new["server.pem"], self.certificate)
        process.send_signal(signal.SIGHUP)
        await self.read_until(process.stdout, r"does not match .*; reading the files again in 5 s")
        started = asyncio.get_event_loop().time()
        found, _ = await self.read_until(process.stdout, r"configuration reload refused: (.*)")
        self.assertGreater(asyncio.get_event_loop().time() - started, 4)
        self.assertEqual(
            found.group(1).strip(),
            f"configuration error in {self.config_path}: station_tls.private_key: {self.key} does not match"
            f" the certificate in {self.certificate}; the running configuration stays",
        )
        await self.tls_station(port, old["ca.pem"], STATION)
        await self.stop(process)

    @async_test
    async def test_expired_certificate_refused(self):
        """A renewal that is already expired is refused, naming the file; the old certificate keeps serving."""
        old = make_station_pki(self.directory("old"), STATION)
        expired = make_station_pki(self.directory("expired"), STATION, days=-0.5)
        process, port = await self.proxy_with(old)
        replace_file(expired["server-key.pem"], self.key)
        replace_file(expired["server.pem"], self.certificate)
        refusal = await self.reload(process)
        expected = rf"station_tls.certificate: the certificate in {re.escape(self.certificate)} \(CN=127.0.0.1\) expired"
        self.assertRegex(refusal, expected)
        await self.tls_station(port, old["ca.pem"], STATION)
        await self.stop(process)

    @async_test
    async def test_expiry_metric_and_alert_once(self):
        """
        A station certificate that expires in 3 days: /metrics shows its expiry time, one
        certificate_expiring alert is sent, and not again at a reload.
        """
        import treq
        from twisted.internet.defer import Deferred

        pki = make_station_pki(self.directory("soon"), STATION, days=3)
        _, central_port = await self.central()
        process = await self.run_daemon(
            'listen: "tcp:port=0:interface=127.0.0.1"\n'
            f'primary_url: "ws://127.0.0.1:{central_port}/ocpp/"\n'
            f'station_tls: {{certificate: "{pki["server.pem"]}", private_key: "{pki["server-key.pem"]}"}}\n'
            'status: {listen: "tcp:port=0:interface=127.0.0.1"}\n'
            "notify: {log: true, events: {certificate_expiring: true}}\n"
        )
        found, _ = await self.read_until(process.stdout, r"status page on .*port=(\d+)")
        status_port = found.group(1)
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        port = int(found.group(1))
        await self.read_until(process.stdout, r"ALERT station certificate CN=127.0.0.1 expires in 3 days")
        loop = asyncio.get_event_loop()
        response = await Deferred.asFuture(treq.get(f"http://127.0.0.1:{status_port}/metrics", persistent=False), loop)
        metrics = (await Deferred.asFuture(response.content(), loop)).decode()
        with open(pki["server.pem"], "rb") as stream:
            expires = x509.load_pem_x509_certificate(stream.read()).not_valid_after_utc.timestamp()
        (family,) = [
            family
            for family in text_string_to_metric_families(metrics)
            if family.name == "ocppproxy_certificate_expiry_timestamp_seconds"
        ]
        (sample,) = family.samples
        self.assertEqual(sample.labels, {"role": "station", "file": pki["server.pem"], "subject": "CN=127.0.0.1"})
        self.assertEqual(sample.value, expires)
        self.assertIn("reloaded", await self.reload(process))
        await self.tls_station(port, pki["ca.pem"], STATION)
        rest = await self.stop(process)
        self.assertNotIn("ALERT", rest)


class UpstreamClientCertificateReloadTests(TLSReloadTestCase):
    @async_test
    async def test_client_certificate_renewed(self):
        """
        The proxy's client certificate towards a wss:// upstream replaced, then SIGHUP:
        the upstream sees the new certificate on the next connection; the open link stays.
        """
        server = make_ca_and_server_cert(self.directory("server"))
        old = make_proxy_client_cert(self.directory("old"))
        new = make_proxy_client_cert(self.directory("new"), "renewed client CA")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server["server.pem"], server["server-key.pem"])
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(old["proxy-ca.pem"])
        context.load_verify_locations(new["proxy-ca.pem"])
        central, central_port = await self.central(context)
        work = self.directory("tls")
        certificate, key = os.path.join(work, "client.pem"), os.path.join(work, "client-key.pem")
        shutil.copyfile(old["proxy.pem"], certificate)
        shutil.copyfile(old["proxy-key.pem"], key)
        process, port = await self.daemon(
            f'primary_url: "wss://127.0.0.1:{central_port}/ocpp/"\n'
            f'upstream_tls: {{primary: {{ca_file: "{server["ca.pem"]}", client_cert: "{certificate}",'
            f' client_key: "{key}"}}}}\n'
        )
        first, _, _ = await connect_station(f"ws://127.0.0.1:{port}/", "CP_1")
        self.assertEqual((await first.call(BOOT)).interval, 100)
        (before,) = await central.wait_connections(1)
        self.assertEqual(presented(before), serial(certificate))
        replace_file(new["proxy-key.pem"], key)
        replace_file(new["proxy.pem"], certificate)
        self.assertIn("reloaded", await self.reload(process))
        second, _, _ = await connect_station(f"ws://127.0.0.1:{port}/", "CP_2")
        self.assertEqual((await second.call(BOOT)).interval, 100)
        _, after = await central.wait_connections(2)
        self.assertEqual(presented(after), serial(new["proxy.pem"]))
        await asyncio.wait_for(first.call(call.Heartbeat()), WAIT)
        self.assertFalse(before.closed.is_set())
        await self.stop(process)
