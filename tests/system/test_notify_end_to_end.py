"""
Alerts end to end: the real proxy and notifier between the `ocpp` library's charge point
and central systems, delivering to a real SMTP server and a real HTTP server standing in
for the Pushover API, all on 127.0.0.1; and the installed daemon under ``twistd`` behind
a webhook that stalls.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from email import message_from_bytes, policy
from urllib.parse import parse_qs

from ocpp.v16 import call
from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Site

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.daemon.tap import build_notifier
from ocppproxy.relay.registry import StationSessions
from ocppproxy.relay.proxy import ProxyService

from ..e2e import ProxyTestCase, async_test
from ..httpserver import RecordingReceiver, StallingReceiver, serve_locally
from ..peers import WAIT, CentralSystem, connect_station
from ..smtpserver import SmtpTestServer
from .test_daemon import DaemonTestCase

SMTP_PASSWORD = "smtp-pa55word-xyz"
PUSHOVER_TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
PUSHOVER_USER = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
WEBHOOK_TOKEN = "whk-e2e-5a1f9c"
APPRISE_TOKEN = "ntfy-tk-83b2d0"


class FakePushover(Resource):
    """Answers like the Pushover API and records every form posted."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[dict[str, str]] = []

    def render_POST(self, request):
        form = parse_qs(request.content.read().decode("utf-8"))
        self.posts.append({key: values[0] for key, values in form.items()})
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"status": 1, "request": "r-%d" % len(self.posts)}).encode()


