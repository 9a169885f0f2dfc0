"""Tests for L{ocppproxy.notify.pushover}: against a stand-in API in memory, and over a real socket."""

from __future__ import annotations

import json

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ocppproxy.config.model import PushoverSettings
from ocppproxy.notify.alert import Alert, DeliveryError
from ocppproxy.notify.delivery import DeliveryQueue
from ocppproxy.notify.pushover import PushoverChannel

from ..httpserver import serve_locally

TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
USER = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
ALERT = Alert("cp_status_faulted", "CP1", "Ladepunkt Süd: Faulted", "Connector 0 is Faulted (GroundFailure)")
OK = (200, {"status": 1, "request": "5042853c-402d-4a18-abcb-168734a801de"})


class FakePushoverApi(Resource):
    """The messages API: records each form it gets, answers with the next (code, body) it was given."""

    isLeaf = True

    def __init__(self, *answers: tuple[int, object]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.forms: list[dict[str, str]] = []

    def render_POST(self, request) -> bytes:
        self.forms.append({key.decode(): values[0].decode() for key, values in request.args.items()})
        code, body = self.answers.pop(0)
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        return body if isinstance(body, bytes) else json.dumps(body).encode()


class StallingApi(FakePushoverApi):
    """
    Sends its first answer's headers and first byte, then nothing (a proxy in front of
    the API that hangs); answers the later ones like L{FakePushoverApi}. C{dropped}
    fires once the client dropped the stalled connection.
    """

    def __init__(self, *answers: tuple[int, object]) -> None:
        super().__init__(*answers)
        self.dropped: Deferred[None] | None = None

    def render_POST(self, request):
        if self.dropped is not None:
            return super().render_POST(request)
        self.forms.append({key.decode(): values[0].decode() for key, values in request.args.items()})
        request.setHeader(b"content-type", b"application/json")
        request.write(b"{")
        self.dropped = request.notifyFinish().addCallbacks(lambda _: self.fail(), lambda _: None)
        return NOT_DONE_YET

    @staticmethod
    def fail() -> None:
        raise AssertionError("the stalled answer was finished")


def settings(url: str = "https://api.pushover.net/1/messages.json", priority: int = 0) -> PushoverSettings:
    return PushoverSettings(user_key=USER, app_token=TOKEN, api_url=url, priority=priority)


class PushoverChannelTests(SynchronousTestCase):
    def send(self, *answers: tuple[int, object], alert: Alert = ALERT, priority: int = 0):
        self.api = FakePushoverApi(*answers)
        channel = PushoverChannel(settings(priority=priority), http=StubTreq(self.api))
        return channel.send(alert)

    def refusal(self, *answers: tuple[int, object]) -> DeliveryError:
        error = self.failureResultOf(self.send(*answers), DeliveryError).value
        self.assertNotIn(TOKEN, str(error))
        self.assertNotIn(USER, str(error))
        return error

    def test_form_fields(self) -> None:
        """The alert is posted as a form with token, user, title, message and priority."""
        self.assertIsNone(self.successResultOf(self.send(OK)))
        self.assertEqual(
            self.api.forms,
            [{"token": TOKEN, "user": USER, "title": ALERT.subject, "message": ALERT.text, "priority": "0"}],
        )

    def test_emergency_priority(self) -> None:
        """Priority 2 carries the retry and expire fields the API requires for it."""
        self.successResultOf(self.send(OK, priority=2))
        self.assertEqual((self.api.forms[0]["retry"], self.api.forms[0]["expire"]), ("60", "3600"))

    def test_long_texts_truncated(self) -> None:
        """Title and message are cut to the API's limits of 250 and 1024 characters."""
        self.successResultOf(self.send(OK, alert=Alert("k", "CP1", "s" * 300, "ü" * 2000)))
        form = self.api.forms[0]
        self.assertEqual((len(form["title"]), len(form["message"])), (250, 1024))
        self.assertTrue(form["message"].endswith("\N{HORIZONTAL ELLIPSIS}"))

    def test_status_zero_is_permanent(self) -> None:
        """A refusal with status 0 is permanent and names the API's errors."""
        error = self.refusal((400, {"user": "invalid", "errors": ["user identifier is invalid"], "status": 0}))
        self.assertFalse(error.transient)
        self.assertIn("HTTP 400", str(error))
        self.assertIn("user identifier is invalid", str(error))

    def test_status_not_one_with_200_is_permanent(self) -> None:
        """HTTP 200 without status 1 is no success."""
        error = self.refusal((200, {"status": 0, "errors": ["message cannot be blank"]}))
        self.assertFalse(error.transient)
        self.assertIn("message cannot be blank", str(error))

    def test_server_error_is_transient(self) -> None:
        """HTTP 5xx, even without a JSON body, is transient."""
        error = self.refusal((503, b"<html>Service Unavailable</html>"))
        self.assertTrue(error.transient)
        self.assertIn("HTTP 503", str(error))

    def test_rate_limit_is_transient(self) -> None:
        """HTTP 429 (rate limited) is transient."""
        self.assertTrue(self.refusal((429, {"status": 0, "errors": ["too many requests"]})).transient)

    def test_secrets_echoed_by_the_api_are_redacted(self) -> None:
        """Should the API quote the token or user key back, the error message still carries neither."""
        error = self.refusal((400, {"status": 0, "errors": [f"token {TOKEN} invalid", f"user {USER} unknown"]}))
        self.assertIn("token <redacted> invalid", str(error))

    def test_network_failure_is_transient(self) -> None:
        """A request that fails below HTTP is transient, and names the URL only."""
        failing = Deferred()
        http = type("FailingHttp", (), {"post": lambda *args, **kwargs: failing})()
        sending = PushoverChannel(settings(), http=http).send(ALERT)
        failing.errback(ConnectionRefusedError("Connection refused"))
        error = self.failureResultOf(sending, DeliveryError).value
        self.assertTrue(error.transient)
        self.assertEqual(
            str(error), "cannot reach the Pushover API at https://api.pushover.net/1/messages.json: Connection refused"
        )


class PushoverDeadlineTests(SynchronousTestCase):
    def test_headers_then_nothing_is_cut_at_the_deadline(self) -> None:
        """
        An answer that stops after its headers fails at the deadline, its connection
        dropped; the retry, retry_delay later, is delivered.
        """
        clock, api = Clock(), StallingApi(OK)
        http = StubTreq(api)
        queue = DeliveryQueue("pushover", PushoverChannel(settings(), http=http).send, clock, 10, 3, 5.0, deadline=20.0)
        queue.put(ALERT)
        http.flush()
        clock.advance(19.9)
        http.flush()
        self.assertNoResult(api.dropped)
        clock.advance(0.1)
        http.flush()
        self.successResultOf(api.dropped)
        clock.advance(5.0)
        http.flush()
        self.assertEqual((len(api.forms), queue.sent, queue.failed, clock.getDelayedCalls()), (2, 1, 0, []))


class PushoverOverNetworkTests(TestCase):
    timeout = 5

    def setUp(self) -> None:
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = HTTPClient(Agent(reactor, pool=pool))

    def serve(self, api: Resource) -> str:
        return f"http://127.0.0.1:{serve_locally(self, api, reactor)}/1/messages.json"

    async def test_delivery_to_a_real_http_server(self) -> None:
        """With real treq over a socket, the alert reaches the API and status 1 is success."""
        api = FakePushoverApi(OK)
        channel = PushoverChannel(settings(self.serve(api)), http=self.http)
        self.assertIsNone(await channel.send(ALERT))
        self.assertEqual((api.forms[0]["token"], api.forms[0]["title"]), (TOKEN, ALERT.subject))

    async def test_refused_connection_is_transient(self) -> None:
        """Nothing listening: a transient error."""
        port = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        url = f"http://127.0.0.1:{port.getHost().port}/1/messages.json"
        await port.stopListening()
        channel = PushoverChannel(settings(url), http=self.http)
        with self.assertRaises(DeliveryError) as caught:
            await channel.send(ALERT)
        self.assertTrue(caught.exception.transient)
        self.assertIn("cannot reach the Pushover API at " + url, str(caught.exception))
