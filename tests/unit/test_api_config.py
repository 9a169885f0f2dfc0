"""The api section and status.require_token (issue 26), and ocppproxy-ctl's address and token."""

from __future__ import annotations

import argparse

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.api.ctl import CtlError, api_token, api_url, url_of_endpoint
from ocppproxy.config.model import ConfigError
from ocppproxy.config.parse import config_from_mapping

DIGEST = "ab" * 32
BASE = {"primary_url": "ws://127.0.0.1:9001/"}


def parse(**keys):
    return config_from_mapping({**BASE, **keys})


class ApiSectionTests(SynchronousTestCase):
    def test_defaults(self):
        """Without the section: no API; a token's scope defaults to read, its actions to all; history 200."""
        self.assertIsNone(parse().api)
        api = parse(api={"listen": "tcp:9200", "tokens": [{"name": "a", "sha256": DIGEST.upper()}]}).api
        self.assertEqual((api.listen, api.history), ("tcp:9200", 200))
        (token,) = api.tokens
        self.assertEqual((token.scope, token.actions, token.sha256), ("read", None, DIGEST))

    def test_errors_name_the_key_and_never_quote_the_digest(self):
        """A bad digest, scope, missing name, duplicate name: one line naming the key."""
        cases = [
            ({"tokens": [{"name": "a", "sha256": "secret-ish"}]}, "api.tokens.sha256"),
            ({"tokens": [{"name": "a", "sha256": DIGEST, "scope": "admin"}]}, "api.tokens.scope"),
            ({"tokens": [{"sha256": DIGEST}]}, "api.tokens.name"),
            ({"tokens": [{"name": "a", "sha256": DIGEST}, {"name": "a", "sha256": DIGEST}]}, "api.tokens.name"),
            ({"tokens": [{"name": "a", "sha256": DIGEST, "secret": 1}]}, "api.tokens"),
            ({"history": -1}, "api.history"),
        ]
        for section, key in cases:
            error = self.assertRaises(ConfigError, parse, api=section)
            self.assertIn(key, str(error))
            self.assertNotIn("secret-ish", str(error))

    def test_require_token_needs_tokens(self):
        """status.require_token: true without api.tokens is refused; with them (and no api.listen) accepted."""
        error = self.assertRaises(ConfigError, parse, status={"listen": "tcp:9100", "require_token": True})
        self.assertIn("status.require_token", str(error))
        config = parse(status={"listen": "tcp:9100", "require_token": True}, api={"tokens": [{"name": "a", "sha256": DIGEST}]})
        self.assertTrue(config.status_require_token)
        self.assertIsNone(config.api.listen)


class CtlAddressTests(SynchronousTestCase):
    def options(self, **values):
        return argparse.Namespace(**{"url": None, "config": None, "token_file": None, **values})

    def test_endpoint_strings(self):
        """tcp: and ssl: endpoint strings give the API's URL; 0.0.0.0 is reached on 127.0.0.1."""
        self.assertEqual(url_of_endpoint("tcp:port=9200:interface=127.0.0.1"), "http://127.0.0.1:9200")
        self.assertEqual(url_of_endpoint("tcp:9200"), "http://127.0.0.1:9200")
        self.assertEqual(url_of_endpoint("ssl:port=9443:interface=0.0.0.0:privateKey=k"), "https://127.0.0.1:9443")
        self.assertRaises(CtlError, url_of_endpoint, "systemd:domain=INET:index=0")

    def test_order(self):
        """--url, then OCPPPROXY_API, then -c; the token from OCPPPROXY_TOKEN, else a file."""
        self.assertEqual(api_url(self.options(url="http://x:1/"), {"OCPPPROXY_API": "http://y:2"}), "http://x:1")
        self.assertEqual(api_url(self.options(), {"OCPPPROXY_API": "http://y:2"}), "http://y:2")
        path = self.mktemp()
        with open(path, "w") as out:
            out.write('api: {listen: "tcp:port=9200:interface=127.0.0.1"}\n')
        self.assertEqual(api_url(self.options(config=path), {}), "http://127.0.0.1:9200")
        self.assertEqual(self.assertRaises(CtlError, api_url, self.options(), {}).code, 2)
        with open(path, "w") as out:
            out.write("tok-1\nignored\n")
        self.assertEqual(api_token(self.options(token_file=path), {}), "tok-1")
        self.assertEqual(api_token(self.options(token_file=path), {"OCPPPROXY_TOKEN": "env"}), "env")
        self.assertEqual(self.assertRaises(CtlError, api_token, self.options(), {}).code, 2)
