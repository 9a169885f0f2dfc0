"""The Authorization each upstream gets: the station's, none, or the proxy's Basic credentials."""

from __future__ import annotations

import base64
from types import SimpleNamespace

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.core.upstream_auth import BASIC, DROP, PASS, CredentialsError, UpstreamAuth, authorization_for
from ocppproxy.relay.connection_options import upstream_headers

STATION_AUTH = "Basic Q1BfMTpzdGF0aW9uLXNlY3JldA=="


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class AuthorizationForTests(SynchronousTestCase):
    def test_default_passes_the_station_header(self):
        """Without settings the station's header goes unchanged; a station without one sends none."""
        self.assertEqual(authorization_for(None, STATION_AUTH, "CP_1"), STATION_AUTH)
        self.assertEqual(authorization_for(UpstreamAuth(PASS), STATION_AUTH, "CP_1"), STATION_AUTH)
        self.assertIsNone(authorization_for(None, None, "CP_1"))
        self.assertIsNone(authorization_for(None, "", "CP_1"))

    def test_drop(self):
        """drop sends no Authorization, whatever the station sent."""
        self.assertIsNone(authorization_for(UpstreamAuth(DROP), STATION_AUTH, "CP_1"))

    def test_basic_with_station_id(self):
        """{station_id} in the username is the station's id; the station's own header is replaced."""
        auth = UpstreamAuth(BASIC, "{station_id}", "pä55")
        self.assertEqual(authorization_for(auth, STATION_AUTH, "CP_1"), basic("CP_1", "pä55"))
        self.assertEqual(authorization_for(auth, None, "CP_2"), basic("CP_2", "pä55"))

    def test_basic_fixed_username_and_other_braces(self):
        """A username without the placeholder is sent as is; other braces are not templates."""
        auth = UpstreamAuth(BASIC, "proxy-{id}-{station_id}", "pw")
        self.assertEqual(authorization_for(auth, None, "CP_1"), basic("proxy-{id}-CP_1", "pw"))

    def test_station_id_with_colon(self):
        """A station id with ':' cannot be a Basic user-id: refused, with a text that holds no secret."""
        auth = UpstreamAuth(BASIC, "{station_id}", "topsecret")
        with self.assertRaises(CredentialsError) as caught:
            authorization_for(auth, None, "CP:1")
        self.assertNotIn("topsecret", str(caught.exception))

    def test_password_not_in_repr(self):
        self.assertNotIn("topsecret", repr(UpstreamAuth(BASIC, "u", "topsecret")))


def request(**headers):
    return SimpleNamespace(headers=headers)


class UpstreamHeadersTests(SynchronousTestCase):
    """upstream_headers: each upstream's handshake headers, by name."""

    def config(self, **settings):
        return config_from_mapping(
            {"primary_url": "ws://127.0.0.1:9001/", "secondary_url": "ws://127.0.0.1:9002/", **settings}
        )

    def test_default_both_upstreams_get_the_station_credentials(self):
        headers = upstream_headers(request(authorization=STATION_AUTH), "192.0.2.7", "CP_1", self.config())
        expected = {"Authorization": STATION_AUTH, "X-Forwarded-For": "192.0.2.7", "X-Real-IP": "192.0.2.7"}
        self.assertEqual(headers, {"primary": expected, "secondary": expected})

    def test_without_credentials_one_dictionary_for_every_upstream(self):
        """A station without credentials: every upstream gets the same headers, one dictionary, not a copy each."""
        headers = upstream_headers(request(), "192.0.2.7", "CP_1", self.config())
        self.assertEqual(headers["primary"], {"X-Forwarded-For": "192.0.2.7", "X-Real-IP": "192.0.2.7"})
        self.assertIs(headers["primary"], headers["secondary"])

    def test_per_upstream(self):
        config = self.config(upstream_auth={"secondary": {"username": "{station_id}", "password": "pw"}})
        headers = upstream_headers(request(authorization=STATION_AUTH), "192.0.2.7", "CP_1", config)
        self.assertEqual(headers["primary"]["Authorization"], STATION_AUTH)
        self.assertEqual(headers["secondary"]["Authorization"], basic("CP_1", "pw"))
        config = self.config(upstream_auth={"primary": "drop"})
        headers = upstream_headers(request(authorization=STATION_AUTH), "192.0.2.7", "CP_1", config)
        self.assertNotIn("Authorization", headers["primary"])
        self.assertEqual(headers["secondary"]["Authorization"], STATION_AUTH)

    def test_unusable_credentials_are_left_out_with_a_warning(self):
        """A station id with ':' gets no Authorization upstream, and a warning without the password."""
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        config = self.config(upstream_auth={"primary": {"username": "{station_id}", "password": "topsecret"}})
        headers = upstream_headers(request(authorization=STATION_AUTH), "192.0.2.7", "CP:1", config)
        self.assertNotIn("Authorization", headers["primary"])
        self.assertEqual(headers["secondary"]["Authorization"], STATION_AUTH)
        texts = [formatEvent(event) for event in events]
        self.assertTrue(any("no credentials sent to primary" in text for text in texts), texts)
        self.assertFalse(any("topsecret" in text or STATION_AUTH in text for text in texts), texts)

    def test_station_forwarded_for_is_ignored_without_trusted_proxies(self):
        headers = upstream_headers(request(**{"x-forwarded-for": "203.0.113.9"}), "192.0.2.7", "CP_1", self.config())
        self.assertEqual(headers["primary"], {"X-Forwarded-For": "192.0.2.7", "X-Real-IP": "192.0.2.7"})

    def test_trusted_proxy_forwarded_for_is_honoured(self):
        config = self.config(trusted_proxies=["192.0.2.0/24"])
        headers = upstream_headers(request(**{"x-forwarded-for": "203.0.113.9"}), "192.0.2.7", "CP_1", config)
        self.assertEqual(
            headers["secondary"], {"X-Forwarded-For": "203.0.113.9, 192.0.2.7", "X-Real-IP": "203.0.113.9"}
        )
