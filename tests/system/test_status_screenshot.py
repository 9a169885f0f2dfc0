"""
The status page in a real browser: headless Chromium loads C{/} from a status service
over a made-up fleet, runs the page's script, and dumps the DOM, takes a screenshot at
a phone's and a desktop's width, or is driven over the DevTools protocol (typing in the
search box). Skipped, naming chromium, when it is not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from contextlib import asynccontextmanager
from types import SimpleNamespace
from urllib.parse import urlsplit

import treq
import websockets
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, TestCase

from ocppproxy.notify.alert import Alert
from ocppproxy.notify.names import StationNames
from ocppproxy.status.activity import StationActivity
from ocppproxy.status.alerts import RecentAlerts
from ocppproxy.status.service import StatusService

from ..e2e import async_test
from ..png import read_png
from .test_status import FakeLink, FakeProxy, FakeSession
from ..unit.test_status_fleet import status

BROWSER_TIMEOUT = 30.0
OUTPUT_LIMIT = 4_000_000
RENDER_BUDGET_MS = 1000.0
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]
VIRTUAL_TIME = "--virtual-time-budget=5000"
CONNECTED_GREEN = bytes((0x1F, 0x8A, 0x4C))
FAULTED_RED = bytes((0xB3, 0x26, 0x1E))
CHARGING_BLUE = bytes((0x15, 0x65, 0xC0))
OFFLINE_GREY = bytes((0x5B, 0x64, 0x78))
OFFLINE_CARD = bytes((0xE6, 0xE8, 0xEC))


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise SkipTest("chromium is not installed (Debian: apt-get install chromium): browser test skipped")


class _Browser(ProcessProtocol):
    """Collects a process's standard output; C{ended} fires when it ends, its exit reason in C{reason}."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.errors = bytearray()
        self.reason = None
        self.ended: Deferred = Deferred()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        kept = self.output if fd == 1 else self.errors
        if len(kept) < OUTPUT_LIMIT:
            kept += data

    def processEnded(self, reason) -> None:
        self.reason = reason
        self.ended.callback(None)


class _DevToolsBrowser(_Browser):
    """A browser whose C{devtools} fires with the DevTools WebSocket address it prints, or fails if it ends first."""

    def __init__(self) -> None:
        super().__init__()
        self.devtools: Deferred = Deferred()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        super().childDataReceived(fd, data)
        match = re.search(rb"DevTools listening on (ws://\S+)", self.errors)
        if match and not self.devtools.called:
            self.devtools.callback(match.group(1).decode())

    def processEnded(self, reason) -> None:
        if not self.devtools.called:
            self.devtools.errback(reason)
        super().processEnded(reason)


async def _devtools_call(devtools, number: int, method: str, params: dict, until_event: str | None = None) -> dict:
    """Send a DevTools command; its answer, once it and C{until_event} (if any) arrived, each within 15 s."""
    await devtools.send(json.dumps({"id": number, "method": method, "params": params}))
    answer = None
    while answer is None or until_event is not None:
        message = json.loads(await asyncio.wait_for(devtools.recv(), 15))
        if message.get("id") == number:
            answer = message
        elif message.get("method") == until_event:
            until_event = None
    return answer


