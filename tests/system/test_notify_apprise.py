"""
Tests for L{ocppproxy.notify.apprise_channel}: the channel with a stand-in thread pool and
clock, and the real Apprise library in a real thread pool against a real HTTP server on
127.0.0.1 (Apprise's C{json://} target).
"""

from __future__ import annotations

import json
import os
import threading

from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ocppproxy.config.load import load_config
from ocppproxy.config.model import AppriseSettings, NotifyConfig
from ocppproxy.daemon.reload import Reloader
from ocppproxy.notify.alert import Alert, DeliveryError
from ocppproxy.notify.apprise_channel import AppriseChannel, apprise_channels, scrub, stop_pool
from ocppproxy.notify.channels import build_channels
from ocppproxy.notify.delivery import DeliveryQueue
from ocppproxy.notify.names import StationNames
from ocppproxy.notify.service import NotifierService

from ..httpserver import RecordingReceiver, serve_locally

ALERT = Alert("con_status_faulted", "CP_1", "CP_1: connector 2 Faulted", "Station id: CP_1\nEvent: Faulted\n")
TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
TELEGRAM = f"tgram://{TOKEN}/-100987654"


def apprise_threads() -> list[threading.Thread]:
    """The live threads of the daemon's Apprise pool."""
    return [thread for thread in threading.enumerate() if "ocppproxy-apprise" in thread.name]


def write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)


class ThreadlessPool:
    """
    Runs the work at once in place of a thread pool. With C{hang}, its outcome comes
    back only when the test calls L{finish} (a call under way in its thread), or, with
    C{started} false too, the work itself waits for L{finish} (waiting for a thread).
    """

    def __init__(self, hang: bool = False, started: bool = True) -> None:
        self.hang = hang
        self.started = started
        self.waiting: list[tuple] = []

    def callInThreadWithCallback(self, on_result, work, *args) -> None:
        self.waiting.append((on_result, self._run(work, args) if self.started else (work, args)))
        if not self.hang:
            self.finish()

    @staticmethod
    def _run(work, args) -> tuple[bool, object]:
        try:
            return True, work(*args)
        except Exception:  # noqa: BLE001 (a thread pool hands back any exception)
            return False, Failure()

    def finish(self) -> None:
        """Hand back the oldest outcome held back (running its work first if it had not started)."""
        on_result, outcome = self.waiting.pop(0)
        on_result(*(outcome if self.started else self._run(*outcome)))


class ReactorClock(Clock):
    """A clock that also takes callFromThread (run at once: there are no threads here)."""

    def callFromThread(self, call, *args) -> None:
        call(*args)


class AppriseChannelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def channel(self, outcome: str | None = None, hang: bool = False, url: str = TELEGRAM, started: bool = True):
        self.clock, self.pool = ReactorClock(), ThreadlessPool(hang, started)
        self.notified: list[tuple] = []

        def notify(*args):
            self.notified.append(args)
            return outcome

        return AppriseChannel("apprise[1]", url, self.clock, self.pool, 20.0, notify=notify)

    def text(self) -> str:
        return "\n".join(formatEvent(event) for event in self.logged)

    def test_success(self) -> None:
        """The subject and text go to the URL through the pool, with the timeout; Apprise's success is the channel's."""
        self.assertIsNone(self.successResultOf(self.channel().send(ALERT)))
        self.assertEqual(self.notified, [(TELEGRAM, ALERT.subject, ALERT.text, 20.0)])

    def test_failure_is_transient_and_names_the_scheme_only(self) -> None:
        """Apprise cannot tell a refusal from an outage: retried, named by position and scheme."""
        error = self.failureResultOf(self.channel("failure: HTTP 502").send(ALERT), DeliveryError).value
        self.assertTrue(error.transient)
        self.assertEqual(str(error), "Apprise could not notify apprise[1] (tgram://): failure: HTTP 502")

    def test_exception_in_the_thread_is_scrubbed(self) -> None:
        """An exception raised in Apprise's call is a transient failure whose text holds no part of the URL."""

        def notify(url, *_):
            raise OSError(f"cannot connect to {url}")

        channel = AppriseChannel("apprise[1]", TELEGRAM, ReactorClock(), ThreadlessPool(), 20.0, notify=notify)
        error = self.failureResultOf(channel.send(ALERT), DeliveryError).value
        self.assertTrue(error.transient)
        self.assertEqual(
            str(error), "Apprise could not notify apprise[1] (tgram://): OSError: cannot connect to <redacted>"
        )

    def test_call_past_the_deadline_fails_and_its_late_success_is_ignored(self) -> None:
        """
        A call still running at the delivery queue's deadline fails the attempt at once;
        its late success is not counted (the retry delivers the alert) but logged as a
        possible duplicate. No timer is left.
        """
        channel = self.channel(hang=True)
        queue = DeliveryQueue("apprise[1]", channel.send, self.clock, 10, 3, 10.0, deadline=20.0)
        queue.put(ALERT)
        self.clock.advance(20.0)
        self.assertEqual((queue.sent, queue.pending, len(self.pool.waiting)), (0, 1, 1))
        self.assertIn("no answer within the deadline of 20 s", self.text())
        self.pool.finish()
        self.assertEqual(queue.sent, 0)
        self.assertIn(
            "Apprise notified apprise[1] (tgram://) of alert con_status_faulted for CP_1 after the attempt's deadline;"
            " it counted as failed, so the alert may arrive twice",
            self.text(),
        )
        self.clock.advance(10.0)
        self.pool.finish()
        self.assertEqual((queue.sent, queue.failed, len(self.notified)), (1, 0, 2))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertNotIn(TOKEN, self.text())

    def test_attempt_cancelled_before_its_thread_started_never_starts(self) -> None:
        """An attempt still waiting for the channel's thread when cancelled is never sent."""
        sending = self.channel(hang=True, started=False).send(ALERT)
        sending.cancel()
        self.failureResultOf(sending, CancelledError)
        self.pool.finish()
        self.assertEqual(self.notified, [])
        self.assertEqual(self.logged, [])

    def test_one_channel_per_url_each_with_a_pool_of_one_thread(self) -> None:
        """Each URL is its own channel with its own pool of one thread (not yet started): a hung call holds only its own."""
        channels = apprise_channels(AppriseSettings(urls=(TELEGRAM, "json://127.0.0.1:1/a")), Clock(), 12.0)
        self.assertEqual(list(channels), ["apprise[0]", "apprise[1]"])
        pools = [pool for _, pool in channels.values()]
        self.assertEqual(
            [(pool.max, pool.started, pool.name) for pool in pools],
            [(1, False, "ocppproxy-apprise[0]"), (1, False, "ocppproxy-apprise[1]")],
        )
        self.assertIsNot(*pools)

    def test_scrub_removes_every_part_of_the_url(self) -> None:
        """The bot token (the URL's host), the chat id and the whole URL are replaced."""
        text = f"error for {TELEGRAM}; bot {TOKEN.split(':')[0]} key {TOKEN.split(':')[1]} chat -100987654"
        cleaned = scrub(text, TELEGRAM)
        for part in (TOKEN.split(":")[0], TOKEN.split(":")[1], "100987654"):
            self.assertNotIn(part, cleaned)
        self.assertTrue(cleaned.startswith("error for <redacted>; bot <redacted>"))


