"""Tests for L{ocppproxy.notify.webhook}: against a receiver in memory (StubTreq), and over a real socket."""

from __future__ import annotations

import json

from treq.client import HTTPClient
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ocppproxy.config.model import WebhookSettings
from ocppproxy.notify.alert import Alert, DeliveryError
from ocppproxy.notify.delivery import DeliveryQueue
from ocppproxy.notify.httpbody import BODY_LIMIT
from ocppproxy.notify.webhook import WebhookChannel

from ..httpserver import RecordingReceiver, StallingReceiver, serve_locally

TOKEN = "Bearer whk-6f1c0b7e9a2d4c55"
PATH_SECRET = "T0123/B0456/xoxb-secret-path"
URL = f"https://hooks.example.com/services/{PATH_SECRET}?key=q-secret-99"
ALERT = Alert(
    "con_status_faulted",
    "CP_1",
    "Depot Süd, bay 3 (CP_1): connector 2 Faulted",
    "Station: Depot Süd, bay 3\nStation id: CP_1\n",
    name="Depot Süd, bay 3",
    time="2026-11-25T12:00:00.250Z",
    details={"connector": 2, "status": "Faulted", "error_code": "GroundFailure"},
)


def settings(url: str = URL, timeout: float | None = None) -> WebhookSettings:
    return WebhookSettings(url=url, headers=(("Authorization", TOKEN), ("X-Team", "ops")), timeout=timeout)


class WebhookChannelTests(SynchronousTestCase):
    def send(self, *codes: int, alert: Alert = ALERT):
        self.receiver = RecordingReceiver(*codes)
        return WebhookChannel(settings(), http=StubTreq(self.receiver)).send(alert)

    def refusal(self, *codes: int) -> DeliveryError:
        error = self.failureResultOf(self.send(*codes), DeliveryError).value
        for secret in (TOKEN, PATH_SECRET, "q-secret-99"):
            self.assertNotIn(secret, str(error))
        return error

    def test_json_body(self) -> None:
        """The POST carries station, human name, kind, time, subject, text and details as JSON."""
        self.assertIsNone(self.successResultOf(self.send(200)))
        (post,) = self.receiver.posts
        self.assertEqual(
            json.loads(post.body),
            {
                "station": "CP_1",
                "name": "Depot Süd, bay 3",
                "kind": "con_status_faulted",
                "time": "2026-11-25T12:00:00.250Z",
                "subject": ALERT.subject,
                "text": ALERT.text,
                "details": {"connector": 2, "status": "Faulted", "error_code": "GroundFailure"},
            },
        )
        self.assertEqual(post.headers["content-type"], "application/json; charset=utf-8")

    def test_configured_headers_sent(self) -> None:
        """Every configured header goes with the POST, to the configured path and query."""
        self.successResultOf(self.send(200))
        (post,) = self.receiver.posts
        self.assertEqual((post.headers["authorization"], post.headers["x-team"]), (TOKEN, "ops"))
        self.assertEqual(post.path, f"/services/{PATH_SECRET}")

    def test_summary_has_no_station(self) -> None:
        """An alert for several stations (a burst's summary) has station null."""
        summary = Alert("connected_to_proxy", "", "12 more stations: connected", "...", details={"stations": 12})
        self.successResultOf(self.send(204, alert=summary))
        body = json.loads(self.receiver.posts[0].body)
        self.assertEqual((body["station"], body["name"], body["details"]), (None, None, {"stations": 12}))

    def test_server_error_is_transient(self) -> None:
        """HTTP 5xx is transient, and names the webhook by its origin only."""
        error = self.refusal(503)
        self.assertTrue(error.transient)
        self.assertEqual(str(error), "the webhook at https://hooks.example.com refused the alert (HTTP 503): received")

    def test_server_text_is_one_line(self) -> None:
        """What the server answers is quoted on one line, at most 200 bytes of it."""

        class Chatty(Resource):
            isLeaf = True

            def render_POST(self, request):
                request.setResponseCode(400)
                return b"bad\r\nrequest\x1b[31m" + b"x" * 500

        error = self.failureResultOf(WebhookChannel(settings(), http=StubTreq(Chatty())).send(ALERT), DeliveryError)
        detail = str(error.value).split(": ", 1)[1]
        self.assertTrue(detail.startswith("bad request [31mxxx"), detail)
        self.assertLessEqual(len(detail), 200)

    def test_rate_limit_and_request_timeout_are_transient(self) -> None:
        """HTTP 429 and 408 are worth a retry."""
        self.assertTrue(self.refusal(429).transient)
        self.assertTrue(self.refusal(408).transient)

    def test_client_error_is_permanent(self) -> None:
        """HTTP 400, 401, 404: the request itself is wrong, retrying would not help."""
        for code in (400, 401, 404):
            self.assertFalse(self.refusal(code).transient, code)

    def test_secrets_echoed_by_the_server_are_redacted(self) -> None:
        """A server that quotes the token or the URL back does not bring them into the error."""

        class Echo(Resource):
            isLeaf = True

            def render_POST(self, request):
                request.setResponseCode(401)
                return f"bad token {TOKEN} for {URL}".encode()

        error = self.failureResultOf(WebhookChannel(settings(), http=StubTreq(Echo())).send(ALERT), DeliveryError)
        self.assertEqual(str(error.value).count("<redacted>"), 2)
        self.assertNotIn(TOKEN, str(error.value))

    def test_network_failure_is_transient(self) -> None:
        """A request that fails below HTTP is transient and names the origin only."""
        failing = Deferred()
        http = type("FailingHttp", (), {"post": lambda *args, **kwargs: failing})()
        sending = WebhookChannel(settings(), http=http).send(ALERT)
        failing.errback(ConnectionRefusedError("Connection refused"))
        error = self.failureResultOf(sending, DeliveryError).value
        self.assertTrue(error.transient)
        self.assertEqual(str(error), "cannot reach the webhook at https://hooks.example.com: Connection refused")

    def test_retried_through_the_delivery_queue(self) -> None:
        """Behind a delivery queue: a 503 is retried after retry_delay and then counted as sent."""
        receiver = RecordingReceiver(503, 200)
        clock = Clock()
        queue = DeliveryQueue("webhook", WebhookChannel(settings(), http=StubTreq(receiver)).send, clock, 10, 3, 10)
        logged: list[dict] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        queue.put(ALERT)
        self.assertEqual((len(receiver.posts), queue.sent), (1, 0))
        clock.advance(10)
        self.assertEqual((len(receiver.posts), queue.sent, queue.failed), (2, 1, 0))
        text = "\n".join(formatEvent(event) for event in logged)
        self.assertIn("retrying in 10 s", text)
        for secret in (TOKEN, PATH_SECRET, "q-secret-99"):
            self.assertNotIn(secret, text)


