"""The API's token check, scopes, in-flight bound and throttled refusal notices (ocppproxy.core.api_auth)."""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ApiToken
from ocppproxy.core import api_auth
from ocppproxy.core.api_auth import InFlight, Notices, Tokens, allows_action, bearer


def token(name: str, secret: str, scope: str = "read", actions=None) -> ApiToken:
    return ApiToken(name, hashlib.sha256(secret.encode()).hexdigest(), scope, actions)


class TokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.tokens = Tokens([token("viewer", "r-secret"), token("ops", "o-secret", "operate", frozenset({"Reset"}))])

    def test_bearer_header(self):
        """Only 'Bearer <token>' (any case of the scheme) gives a token."""
        self.assertEqual(bearer(b"Bearer abc"), "abc")
        self.assertEqual(bearer("bearer  abc "), "abc")
        self.assertIsNone(bearer(b"Basic abc"))
        self.assertIsNone(bearer(b"Bearer "))
        self.assertIsNone(bearer(None))

    def test_unknown_or_missing_token_is_401(self):
        """No token, or one whose digest matches none: 401."""
        self.assertEqual(self.tokens.authorize(None, "read"), (401, None))
        self.assertEqual(self.tokens.authorize("nope", "read"), (401, None))

    def test_scope(self):
        """A read token may read, not operate (403); an operate token may both."""
        self.assertEqual(self.tokens.authorize("r-secret", "read")[0], 200)
        code, found = self.tokens.authorize("r-secret", "operate")
        self.assertEqual((code, found.name), (403, "viewer"))
        self.assertEqual(self.tokens.authorize("o-secret", "read")[0], 200)
        self.assertEqual(self.tokens.authorize("o-secret", "operate")[0], 200)

    def test_compared_in_constant_time(self):
        """Every token's digest is compared with hmac.compare_digest, none skipped once one matched."""
        compared = []
        original = api_auth.hmac.compare_digest

        def spy(a, b):
            compared.append(b)
            return original(a, b)

        self.patch(api_auth.hmac, "compare_digest", spy)
        self.tokens.identify("r-secret")
        self.assertEqual(len(compared), 2)

    def test_actions(self):
        """An operate token's actions allow-list; none: every action."""
        ops = self.tokens.identify("o-secret")
        self.assertTrue(allows_action(ops, "Reset"))
        self.assertFalse(allows_action(ops, "UnlockConnector"))
        self.assertTrue(allows_action(token("x", "y", "operate"), "UnlockConnector"))


class InFlightTests(SynchronousTestCase):
    def test_at_most_ten_per_token(self):
        """The eleventh request of one token is refused; another token is not affected; leaving frees a place."""
        flight = InFlight()
        self.assertTrue(all(flight.enter("a") for _ in range(10)))
        self.assertFalse(flight.enter("a"))
        self.assertTrue(flight.enter("b"))
        flight.leave("a")
        self.assertTrue(flight.enter("a"))
        self.assertEqual(flight.count("a"), 10)


class NoticeTests(SynchronousTestCase):
    def test_one_line_a_minute_per_kind(self):
        """The first refusal of a kind is logged, the next within a minute not, then one line with the count."""
        notices = Notices()
        self.assertEqual(notices.due("401", 0.0), 0)
        self.assertIsNone(notices.due("401", 1.0))
        self.assertIsNone(notices.due("401", 2.0))
        self.assertEqual(notices.due("403", 2.0), 0)
        self.assertEqual(notices.due("401", 61.0), 2)
