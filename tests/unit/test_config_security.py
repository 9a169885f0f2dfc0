"""upstream_auth, upstream_tls and trusted_proxies: validation, one line naming the key, no secret quoted."""

from __future__ import annotations

import ipaddress
import os
import ssl
from urllib.parse import urlsplit

import yaml
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ConfigError, UpstreamTLS
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.core.upstream_auth import BASIC, DROP, PASS, UpstreamAuth
from ocppproxy.daemon.reload import ConfigChanges, compare_configs
from ocppproxy.wire.upstream_tls import client_tls_factory

from ..certs import make_ca_and_server_cert, make_proxy_client_cert
from ..startup import config_error_output

PRIMARY = "ws://127.0.0.1:9001/ocpp/"
SECRET = "Zz9-very-secret"


class UpstreamAuthConfigTests(SynchronousTestCase):
    def error(self, value) -> ConfigError:
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping({"primary_url": PRIMARY, "upstream_auth": value})
        self.assertNotIn(SECRET, str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))
        return caught.exception

    def test_default_is_pass(self):
        self.assertEqual(config_from_mapping({"primary_url": PRIMARY}).upstream_auth, {})

    def test_modes(self):
        config = config_from_mapping(
            {
                "primary_url": PRIMARY,
                "upstream_auth": {"primary": "pass", "secondary": {"username": "{station_id}", "password": SECRET}},
            }
        )
        self.assertEqual(config.upstream_auth["primary"], UpstreamAuth(PASS))
        self.assertEqual(config.upstream_auth["secondary"], UpstreamAuth(BASIC, "{station_id}", SECRET))
        self.assertNotIn(SECRET, repr(config))
        drop = config_from_mapping({"primary_url": PRIMARY, "upstream_auth": {"secondary": "drop"}})
        self.assertEqual(drop.upstream_auth["secondary"], UpstreamAuth(DROP))

    def test_unknown_upstream(self):
        error = self.error({"tertiary": "drop"})
        self.assertEqual(error.key, "upstream_auth.tertiary")

    def test_not_a_mapping(self):
        self.assertEqual(
            str(self.error(SECRET)), "upstream_auth: must be a mapping with primary and/or secondary, got a string"
        )

    def test_password_in_place_of_the_mode_is_not_quoted(self):
        error = self.error({"primary": SECRET})
        self.assertEqual(
            str(error),
            "upstream_auth.primary: must be pass, drop or a mapping with username and password, got a string",
        )

    def test_missing_password(self):
        self.assertEqual(
            str(self.error({"primary": {"username": "u"}})), "upstream_auth.primary.password: is mandatory"
        )

    def test_missing_username(self):
        self.assertEqual(self.error({"primary": {"password": SECRET}}).key, "upstream_auth.primary.username")

    def test_unknown_key(self):
        error = self.error({"secondary": {"username": "u", "password": SECRET, "pasword": SECRET}})
        self.assertEqual(error.key, "upstream_auth.secondary.pasword")
        self.assertIn("unknown key", error.reason)

    def test_wrong_types(self):
        self.assertEqual(
            str(self.error({"primary": {"username": "u", "password": 1234}})),
            "upstream_auth.primary.password: must be a non-empty string, got a number",
        )
        self.assertEqual(
            self.error({"primary": {"username": ["u"], "password": SECRET}}).key, "upstream_auth.primary.username"
        )
        self.assertEqual(
            self.error({"primary": {"username": "u", "password": ""}}).key, "upstream_auth.primary.password"
        )

    def test_colon_or_control_characters(self):
        self.assertEqual(
            self.error({"primary": {"username": "a:b", "password": SECRET}}).key, "upstream_auth.primary.username"
        )
        error = self.error({"primary": {"username": "u", "password": SECRET + "\r\nX: y"}})
        self.assertEqual(str(error), "upstream_auth.primary.password: must not contain control characters")


