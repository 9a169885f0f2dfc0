"""
The status page in a real browser: headless Chromium takes a phone-sized screenshot of
C{/}, which must be the right size and show the page's colours. Skipped without Chromium.
"""

from __future__ import annotations

import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SkipTest, TestCase

from ocppproxy.notify.names import StationNames
from ocppproxy.ocppj import parse_frame
from ocppproxy.status.activity import StationActivity
from ocppproxy.status.service import StatusService

from .png import colours, read_png
from .test_status import busy_proxy

WIDTH, HEIGHT = 412, 915
BROWSER_TIMEOUT = 60.0
CONNECTED_GREEN = bytes((0x1F, 0x8A, 0x4C))
GIVEN_UP_RED = bytes((0xB3, 0x26, 0x1E))


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise SkipTest("chromium is not installed (Debian: apt-get install chromium): screenshot test skipped")


class _Browser(ProcessProtocol):
    """Collects a process's output; C{ended} fires when it ends, its exit reason in C{reason}."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.reason = None
        self.ended: Deferred = Deferred()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if len(self.output) < 100_000:
            self.output += data

    def processEnded(self, reason) -> None:
        self.reason = reason
        self.ended.callback(None)


def run_bounded(executable: str, args: list[str], timeout: float) -> Deferred:
    """Spawn a process on the reactor; fires with its L{_Browser} once it ends, killed after C{timeout} s."""
    browser = _Browser()
    transport = reactor.spawnProcess(browser, executable, [executable, *args], env=dict(os.environ))
    killer = reactor.callLater(timeout, transport.signalProcess, "KILL")

    def ended(_):
        if killer.active():
            killer.cancel()
        return browser

    return browser.ended.addCallback(ended)


class ScreenshotTests(TestCase):
    timeout = BROWSER_TIMEOUT + 30

    async def test_phone_screenshot_is_not_blank(self):
        """A 412x915 screenshot of / has many colours, among them the connected and given-up badges'."""
        chromium = find_chromium()
        activity = StationActivity(reactor)
        activity.station_connected("CP_1", "")
        activity.station_frame(
            "CP_1",
            parse_frame('[2,"1","StatusNotification",{"connectorId":1,"status":"Charging","errorCode":"NoError"}]'),
        )
        status = StatusService(
            "tcp:port=0:interface=127.0.0.1", reactor, busy_proxy(), activity, StationNames({"CP_1": "Gare <borne 1>"})
        )
        status.startService()
        self.addCleanup(status.stopService)
        port = await status.listening
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        screenshot = os.path.join(directory, "status.png")
        browser = await run_bounded(
            chromium,
            [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={os.path.join(directory, 'profile')}",
                f"--screenshot={screenshot}",
                f"--window-size={WIDTH},{HEIGHT}",
                f"http://127.0.0.1:{port.getHost().port}/",
            ],
            BROWSER_TIMEOUT,
        )
        output = browser.output.decode("utf-8", "replace")[-2000:]
        self.assertTrue(browser.reason.check(ProcessDone), f"chromium failed: {browser.reason.value}\n{output}")
        self.assertTrue(os.path.exists(screenshot), output)
        with open(screenshot, "rb") as stream:
            width, height, rows = read_png(stream.read())
        self.assertEqual((width, height), (WIDTH, HEIGHT))
        seen = {pixel[:3] for pixel in colours(width, rows)}
        self.assertGreater(len(seen), 20)
        self.assertIn(CONNECTED_GREEN, seen)
        self.assertIn(GIVEN_UP_RED, seen)
