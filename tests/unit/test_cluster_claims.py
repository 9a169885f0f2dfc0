"""The pure ownership rules of cluster mode: claim formats and which connection a claim replaces."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.cluster.claims import (
    Claim,
    ClaimError,
    LocalClaims,
    parse_announcement,
    parse_claim,
    replaces,
    station_key,
)


class FormatTests(SynchronousTestCase):
    def test_key_and_value(self):
        """One key per station id; the value is order, instance and serial."""
        self.assertEqual(station_key("CP 1"), "ocppproxy:station:CP 1")
        self.assertEqual(Claim("CP 1", "proxy-a", 7, 1234).value(), "1234 proxy-a 7")

    def test_round_trip(self):
        """A stored claim and an announcement read back as the claim (a station id may hold spaces)."""
        claim = Claim("CP 1", "proxy-a", 7, 1234)
        self.assertEqual(parse_claim("CP 1", claim.value()), claim)
        self.assertEqual(parse_announcement(claim.value() + " CP 1"), claim)

    def test_garbage_is_refused(self):
        for value in ("", "x proxy-a 1", "1 proxy-a", "1 proxy-a x", "1 a b c"):
            self.assertRaises(ClaimError, parse_claim, "CP", value)
        self.assertRaises(ClaimError, parse_announcement, "1 proxy-a 2")


class ReplacesTests(SynchronousTestCase):
    def test_newer_claim_elsewhere_replaces(self):
        self.assertTrue(replaces(Claim("CP", "b", 1, 20), Claim("CP", "a", 5, 10)))

    def test_older_claim_elsewhere_does_not(self):
        self.assertFalse(replaces(Claim("CP", "b", 1, 5), Claim("CP", "a", 5, 10)))

    def test_own_instance_never_does(self):
        """Replacement within one instance is the proxy's own business."""
        self.assertFalse(replaces(Claim("CP", "a", 6, 20), Claim("CP", "a", 5, 10)))

    def test_unnumbered_never_decides(self):
        self.assertFalse(replaces(Claim("CP", "b", 1, 20), Claim("CP", "a", 5)))


class LocalClaimsTests(SynchronousTestCase):
    def setUp(self):
        self.claims = LocalClaims("a")

    def test_serials_grow(self):
        """Each connection gets the next serial, whatever the station."""
        self.assertEqual([self.claims.connected(s).serial for s in ("CP1", "CP2", "CP1")], [1, 2, 3])
        self.assertEqual(sorted(claim.station for claim in self.claims.claims()), ["CP1", "CP2"])

    def test_heard_newer_replaces_numbered(self):
        claim = self.claims.connected("CP")
        self.assertFalse(self.claims.numbered("CP", claim.serial, 10))
        self.assertFalse(self.claims.heard(Claim("CP", "b", 1, 9)))
        self.assertTrue(self.claims.heard(Claim("CP", "b", 1, 11)))

    def test_own_echo_and_other_stations_ignored(self):
        claim = self.claims.connected("CP")
        self.claims.numbered("CP", claim.serial, 10)
        self.assertFalse(self.claims.heard(Claim("CP", "a", claim.serial, 10)))
        self.assertFalse(self.claims.heard(Claim("OTHER", "b", 1, 50)))

    def test_newer_heard_before_ours_is_numbered(self):
        """A newer claim heard while ours travels to Redis replaces ours once Redis numbers it lower."""
        claim = self.claims.connected("CP")
        self.assertFalse(self.claims.heard(Claim("CP", "b", 1, 12)))
        self.assertTrue(self.claims.numbered("CP", claim.serial, 10))

    def test_older_heard_before_ours_is_numbered(self):
        claim = self.claims.connected("CP")
        self.assertFalse(self.claims.heard(Claim("CP", "b", 1, 9)))
        self.assertFalse(self.claims.numbered("CP", claim.serial, 10))
        self.assertFalse(self.claims.heard(Claim("CP", "b", 1, 9)))

    def test_reply_for_a_replaced_connection_is_ignored(self):
        """Redis numbering the claim of a connection replaced here since decides nothing."""
        first = self.claims.connected("CP")
        second = self.claims.connected("CP")
        self.assertFalse(self.claims.numbered("CP", first.serial, 10))
        self.assertEqual(self.claims.claims(), [second])

    def test_ended_returns_the_claim_to_release_once(self):
        first = self.claims.connected("CP")
        second = self.claims.connected("CP")
        self.assertIsNone(self.claims.ended("CP", first.serial))
        self.claims.numbered("CP", second.serial, 10)
        self.assertEqual(self.claims.ended("CP", second.serial), Claim("CP", "a", second.serial, 10))
        self.assertIsNone(self.claims.ended("CP", second.serial))
        self.assertEqual(self.claims.claims(), [])

    def test_holder_found_by_a_refresh(self):
        claim = self.claims.connected("CP")
        self.claims.numbered("CP", claim.serial, 10)
        self.assertTrue(self.claims.holder_found("CP", claim.serial, Claim("CP", "b", 3, 11)))
        self.assertFalse(self.claims.holder_found("CP", claim.serial, Claim("CP", "b", 3, 9)))
        self.assertFalse(self.claims.holder_found("CP", claim.serial + 1, Claim("CP", "b", 3, 11)))

    def test_what_to_refresh_and_write_back(self):
        """Only numbered claims are refreshed; every claim is written back."""
        numbered = self.claims.connected("CP1")
        self.claims.numbered("CP1", numbered.serial, 10)
        waiting = self.claims.connected("CP2")
        self.assertEqual(self.claims.numbered_claims(), [Claim("CP1", "a", numbered.serial, 10)])
        self.assertEqual(set(self.claims.claims()), {Claim("CP1", "a", numbered.serial, 10), waiting})
