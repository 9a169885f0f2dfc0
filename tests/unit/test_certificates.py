"""
The TLS files a reload reads: each bad renewal is refused naming the file and why; the
expiry tiers (14, 7, 1 days, expired) told once each, on a Clock.
"""

from __future__ import annotations

import os
import shutil
import time

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ConfigError
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.core.expiry import DAY, EXPIRED, expiry_notices, tiers_reached
from ocppproxy.daemon.certificate_watch import CertificateWatch
from ocppproxy.wire.certificates import CertificateInfo, KeyMismatch, check_in_force, check_some_in_force
from ocppproxy.wire.tls_files import TLSFiles, TLSMaterial, read_tls_files

from ..certs import make_ca_and_server_cert, make_proxy_client_cert, make_station_pki

STATION = "CP_1"


class ValidationTests(SynchronousTestCase):
    """read_tls_files: every problem is one ConfigError naming the key, the file and why."""

    def setUp(self):
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.paths = make_station_pki(self.base, STATION)

    def read(self, **section):
        settings = {"certificate": "server.pem", "private_key": "server-key.pem", **section}
        config = config_from_mapping({"primary_url": "ws://127.0.0.1:1/", "station_tls": settings}, self.base)
        return read_tls_files(config, time.time())

    def refusal(self, **section) -> ConfigError:
        with self.assertRaises(ConfigError) as caught:
            self.read(**section)
        return caught.exception

    def test_good_files(self):
        """The station context and every certificate: the server's, the client CA's."""
        material = self.read(client_ca_file="ca.pem")
        self.assertIsNotNone(material.station)
        roles = sorted((info.role, os.path.basename(info.file), info.subject) for info in material.certificates)
        self.assertEqual(
            roles, [("ca", "ca.pem", "CN=ocppproxy test CA"), ("station", "server.pem", "CN=127.0.0.1")]
        )

    def test_check_client_id_swapped_with_the_files(self):
        """station_tls.check_client_id travels with the files: a reload that swaps them applies it."""
        tls = TLSFiles(self.read(client_ca_file="ca.pem"))
        self.assertEqual(tls.check_client_id(), "warn")
        tls.swap(self.read(client_ca_file="ca.pem", check_client_id="refuse"))
        self.assertEqual(tls.check_client_id(), "refuse")

    def test_missing_file(self):
        """A file gone since the configuration was checked."""
        os.remove(self.paths["server-key.pem"])
        error = self.refusal()
        self.assertEqual(error.key, "station_tls.private_key")
        self.assertEqual(error.reason, f"no such file: {self.paths['server-key.pem']}")

    def test_no_pem_data(self):
        """A certificate file holding no certificate."""
        with open(self.paths["server.pem"], "w") as out:
            out.write("not yet written\n")
        error = self.refusal()
        self.assertEqual(str(error), f"station_tls.certificate: no PEM certificate in {self.paths['server.pem']}")

    def test_key_not_matching(self):
        """A key of another certificate: a KeyMismatch (retried once on reload) naming both files."""
        shutil.copyfile(self.paths["client-key.pem"], self.paths["server-key.pem"])
        with self.assertRaises(KeyMismatch) as caught:
            self.read()
        self.assertEqual(
            str(caught.exception),
            f"station_tls.private_key: {self.paths['server-key.pem']} does not match the certificate in"
            f" {self.paths['server.pem']}",
        )

    def test_expired_certificate(self):
        """The proxy's certificate has expired: refused, with the file and the date."""
        make_station_pki(self.base, STATION, days=-0.5)
        error = self.refusal()
        self.assertEqual(error.key, "station_tls.certificate")
        self.assertRegex(error.reason, rf"^the certificate in {self.paths['server.pem']} \(CN=127.0.0.1\) expired on ")

    def test_expired_client_ca(self):
        """A CA file none of whose certificates is valid any more is refused."""
        info = CertificateInfo("ca", "/x/ca.pem", "CN=old", 0.0, 100.0, "00")
        with self.assertRaises(ConfigError) as caught:
            check_some_in_force([info], "station_tls.client_ca_file", 200.0)
        self.assertIn("no certificate in /x/ca.pem is valid now", str(caught.exception))

    def test_not_valid_yet(self):
        """A certificate whose validity starts later is refused, with the date."""
        info = CertificateInfo("station", "/x/cert.pem", "CN=later", 2 * DAY, 90 * DAY, "00")
        with self.assertRaises(ConfigError) as caught:
            check_in_force(info, "station_tls.certificate", DAY)
        self.assertEqual(
            str(caught.exception),
            "station_tls.certificate: the certificate in /x/cert.pem (CN=later)"
            " is not valid before 1970-01-03 00:00 UTC",
        )

    def test_upstream_client_certificate(self):
        """An upstream's client certificate and its CA: roles client and ca; a mismatched key names the upstream."""
        server = make_ca_and_server_cert(self.base)
        client = make_proxy_client_cert(self.base)
        tls = {"ca_file": server["ca.pem"], "client_cert": client["proxy.pem"], "client_key": client["proxy-key.pem"]}
        raw = {"primary_url": "wss://127.0.0.1:1/", "upstream_tls": {"primary": tls}}
        material = read_tls_files(config_from_mapping(raw, self.base), time.time())
        self.assertEqual(sorted(info.role for info in material.certificates), ["ca", "client"])
        self.assertEqual(material.upstream["primary"].hostname, "127.0.0.1")
        tls["client_key"] = client["other-key.pem"]
        with self.assertRaises(KeyMismatch) as caught:
            read_tls_files(config_from_mapping(raw, self.base), time.time())
        self.assertEqual(caught.exception.key, "upstream_tls.primary.client_key")