async def until(condition, timeout: float = WAIT):
    """Wait at most C{timeout} seconds for C{condition()} to hold, checking every 20 ms."""
    loop = asyncio.get_event_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class AlertTests(ProxyTestCase):
    async def start_everything(self, events, primary_down=False, channels=None):
        """Central system, SMTP and Pushover stand-ins, proxy and notifier; C{channels} replaces e-mail and Pushover."""
        central = CentralSystem(100)
        central_port = await central.start()
        if primary_down:
            await central.stop()  # its port now refuses connections
        else:
            self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        self.smtp = SmtpTestServer(users={"alerts": SMTP_PASSWORD})
        smtp_port = self.smtp.listen(reactor)
        self.addCleanup(self.smtp.stop)
        self.pushover = FakePushover()
        site = Site(self.pushover)
        http_port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(http_port.stopListening)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "names.yaml"), "w") as out:
            out.write('CP_A: "Depot Süd, bay 3"\n')
        config = config_from_mapping(
            {
                "listen": "tcp:port=0:interface=127.0.0.1",
                "primary_url": f"ws://127.0.0.1:{central_port}/ocpp/",
                "client_names": "names.yaml",
                "notify": channels
                or {
                    "events": {key: True for key in events},
                    "flap_window": 0,
                    "email": {
                        "from": "alerts@example.com",
                        "to": ["ops@example.com", "oncall@example.com"],
                        "smtp": {
                            "host": "127.0.0.1",
                            "port": smtp_port,
                            "tls": "none",
                            "username": "alerts",
                            "password": SMTP_PASSWORD,
                        },
                    },
                    "pushover": {
                        "user_key": PUSHOVER_USER,
                        "app_token": PUSHOVER_TOKEN,
                        "api_url": f"http://127.0.0.1:{http_port.getHost().port}/1/messages.json",
                    },
                },
            },
            base_dir=directory,
        )
        sessions = StationSessions()
        self.notifier = build_notifier(config, reactor, links_connected=sessions.connected_links)
        self.proxy = ProxyService(config, reactor, observer=self.notifier, sessions=sessions)
        self.notifier.startService()
        self.proxy.startService()
        self.addCleanup(self._stop_all)
        port = await Deferred.asFuture(self.proxy.listening, asyncio.get_event_loop())
        return central, f"ws://127.0.0.1:{port.getHost().port}/"

    def _stop_all(self):
        return self.proxy.stopService().addCallback(lambda _: self.notifier.stopService())

    def subjects(self):
        mails = [
            message_from_bytes(mail.data, policy=policy.default)
            for mail in self.smtp.received
            if mail.recipient == "ops@example.com"
        ]
        return [str(mail["Subject"]) for mail in mails]

    @async_test
    async def test_charging_session_raises_the_enabled_alerts_on_both_channels(self):
        """Boot, a fault and a charging session raise exactly the enabled alerts, by e-mail and Pushover."""
        events = ["station_boot", "con_status_faulted", "con_start_transaction", "con_stop_transaction"]
        _, base = await self.start_everything(events)
        station, websocket, _ = await connect_station(base, "CP_A")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.BootNotification(charge_point_model="Wallbox", charge_point_vendor="ACME"))
        for status in (ChargePointStatus.available, ChargePointStatus.faulted, ChargePointStatus.faulted):
            await station.call(
                call.StatusNotification(connector_id=2, error_code=ChargePointErrorCode.ground_failure, status=status)
            )
        started = await station.call(
            call.StartTransaction(connector_id=2, id_tag="TAG1", meter_start=1000, timestamp="2026-11-24T10:00:00Z")
        )
        await station.call(
            call.StopTransaction(
                meter_stop=13500, timestamp="2026-11-24T11:30:00Z", transaction_id=started.transaction_id
            )
        )
        await until(lambda: len(self.pushover.posts) >= 4 and len(self.smtp.received) >= 8)
        subjects = self.subjects()
        self.assertEqual(len(subjects), 4, subjects)
        self.assertTrue(all("Depot Süd, bay 3" in subject for subject in subjects), subjects)
        stop_mail = [mail for mail in self.smtp.received if b"12.500" in mail.data or b"12,500" in mail.data]
        self.assertTrue(stop_mail, "energy of the stopped transaction (12.5 kWh) not in any mail")
        titles = [post["title"] for post in self.pushover.posts]
        self.assertEqual(len(titles), 4, titles)
        self.assertTrue(any("connector 2" in title.lower() for title in titles), titles)
        self.assertEqual({post["token"] for post in self.pushover.posts}, {PUSHOVER_TOKEN})
        secrets = (SMTP_PASSWORD, PUSHOVER_TOKEN, PUSHOVER_USER)
        self.assertEqual([line for line in self.log_lines if any(secret in line for secret in secrets)], [])

    @async_test
    async def test_alerts_fire_even_when_no_upstream_answers(self):
        """Events come from what the station sends: a fault is reported while the central system is unreachable."""
        central, base = await self.start_everything(["con_status_faulted"], primary_down=True)
        _, websocket, _ = await connect_station(base, "CP_B")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await websocket.send(
            '[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"OverCurrentFailure","status":"Faulted"}]'
        )
        await until(lambda: self.pushover.posts)
        self.assertIn("CP_B", self.pushover.posts[0]["title"])
        self.assertIn("OverCurrentFailure", self.pushover.posts[0]["message"])
        self.assertEqual(central.connections, [])

    @async_test
    async def test_fault_reaches_the_webhook_and_apprise(self):
        """A fault goes as JSON to a webhook and through Apprise's json:// target, both real HTTP servers."""
        webhook, apprise_target = RecordingReceiver(), RecordingReceiver()
        webhook_port = serve_locally(self, webhook, reactor)
        apprise_port = serve_locally(self, apprise_target, reactor)
        channels = {
            "events": {"con_status_faulted": True},
            "webhook": {
                "url": f"http://127.0.0.1:{webhook_port}/hook",
                "headers": {"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            },
            "apprise": {"urls": [f"json://127.0.0.1:{apprise_port}/ntfy/{APPRISE_TOKEN}"], "timeout": 5},
        }
        _, base = await self.start_everything([], channels=channels)
        _, websocket, _ = await connect_station(base, "CP_A")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await websocket.send(
            '[2,"s1","StatusNotification",{"connectorId":1,"errorCode":"OverCurrentFailure","status":"Faulted"}]'
        )
        loop = asyncio.get_event_loop()
        posted = await asyncio.wait_for(Deferred.asFuture(webhook.nth_post(1), loop), WAIT)
        body = json.loads(posted.body)
        self.assertEqual(
            (body["station"], body["name"], body["kind"], body["details"]["error_code"]),
            ("CP_A", "Depot Süd, bay 3", "con_status_faulted", "OverCurrentFailure"),
        )
        self.assertEqual(posted.headers["authorization"], f"Bearer {WEBHOOK_TOKEN}")
        notified = await asyncio.wait_for(Deferred.asFuture(apprise_target.nth_post(1), loop), WAIT)
        self.assertEqual(json.loads(notified.body)["title"], body["subject"])
        await until(lambda: self.notifier.queues["webhook"].sent == self.notifier.queues["apprise[0]"].sent == 1)
        self.assertEqual([line for line in self.log_lines if WEBHOOK_TOKEN in line or APPRISE_TOKEN in line], [])


class StalledWebhookTests(DaemonTestCase):
    """The installed daemon (``twistd``) delivering to a real webhook on 127.0.0.1 that stalls."""

    DEADLINE = 1.0
    RETRY_DELAY = 0.5
    # Scheduling, a subprocess and a loopback round trip or three; far below another deadline.
    MARGIN = 0.8

    @async_test
    async def test_alert_after_a_stalled_answer_is_delivered_within_deadline_and_retry_delay(self):
        """
        The webhook sends its first answer's headers and first byte, then nothing: the
        daemon drops that connection at notify.delivery_timeout, retries after
        retry_delay, and the alert queued behind it arrives within deadline + retry
        delay of the stalled POST.
        """
        webhook = StallingReceiver(1)
        webhook_port = serve_locally(self, webhook, reactor)
        central = CentralSystem(100)
        central_port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        process = await self.run_daemon(
            'listen: "tcp:port=0:interface=127.0.0.1"\n'
            f'primary_url: "ws://127.0.0.1:{central_port}/ocpp/"\n'
            "notify:\n"
            "  events: {con_status_faulted: true}\n"
            "  flap_window: 0\n"
            f"  delivery_timeout: {self.DEADLINE}\n"
            f"  retry_delay: {self.RETRY_DELAY}\n"
            f'  webhook: {{url: "http://127.0.0.1:{webhook_port}/hook"}}\n'
        )
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        _, websocket, _ = await connect_station(f"ws://127.0.0.1:{found.group(1)}/", "CP_E")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        for connector in (1, 2):
            await websocket.send(
                f'[2,"s{connector}","StatusNotification",'
                f'{{"connectorId":{connector},"errorCode":"GroundFailure","status":"Faulted"}}]'
            )
        loop = asyncio.get_event_loop()
        await asyncio.wait_for(Deferred.asFuture(webhook.nth_post(1), loop), WAIT)
        stalled_at = loop.time()
        await asyncio.wait_for(Deferred.asFuture(webhook.dropped[0], loop), WAIT)
        dropped_after = loop.time() - stalled_at
        await asyncio.wait_for(Deferred.asFuture(webhook.nth_post(3), loop), WAIT)
        delivered_after = loop.time() - stalled_at
        self.assertGreater(dropped_after, self.DEADLINE - 0.2)
        self.assertLess(delivered_after, self.DEADLINE + self.RETRY_DELAY + self.MARGIN)
        connectors = [json.loads(post.body)["details"]["connector"] for post in webhook.posts]
        self.assertEqual(connectors, [1, 1, 2])
        await self.read_until(process.stdout, r"not delivered on webhook \(attempt 1 of 5\): no answer within the")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