class WebhookDeadlineTests(SynchronousTestCase):
    """An answer whose body never ends, in memory (StubTreq) with the delivery queue on a clock."""

    def setUp(self) -> None:
        self.clock = Clock()

    def queue(self, receiver: Resource) -> tuple[DeliveryQueue, StubTreq]:
        http = StubTreq(receiver)
        channel = WebhookChannel(settings(), http=http)
        return DeliveryQueue("webhook", channel.send, self.clock, 10, 3, 10.0, deadline=30.0), http

    def test_headers_then_nothing_is_cut_at_the_deadline(self) -> None:
        """
        Headers and a first byte, then nothing: at the deadline the attempt fails and its
        connection is dropped; the retry, retry_delay later, delivers, and the next alert
        follows at once.
        """
        receiver = StallingReceiver(1)
        queue, http = self.queue(receiver)
        queue.put(ALERT)
        queue.put(Alert("station_boot", "CP_2", "CP_2 booted", "Station id: CP_2\n"))
        http.flush()
        self.clock.advance(29.9)
        http.flush()
        self.assertEqual((len(receiver.posts), queue.sent), (1, 0))
        self.assertNoResult(receiver.dropped[0])
        self.clock.advance(0.1)
        http.flush()
        self.successResultOf(receiver.dropped[0])
        self.clock.advance(10.0)
        http.flush()
        self.assertEqual([json.loads(post.body)["station"] for post in receiver.posts], ["CP_1", "CP_1", "CP_2"])
        self.assertEqual((queue.sent, queue.failed, self.clock.getDelayedCalls()), (2, 0, []))

    def test_endless_body_read_up_to_its_limit(self) -> None:
        """A 2xx whose body goes on past 64 KiB is judged on what came: delivered at once, the connection dropped."""
        receiver = StallingReceiver(1, sent=b"x" * (BODY_LIMIT + 1))
        queue, http = self.queue(receiver)
        queue.put(ALERT)
        http.flush()
        self.assertEqual((queue.sent, self.clock.getDelayedCalls()), (1, []))
        self.successResultOf(receiver.dropped[0])

    def test_long_refusal_is_quoted_from_the_first_bytes(self) -> None:
        """A refusal with an endless body is still judged, on its first 64 KiB, and quoted on one line."""

        class EndlessRefusal(Resource):
            isLeaf = True

            def render_POST(self, request):
                request.setResponseCode(503)
                request.write(b"busy " * (BODY_LIMIT // 4))
                return NOT_DONE_YET

        sending = WebhookChannel(settings(), http=StubTreq(EndlessRefusal())).send(ALERT)
        error = self.failureResultOf(sending, DeliveryError).value
        self.assertTrue(error.transient)
        self.assertIn("(HTTP 503): busy busy", str(error))


class WebhookOverNetworkTests(TestCase):
    timeout = 5

    def setUp(self) -> None:
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def test_delivery_to_a_real_http_server(self) -> None:
        """With real treq over a socket, the JSON body and the headers reach the server."""
        receiver = RecordingReceiver(200)
        port = serve_locally(self, receiver, reactor)
        channel = WebhookChannel(settings(f"http://127.0.0.1:{port}/hook?key=q-secret-99", 4), http=self.http)
        self.assertIsNone(await channel.send(ALERT))
        (post,) = receiver.posts
        self.assertEqual((json.loads(post.body)["station"], post.headers["authorization"]), ("CP_1", TOKEN))

    async def test_refused_connection_is_transient(self) -> None:
        """Nothing listening: a transient error naming the origin."""
        port = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        channel = WebhookChannel(settings(f"http://127.0.0.1:{number}/hook", 4), http=self.http)
        with self.assertRaises(DeliveryError) as caught:
            await channel.send(ALERT)
        self.assertTrue(caught.exception.transient)
        self.assertIn(f"cannot reach the webhook at http://127.0.0.1:{number}:", str(caught.exception))