class AppriseOverNetworkTests(TestCase):
    """The real library in a real pool, against twisted.web on 127.0.0.1."""

    timeout = 10

    def setUp(self) -> None:
        self.pool = ThreadPool(minthreads=0, maxthreads=1, name="test-apprise")
        self.pool.start()
        self.addCleanup(stop_pool, self.pool, reactor)
        self.logged: list[dict] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def json_url(self, receiver: RecordingReceiver) -> str:
        return f"json://127.0.0.1:{serve_locally(self, receiver, reactor)}/hooks/SECRETTOKEN123"

    async def test_json_target_receives_the_alert(self) -> None:
        """Apprise's json:// target posts the subject as title and the text as message."""
        receiver = RecordingReceiver(200)
        channel = AppriseChannel("apprise[0]", self.json_url(receiver), reactor, self.pool, 5.0)
        self.assertIsNone(await channel.send(ALERT))
        (post,) = receiver.posts
        body = json.loads(post.body)
        # Apprise strips the text's final line end.
        self.assertEqual((body["title"], body["message"]), (ALERT.subject, ALERT.text.rstrip()))
        self.assertEqual(post.path, "/hooks/SECRETTOKEN123")

    async def test_refusal_reason_without_the_url(self) -> None:
        """An HTTP 500 comes back as Apprise's reason, with no part of the URL in it."""
        channel = AppriseChannel("apprise[0]", self.json_url(RecordingReceiver(500)), reactor, self.pool, 5.0)
        with self.assertRaises(DeliveryError) as caught:
            await channel.send(ALERT)
        text = str(caught.exception)
        self.assertIn("apprise[0] (json://): failure:", text)
        self.assertIn("error=500", text)
        self.assertNotIn("SECRETTOKEN123", text)

    async def test_notifier_delivers_retries_and_stops_its_pool(self) -> None:
        """
        Built from the settings like the daemon's: the notifier starts the pool, a 503 is
        retried, the alert arrives, and stopping the notifier stops the pool. The log never
        shows the URL's token.
        """
        receiver = RecordingReceiver(503, 200)
        url = self.json_url(receiver)
        settings = NotifyConfig(
            events=frozenset({"connected_to_proxy"}),
            apprise=AppriseSettings(urls=(url,), timeout=5.0),
            retry_delay=0.05,
        )
        built = build_channels(settings, reactor)
        notifier = NotifierService(
            settings, StationNames({}), reactor, built.channels, {}, lambda _: 0, built.closers, built.starters
        )
        notifier.startService()
        notifier.station_connected("CP_9", "tcp4:127.0.0.1:5")
        second = await receiver.nth_post(2)
        self.assertEqual(json.loads(second.body)["title"], "CP_9: connected to proxy")
        self.assertTrue(apprise_threads())
        await notifier.stopService()
        self.assertEqual(apprise_threads(), [])
        queue = notifier.queues["apprise[0]"]
        self.assertEqual((queue.sent, queue.failed), (1, 0))
        ours = [event for event in self.logged if event.get("log_namespace", "").startswith("ocppproxy")]
        text = "\n".join(formatEvent(event) for event in ours)
        self.assertIn("on apprise[0] (attempt 2)", text)
        self.assertNotIn("SECRETTOKEN123", text)

    async def test_reload_adds_and_removes_the_channel(self) -> None:
        """A SIGHUP reload that adds Apprise URLs delivers through them; one that removes them retires the pool."""
        receiver = RecordingReceiver()
        url = self.json_url(receiver)
        path = os.path.abspath(self.mktemp())
        base = 'primary_url: "ws://127.0.0.1:1/"\nnotify: {events: {connected_to_proxy: true}, flap_window: 0'
        write(path, base + "}\n")
        running = load_config(path)
        notifier = NotifierService(running.notify, StationNames({}), reactor, {}, {}, lambda _: 0)
        notifier.startService()
        reloader = Reloader(path, running, notifier, reactor)
        write(path, base + f", apprise: {{urls: ['{url}'], timeout: 5}}}}\n")
        self.assertEqual((await reloader.reload()).live, ("notify.apprise",))
        notifier.station_connected("CP_4", "tcp4:127.0.0.1:5")
        self.assertEqual(json.loads((await receiver.nth_post(1)).body)["title"], "CP_4: connected to proxy")
        write(path, base + "}\n")
        await reloader.reload()
        self.assertEqual(notifier.queues, {})
        await notifier.stopService()
        self.assertEqual(apprise_threads(), [])