class TrustedProxiesConfigTests(SynchronousTestCase):
    def test_default_empty(self):
        self.assertEqual(config_from_mapping({"primary_url": PRIMARY}).trusted_proxies, ())

    def test_addresses_and_networks(self):
        config = config_from_mapping({"primary_url": PRIMARY, "trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]})
        self.assertEqual(
            config.trusted_proxies,
            (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")),
        )

    def error(self, value) -> ConfigError:
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping({"primary_url": PRIMARY, "trusted_proxies": value})
        return caught.exception

    def test_errors(self):
        self.assertEqual(self.error("10.0.0.1").key, "trusted_proxies")
        self.assertEqual(
            str(self.error(["10.0.0.1", "10.0.0.1/8"])), "trusted_proxies[1]: 10.0.0.1/8 has host bits set"
        )
        self.assertEqual(self.error(["proxy.example.com"]).key, "trusted_proxies[0]")
        self.assertEqual(self.error([10]).key, "trusted_proxies[0]")


class UpstreamTLSConfigTests(SynchronousTestCase):
    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.server = make_ca_and_server_cert(self.directory)
        self.client = make_proxy_client_cert(self.directory)

    def config(self, primary=None, secondary=None, primary_url="wss://127.0.0.1:9001/", **more):
        settings = {k: v for k, v in (("primary", primary), ("secondary", secondary)) if v is not None}
        raw = {"primary_url": primary_url, "secondary_url": "wss://localhost:9002/", "upstream_tls": settings, **more}
        return config_from_mapping(raw, self.directory)

    def error(self, *args, **kwargs) -> ConfigError:
        with self.assertRaises(ConfigError) as caught:
            client_tls_factory(self.config(*args, **kwargs))
        self.assertNotIn("\n", str(caught.exception))
        return caught.exception

    def test_paths_relative_to_the_config_file(self):
        config = self.config(primary={"ca_file": "ca.pem", "client_cert": "proxy.pem", "client_key": "proxy-key.pem"})
        self.assertEqual(
            config.upstream_tls["primary"],
            UpstreamTLS(self.server["ca.pem"], self.client["proxy.pem"], self.client["proxy-key.pem"]),
        )
        options = client_tls_factory(config)
        self.assertEqual(sorted(options), ["primary", "secondary"])
        # Each verifies certificates and host names, TLS 1.2 at least; the secondary (no files of its own) too.
        for tls in options.values():
            context = tls.context
            self.assertEqual((context.verify_mode, context.check_hostname), (ssl.CERT_REQUIRED, True))
            self.assertEqual(context.minimum_version, ssl.TLSVersion.TLSv1_2)
        self.assertEqual(options["primary"].hostname, urlsplit(config.primary_url).hostname)

    def test_no_tls_options_for_ws_upstreams(self):
        config = config_from_mapping({"primary_url": PRIMARY})
        self.assertEqual(client_tls_factory(config), {})

    def test_only_for_wss(self):
        error = self.error(primary={"ca_file": "ca.pem"}, primary_url=PRIMARY)
        self.assertEqual(str(error), "upstream_tls.primary: is set, but primary_url is not a wss:// URL")

    def test_missing_file(self):
        error = self.error(secondary={"ca_file": "nope.pem"})
        self.assertEqual(str(error), f"upstream_tls.secondary.ca_file: no such file: {self.directory}/nope.pem")

    def test_cert_and_key_go_together(self):
        error = self.error(primary={"client_cert": "proxy.pem"})
        self.assertEqual(
            str(error), "upstream_tls.primary.client_key: is mandatory when upstream_tls.primary.client_cert is set"
        )
        self.assertEqual(self.error(primary={"client_key": "proxy-key.pem"}).key, "upstream_tls.primary.client_cert")

    def test_unknown_key(self):
        self.assertEqual(self.error(primary={"cert": "proxy.pem"}).key, "upstream_tls.primary.cert")

    def test_key_not_matching_the_certificate(self):
        error = self.error(primary={"client_cert": "proxy.pem", "client_key": "other-key.pem"})
        self.assertEqual(error.key, "upstream_tls.primary.client_key")
        self.assertIn("does not match", error.reason)

    def test_encrypted_or_wrong_key(self):
        for name in ("encrypted-key.pem", "proxy.pem"):
            error = self.error(primary={"client_cert": "proxy.pem", "client_key": name})
            self.assertEqual(error.key, "upstream_tls.primary.client_key")
            self.assertIn("is not an unencrypted PEM private key", error.reason)

    def test_not_a_certificate(self):
        self.assertEqual(self.error(secondary={"ca_file": "proxy-key.pem"}).key, "upstream_tls.secondary.ca_file")
        error = self.error(primary={"client_cert": "proxy-key.pem", "client_key": "proxy-key.pem"})
        self.assertEqual(error.key, "upstream_tls.primary.client_cert")


class StartUpAndReloadTests(SynchronousTestCase):
    """The new keys at start-up (twistd's options) and at a reload."""

    def test_bad_client_key_stops_start_up_with_one_line(self):
        """A key that does not match its certificate: one line naming the key on stderr, exit status 2."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        make_proxy_client_cert(directory)
        path = os.path.join(directory, "ocppproxy.yaml")
        with open(path, "w") as out:
            out.write(
                'primary_url: "wss://127.0.0.1:9001/"\n'
                "upstream_tls: {primary: {client_cert: proxy.pem, client_key: other-key.pem}}\n"
            )
        self.assertEqual(
            config_error_output(self, path),
            f"ocppproxy: configuration error in {path}: upstream_tls.primary.client_key:"
            f" {directory}/other-key.pem does not match the certificate in {directory}/proxy.pem\n",
        )

    def test_changes_need_a_restart_and_are_named_not_quoted(self):
        """upstream_auth and trusted_proxies apply after a restart; a reload names the keys, never a password."""
        old = config_from_mapping({"primary_url": PRIMARY})
        new = config_from_mapping(
            {
                "primary_url": PRIMARY,
                "upstream_auth": {"secondary": {"username": "u", "password": SECRET}},
                "trusted_proxies": ["10.0.0.0/8"],
            }
        )
        changes = compare_configs(old, new)
        self.assertEqual(changes, ConfigChanges((), ("upstream_auth.secondary", "trusted_proxies")))
        self.assertNotIn(SECRET, repr(changes))


class CredentialsInUrlTests(SynchronousTestCase):
    def test_refused_without_quoting(self):
        """user:password@ in an upstream URL is refused (Autobahn would ignore it, the log would show it), unquoted."""
        for key, url in (
            ("primary_url", f"wss://cs:{SECRET}@example.com/ocpp/"),
            ("secondary_url", f"http://u:{SECRET}@h/"),
        ):
            with self.assertRaises(ConfigError) as caught:
                config_from_mapping({"primary_url": PRIMARY, key: url})
            self.assertEqual(
                str(caught.exception), f"{key}: must not hold credentials (user:password@host): use upstream_auth"
            )


class ExampleFileTests(SynchronousTestCase):
    """The commented-out examples of etc/ocppproxy.yaml are valid once switched on."""

    def section(self, key: str) -> str:
        example = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "etc", "ocppproxy.yaml")
        with open(example, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
        start = lines.index(next(line for line in lines if line.startswith(f"# {key}:")))
        block = [lines[start]]
        for line in lines[start + 1 :]:
            if not line.startswith("#   "):
                break
            block.append(line)
        return "\n".join(line[2:] for line in block)

    def test_upstream_auth_and_trusted_proxies_examples(self):
        raw = yaml.safe_load(self.section("upstream_auth") + "\n" + self.section("trusted_proxies"))
        config = config_from_mapping({"primary_url": PRIMARY, **raw})
        self.assertEqual(config.upstream_auth, {"primary": UpstreamAuth(PASS), "secondary": UpstreamAuth(DROP)})
        self.assertEqual(len(config.trusted_proxies), 3)

    def test_upstream_tls_example(self):
        """The upstream_tls example, with its files in place, gives both upstreams a CA and the primary a client certificate."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        server, client = make_ca_and_server_cert(directory), make_proxy_client_cert(directory)
        for name, source in (
            ("csms1-ca.pem", server["ca.pem"]),
            ("csms2-ca.pem", server["ca.pem"]),
            ("proxy-client.pem", client["proxy.pem"]),
            ("proxy-client-key.pem", client["proxy-key.pem"]),
        ):
            os.link(source, os.path.join(directory, name))
        raw = yaml.safe_load(self.section("upstream_tls"))
        urls = {"primary_url": "wss://127.0.0.1:9001/", "secondary_url": "wss://127.0.0.1:9002/"}
        config = config_from_mapping({**urls, **raw}, directory)
        self.assertEqual(sorted(client_tls_factory(config)), ["primary", "secondary"])
        self.assertEqual(config.upstream_tls["secondary"].client_cert, None)
