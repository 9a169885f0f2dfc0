"""X-Forwarded-For and X-Real-IP: the connection's address, or a trusted proxy's chain."""

from __future__ import annotations

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.core.forwarded import forwarded_headers, is_trusted, parse_address

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))


class ForwardedHeadersTests(SynchronousTestCase):
    def test_untrusted_peer_header_ignored(self):
        """From an address outside trusted_proxies the station's own header is never believed."""
        self.assertEqual(
            forwarded_headers("192.0.2.7", "203.0.113.9", TRUSTED),
            {"X-Forwarded-For": "192.0.2.7", "X-Real-IP": "192.0.2.7"},
        )

    def test_nobody_trusted_by_default(self):
        self.assertEqual(
            forwarded_headers("10.1.2.3", "203.0.113.9", ()),
            {"X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3"},
        )

    def test_trusted_proxy_chain_extended(self):
        """From a trusted proxy: its chain, then its own address; X-Real-IP is the chain's left-most address."""
        self.assertEqual(
            forwarded_headers("10.1.2.3", " 203.0.113.9 ,198.51.100.1", TRUSTED),
            {"X-Forwarded-For": "203.0.113.9, 198.51.100.1, 10.1.2.3", "X-Real-IP": "203.0.113.9"},
        )

    def test_trusted_proxy_without_header(self):
        for incoming in (None, "", " , "):
            self.assertEqual(
                forwarded_headers("10.1.2.3", incoming, TRUSTED),
                {"X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3"},
            )

    def test_real_ip_is_left_most_valid_address(self):
        """Entries that are no address are skipped for X-Real-IP; ports and brackets are removed."""
        self.assertEqual(
            forwarded_headers("10.1.2.3", "unknown, [2001:db8::5]:443, 203.0.113.9", TRUSTED)["X-Real-IP"],
            "2001:db8::5",
        )
        self.assertEqual(forwarded_headers("10.1.2.3", "unknown, _hidden", TRUSTED)["X-Real-IP"], "10.1.2.3")
        self.assertEqual(forwarded_headers("10.1.2.3", "203.0.113.9:4711", TRUSTED)["X-Real-IP"], "203.0.113.9")

    def test_ipv6_and_mapped_peers(self):
        """An IPv6 peer is matched against IPv6 networks; an IPv4-mapped one against IPv4 networks."""
        self.assertTrue(is_trusted("2001:db8::1", TRUSTED))
        self.assertTrue(is_trusted("::ffff:10.0.0.1", TRUSTED))
        self.assertFalse(is_trusted("::ffff:192.0.2.1", TRUSTED))
        self.assertFalse(is_trusted("unknown", TRUSTED))

    def test_parse_address(self):
        self.assertEqual(str(parse_address("192.0.2.1")), "192.0.2.1")
        self.assertEqual(str(parse_address("2001:db8::1")), "2001:db8::1")
        self.assertIsNone(parse_address("example.com"))
        self.assertIsNone(parse_address(""))