class TierTests(SynchronousTestCase):
    """core.expiry: 14, 7 and 1 days ahead and expired, each once; only the nearest tier reached is told."""

    def test_tiers(self):
        self.assertEqual(tiers_reached(20 * DAY), [])
        self.assertEqual(tiers_reached(14 * DAY), [14])
        self.assertEqual(tiers_reached(3 * DAY), [7, 14])
        self.assertEqual(tiers_reached(0.5 * DAY), [1, 7, 14])
        self.assertEqual(tiers_reached(-1), [EXPIRED, 1, 7, 14])

    def test_each_tier_once(self):
        """A certificate followed day by day is told at 14, 7, 1 days and when expired: four notices in all."""
        sent: set = set()
        told = []
        for day in range(30):
            now = day * DAY
            told += [(day, notice.tier) for notice in expiry_notices([("f", 20 * DAY)], now, sent)]
        self.assertEqual(told, [(6, 14), (13, 7), (19, 1), (20, EXPIRED)])

    def test_found_late_told_once(self):
        """A certificate first seen 3 days from expiry: one notice (the 7-day tier), not one for 14 as well."""
        sent: set = set()
        (notice,) = expiry_notices([("f", 3 * DAY)], 0, sent)
        self.assertEqual((notice.tier, notice.left), (7, 3 * DAY))
        self.assertEqual(expiry_notices([("f", 3 * DAY)], 3600, sent), [])


class FakeNotifier:
    def __init__(self):
        self.raised = []

    def certificate_expiry(self, key, claim, hold, details):
        self.raised.append((key, claim, details.get("days_left")))


class WatchTests(SynchronousTestCase):
    """The watch: at start, every hour on the Clock, and when asked after a reload."""

    def test_hourly_checks_on_the_clock(self):
        clock = Clock()
        info = CertificateInfo("station", "/x/cert.pem", "CN=proxy", 0.0, 16 * DAY, "ab")
        notifier = FakeNotifier()
        watch = CertificateWatch(TLSFiles(TLSMaterial(certificates=(info,))), notifier, clock)
        watch.startService()
        self.addCleanup(watch.stopService)
        self.assertEqual(notifier.raised, [])
        clock.pump([3600] * 49)
        self.assertEqual(notifier.raised, [("certificate_expiring", "ab:14", 14)])
        clock.pump([3600] * 24 * 15)
        self.assertEqual(
            notifier.raised,
            [
                ("certificate_expiring", "ab:14", 14),
                ("certificate_expiring", "ab:7", 7),
                ("certificate_expiring", "ab:1", 1),
                ("certificate_expired", "ab", None),
            ],
        )
        watch.check()
        self.assertEqual(len(notifier.raised), 4)


class ReloadRetryTests(SynchronousTestCase):
    """A key that does not match its certificate on SIGHUP: read again once, 5 s later on the reactor's clock."""

    def test_retried_once_after_five_seconds(self):
        from ocppproxy.daemon.reload import Reloader

        from .test_reload import InlineThreads, ThreadClock

        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        paths = make_station_pki(base, STATION)
        path = os.path.join(base, "ocppproxy.yaml")
        with open(path, "w") as out:
            out.write('primary_url: "ws://127.0.0.1:1/"\n')
            out.write("station_tls: {certificate: server.pem, private_key: server-key.pem}\n")
        clock = ThreadClock()
        clock.advance(time.time())
        from ocppproxy.config.load import load_config

        running = load_config(path)
        tls = TLSFiles(read_tls_files(running, clock.seconds()))
        notifier = type("Notifier", (), {"running": True, "reconfigure": lambda *args, **kwargs: None})()
        swapped = []
        reloader = Reloader(
            path, running, notifier, clock, threads=InlineThreads(), tls=tls, tls_swapped=lambda: swapped.append(1)
        )
        os.makedirs(os.path.join(base, "new"))
        renewed = make_station_pki(os.path.join(base, "new"), STATION)
        shutil.copyfile(renewed["server.pem"], paths["server.pem"])
        reloading = reloader.reload()
        self.assertNoResult(reloading)
        clock.advance(4.9)
        self.assertNoResult(reloading)
        shutil.copyfile(renewed["server-key.pem"], paths["server-key.pem"])
        clock.advance(0.1)
        self.assertIsNotNone(self.successResultOf(reloading))
        self.assertEqual(swapped, [1])
        self.assertIsNot(tls.station_context(), None)
        self.assertEqual(
            [info.fingerprint for info in tls.certificates if info.role == "station"],
            [info.fingerprint for info in read_tls_files(running, clock.seconds()).certificates],
        )