@asynccontextmanager
async def devtools_page(chromium: str, directory: str, url: str):
    """
    Chromium (a fresh profile in C{directory}) driven over the DevTools protocol, its page
    at C{url} once loaded: yields the DevTools WebSocket (calls 1 and 2 are used; number
    the next from 3). The browser is killed on the way out, bounded by BROWSER_TIMEOUT.
    """
    loop = asyncio.get_event_loop()
    browser = _DevToolsBrowser()
    profile = f"--user-data-dir={os.path.join(directory, 'devtools-profile')}"
    args = [chromium, *CHROMIUM_FLAGS, profile, "--remote-debugging-port=0", "about:blank"]
    transport = reactor.spawnProcess(browser, chromium, args, env=dict(os.environ))
    killer = reactor.callLater(BROWSER_TIMEOUT, transport.signalProcess, "KILL")
    try:
        address = await asyncio.wait_for(Deferred.asFuture(browser.devtools, loop), BROWSER_TIMEOUT)
        listing = f"http://127.0.0.1:{urlsplit(address).port}/json/list"
        response = await Deferred.asFuture(treq.get(listing, persistent=False), loop)
        targets = json.loads(await Deferred.asFuture(response.content(), loop))
        page = next(target for target in targets if target["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as devtools:
            await _devtools_call(devtools, 1, "Page.enable", {})
            await _devtools_call(devtools, 2, "Page.navigate", {"url": url}, until_event="Page.loadEventFired")
            yield devtools
    finally:
        if browser.reason is None:
            transport.signalProcess("KILL")
        await Deferred.asFuture(browser.ended, loop)
        if killer.active():
            killer.cancel()


def _read_png_file(path: str) -> tuple[int, int, list[bytes]]:
    with open(path, "rb") as stream:
        return read_png(stream.read())


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


def made_up_fleet(count: int):
    """
    C{count} stations CP_00000...: every 10th has left (one a minute, the last 20 min ago),
    every 17th is faulted on connector 1, every 4th other one charging, every 3rd named
    "Parking Gare, borne N"; and CP_NEVER, named but never seen. Five alerts, one of them
    failed on pushover. Returns the proxy, the activity, the names and the alerts.
    """
    clock = Clock()
    clock.advance(reactor.seconds() - 60 * (count // 10) - 1200)
    activity = StationActivity(clock)
    sessions, names = {}, {"CP_NEVER": "Dépôt <Süd>, bay 3"}
    for number in range(count):
        station_id = f"CP_{number:05d}"
        if number % 3 == 0:
            names[station_id] = f"Parking Gare, borne {number}"
        activity.station_connected(station_id, "")
        status(activity, station_id, "Faulted" if number % 17 == 5 else "Charging" if number % 4 == 1 else "Available")
        if number % 10 == 9:
            clock.advance(60)
            activity.station_disconnected(station_id, 1006, None)
            continue
        secondary = FakeLink(False, failed_attempts=2, queued=1) if number % 7 == 3 else FakeLink()
        sessions[station_id] = FakeSession({"primary": FakeLink(), "secondary": secondary})
    alerts = RecentAlerts(reactor)
    for number in range(5):
        alert = Alert("con_status_faulted", f"CP_{number * 17 + 5:05d}", "Faulted", "")
        alerts.alert_sent(alert, ["email", "pushover"])
        alerts.alert_outcome(alert, "email", "sent")
        alerts.alert_outcome(alert, "pushover", "failed" if number == 1 else "sent")
    return FakeProxy(sessions), activity, StationNames(names), alerts


class BrowserTests(TestCase):
    timeout = BROWSER_TIMEOUT + 30

    async def serve(self, count: int) -> str:
        self.chromium = find_chromium()
        proxy, activity, names, alerts = made_up_fleet(count)
        service = StatusService(
            "tcp:port=0:interface=127.0.0.1",
            reactor,
            proxy,
            activity,
            SimpleNamespace(names=names, queues={}),
            alerts=alerts,
        )
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.listening
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        return f"http://127.0.0.1:{port.getHost().port}"

    async def browse(self, *args: str) -> bytes:
        """Run Chromium with our flags, a fresh profile and C{args}; its standard output."""
        profile = f"--user-data-dir={os.path.join(self.directory, 'profile')}"
        browser = await run_bounded(self.chromium, [*CHROMIUM_FLAGS, VIRTUAL_TIME, profile, *args], BROWSER_TIMEOUT)
        errors = browser.errors.decode("utf-8", "replace")[-2000:]
        self.assertTrue(browser.reason.check(ProcessDone), f"chromium failed: {browser.reason.value}\n{errors}")
        return bytes(browser.output)

    async def in_page(self, url: str, script: str):
        """
        Open C{url} in Chromium driven over the DevTools protocol, evaluate C{script} (an
        expression, awaited if it is a Promise) in the page; its value, as JSON.
        """
        async with devtools_page(self.chromium, self.directory, url) as devtools:
            params = {"expression": script, "awaitPromise": True, "returnByValue": True}
            message = await _devtools_call(devtools, 3, "Runtime.evaluate", params)
        self.assertIn("result", message, message)
        result = message["result"]
        self.assertNotIn("exceptionDetails", result, result)
        return result["result"]["value"]

    async def screenshot(self, url: str, width: int, height: int) -> tuple[int, int, list[bytes]]:
        path = os.path.join(self.directory, f"status-{width}.png")
        await self.browse(f"--screenshot={path}", f"--window-size={width},{height}", url)
        return _read_png_file(path)

    def tile(self, dom: str, state: str) -> str:
        match = re.search(rf'data-state="{state}"><b>([\d,]+)</b>', dom)
        self.assertIsNotNone(match, f"no {state} tile")
        return match.group(1)

    async def test_deep_link_counts_and_offline_rows(self):
        """/?q=borne&state=offline: the counts of the whole fleet, only the named offline stations, their rows."""
        base = await self.serve(40)
        dom = (await self.browse("--dump-dom", base + "/?q=borne&state=offline")).decode()
        counts = {state: self.tile(dom, state) for state in ("connected", "offline", "faulted", "charging", "alerts")}
        self.assertEqual(counts, {"connected": "36", "offline": "5", "faulted": "2", "charging": "7", "alerts": "5"})
        self.assertEqual(re.findall(r'data-id="([^"]+)"', dom), ["CP_00039", "CP_00009"])
        self.assertIn("Showing 2 of 2 stations", dom)
        self.assertIn('value="borne"', dom)
        self.assertIn('<option value="offline" selected="">Offline</option>', dom)
        last_gone = dom.split('data-id="CP_00039"')[1].split('data-id="CP_00009"')[0]
        self.assertIn("<h3>Parking Gare, borne 39</h3>", last_gone)
        self.assertRegex(last_gone, r'<span class="badge s-offline">offline for 2\d min</span>')
        self.assertIn('Connector 1 </span><span class="bad">Faulted</span>', last_gone)
        self.assertIn('primary links: </b><span class="ok">36 connected', dom)
        self.assertIn("pushover failed", dom)

    async def test_names_are_text_not_markup(self):
        """A name holding markup is shown as text by the browser, not run."""
        base = await self.serve(1)
        dom = (await self.browse("--dump-dom", base + "/?state=offline")).decode()
        self.assertIn("<h3>Dépôt &lt;Süd&gt;, bay 3</h3>", dom)
        self.assertIn("offline, not seen since start-up", dom)

    async def test_phone_pixels(self):
        """On a phone, /?state=offline shows the coloured count tiles and only grey (offline) cards, one per row."""
        base = await self.serve(40)
        width, height, rows = await self.screenshot(base + "/?state=offline", 412, 760)
        self.assertEqual((width, height), (412, 760))
        seen = {row[x : x + 3] for row in rows for x in range(0, len(row), len(row) // width)}
        for colour in (CONNECTED_GREEN, FAULTED_RED, CHARGING_BLUE, OFFLINE_GREY, OFFLINE_CARD):
            self.assertIn(colour, seen, colour.hex())
        stride = len(rows[0]) // width
        card_edge = {row[14 * stride : 14 * stride + 3] for row in rows[350:]}  # the cards' coloured left border
        self.assertIn(OFFLINE_GREY, card_edge)
        self.assertNotIn(CONNECTED_GREEN, card_edge)
        full_width = [
            row
            for row in rows[350:]
            if row[30 * stride : 30 * stride + 3] == row[380 * stride : 380 * stride + 3]
            and row[30 * stride : 30 * stride + 3] == OFFLINE_CARD
        ]
        self.assertGreater(len(full_width), 200)  # one card spans the phone's width

    async def test_desktop_pixels(self):
        """On a desktop, / lays the cards out in three columns, offline ones (grey) first."""
        base = await self.serve(40)
        width, height, rows = await self.screenshot(base + "/", 1280, 560)
        self.assertEqual((width, height), (1280, 560))
        stride = len(rows[0]) // width
        thirds = [
            {row[x * stride : x * stride + 3] for row in rows[250:] for x in range(start, start + 400, 4)}
            for start in (20, 440, 860)
        ]
        for third in thirds:
            self.assertIn(OFFLINE_CARD, third)

    async def test_five_thousand_stations_render_within_a_second(self):
        """
        With 5,000 stations, from navigation start to the page drawn (the server's answer
        included), as the page itself measures with performance.now(), takes under 1 s.
        """
        base = await self.serve(5000)
        dom = (await self.browse("--dump-dom", base + "/")).decode()
        match = re.search(r'data-rendered-ms="([\d.]+)"', dom)
        self.assertIsNotNone(match, "the page's script did not finish")
        rendered = float(match.group(1))
        self.assertIn("Showing 100 of 5,001 stations", dom)
        self.assertEqual(self.tile(dom, "connected"), "4,500")
        self.assertEqual(len(re.findall(r'class="station ', dom)), 100)
        self.assertLess(rendered, RENDER_BUDGET_MS, f"rendered in {rendered} ms")
        data = json.loads(dom.split('type="application/json">')[1].split("</script>")[0])
        self.assertEqual(data["stations"]["total"], 5001)

    @async_test
    async def test_search_as_you_type_and_show_more(self):
        """
        Typing in the search box filters at once and the address follows; the state
        filter narrows it; "Show more" adds the next page.
        """
        base = await Deferred.asFuture(Deferred.fromCoroutine(self.serve(250)), asyncio.get_event_loop())
        result = await self.in_page(base + "/", SEARCH_SCRIPT)
        self.assertEqual(result["first"], {"shown": "Showing 100 of 251 stations", "count": 100})
        self.assertEqual(result["more"], {"shown": "Showing 200 of 251 stations", "count": 200})
        self.assertEqual(result["typed"]["search"], "?q=borne+3")
        self.assertEqual(result["typed"]["ids"], ["CP_00039", "CP_00003", "CP_00030", "CP_00033", "CP_00036"])
        self.assertEqual(result["offline"]["search"], "?q=borne+3&state=offline")
        self.assertEqual(result["offline"]["ids"], ["CP_00039"])


SEARCH_SCRIPT = """
(async () => {
  const until = async (test) => {
    for (let i = 0; i < 150; i++) {
      if (test()) { return; }
      await new Promise((done) => setTimeout(done, 20));
    }
    throw new Error("the page did not change within 3 s");
  };
  const view = () => ({
    search: location.search,
    shown: document.getElementById("shown").textContent,
    count: document.querySelectorAll(".station").length,
    ids: Array.from(document.querySelectorAll(".station"), (card) => card.dataset.id),
  });
  await until(() => document.body && document.body.dataset.renderedMs);
  const first = view();
  document.getElementById("more").click();
  await until(() => document.querySelectorAll(".station").length === 200);
  const more = view();
  const q = document.getElementById("q");
  q.value = "borne 3";
  q.dispatchEvent(new Event("input"));
  await until(() => document.getElementById("shown").textContent.indexOf(" of 251 ") < 0);
  const typed = view();
  const state = document.getElementById("state");
  state.value = "offline";
  state.dispatchEvent(new Event("change"));
  await until(() => document.querySelectorAll(".station").length === 1);
  const offline = view();
  return {
    first: {shown: first.shown, count: first.count},
    more: {shown: more.shown, count: more.count},
    typed: typed,
    offline: offline,
  };
})()
"""
