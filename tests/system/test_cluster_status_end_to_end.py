"""
The status page of a cluster, end to end: two real instances (the daemon's whole service
tree each) sharing one real redis-server, the `ocpp` library's charge points on 127.0.0.1.
Each instance's /stations lists the whole cluster's fleet: a station that moved to the
other instance is connected there, not offline here; one that left the other instance
is offline here, with its time; without Redis, the local view, marked. One check of the
page's DOM in headless Chromium, skipped without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from datetime import datetime
from urllib.parse import quote

from ocpp.v16 import call
from twisted.internet.defer import Deferred

from . import test_cluster_end_to_end as cluster_end_to_end
from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, poll_until
from .test_cluster_end_to_end import Instance
from .test_status_screenshot import BROWSER_TIMEOUT, CHROMIUM_FLAGS, VIRTUAL_TIME, find_chromium, run_bounded

BOOT = call.BootNotification(charge_point_model="M", charge_point_vendor="V")


class ClusterStatusEndToEndTests(ProxyTestCase):
    timeout = 40

    # The same two-instance set-up as the cluster's end-to-end tests (the module, not the
    # class, is imported here: trial would run its tests a second time).
    _set_up = cluster_end_to_end.ClusterEndToEndTests
    asyncSetUp = _set_up.asyncSetUp
    instance = _set_up.instance
    station = _set_up.station
    get = _set_up.get
    until_claimed = _set_up.until_claimed
    claim_of = _set_up.claim_of
    until_health = _set_up.until_health

    async def two_instances(self) -> tuple[Instance, Instance]:
        await self.asyncSetUp()
        a, b = await self.instance("proxy-a"), await self.instance("proxy-b")
        await self.until_health(a, "ok\n")
        await self.until_health(b, "ok\n")
        return a, b

    async def stations(self, instance: Instance, query: str = "") -> dict:
        code, body = await self.get(instance.status + "/stations" + query)
        self.assertEqual(code, 200, body)
        return json.loads(body)

    async def until_listed(self, instance: Instance, station_id: str, state: str, query: str = "") -> dict:
        """/stations of C{instance} until it lists C{station_id} in C{state} (bounded); that station's entry."""
        def listed(document: dict) -> list[dict]:
            return [s for s in document["stations"] if s["id"] == station_id and s["state"] == state]

        document = await poll_until(
            lambda: self.stations(instance, query or f"?q={quote(station_id)}"),
            listed,
            lambda document: f"{station_id} not {state} on {instance.status}: {document}",
            interval=0.05,
        )
        return listed(document)[0]

    async def moved_station(self, a: Instance, b: Instance) -> None:
        """CP_MOVED connects to A, then to B: A closes its connection (replaced)."""
        on_a, websocket_a = await self.station(a, "CP_MOVED")
        await on_a.call(BOOT)
        await self.until_claimed("CP_MOVED", "proxy-a")
        on_b, _ = await self.station(b, "CP_MOVED")
        await asyncio.wait_for(websocket_a.wait_closed(), WAIT)
        self.assertEqual(websocket_a.close_code, 4000)
        await on_b.call(BOOT)
        await self.until_claimed("CP_MOVED", "proxy-b")

    async def station_gone_from(self, instance: Instance, station_id: str) -> float:
        """C{station_id} connects to C{instance}, boots and leaves; the time it left."""
        station, websocket = await self.station(instance, station_id)
        await station.call(BOOT)
        await self.until_claimed(station_id, instance.proxy.ownership.instance)
        left = time.time()
        await websocket.close()
        await self.until(lambda: station_id not in instance.proxy.sessions, timeout=WAIT)
        return left

    @async_test
    async def test_station_moved_to_b_is_not_offline_on_a(self):
        """A's /stations: CP_MOVED connected elsewhere (proxy-b), not offline; the counts are the cluster's."""
        a, b = await self.two_instances()
        await self.moved_station(a, b)
        moved = await self.until_listed(a, "CP_MOVED", "connected")
        self.assertEqual(moved["instance"], "proxy-b")
        self.assertIsNotNone(moved["connected_since"])
        document = await self.stations(a)
        self.assertEqual(document["cluster"], {"view": "cluster", "connected": {"proxy-a": 0, "proxy-b": 1}})
        self.assertEqual((document["counts"]["connected"], document["counts"]["offline"]), (1, 0))
        self.assertEqual((await self.stations(a, "?state=offline"))["stations"], [])
        here = (await self.stations(b))["stations"]
        self.assertEqual([(s["id"], s["state"], s["instance"]) for s in here], [("CP_MOVED", "connected", "proxy-b")])

    @async_test
    async def test_station_that_left_b_is_offline_on_a_with_its_time(self):
        """CP_GONE left B and is connected nowhere: A lists it offline, with the time it left and B's name."""
        a, b = await self.two_instances()
        left = await self.station_gone_from(b, "CP_GONE")
        gone = await self.until_listed(a, "CP_GONE", "offline", "?state=offline")
        self.assertEqual(gone["instance"], "proxy-b")
        self.assertLess(abs(datetime.fromisoformat(gone["left"]).timestamp() - left), 2.0)
        document = await self.stations(a)
        self.assertEqual(document["counts"]["offline"], 1)
        self.assertEqual(document["cluster"]["view"], "cluster")

    @async_test
    async def test_redis_down_is_the_local_view_and_says_so(self):
        """Redis killed: A's /stations and page are A's own fleet, marked "local view: Redis unreachable"."""
        a, b = await self.two_instances()
        await self.moved_station(a, b)
        await self.until_listed(a, "CP_MOVED", "connected")
        await self.redis.kill()
        await self.until_health(a, "ok, degraded: Redis unreachable, relaying with local state\n")
        document = await self.stations(a)
        self.assertEqual(
            document["cluster"], {"view": "local", "reason": "Redis unreachable", "connected": {"proxy-a": 0}}
        )
        # A alone knows only that CP_MOVED left it.
        self.assertEqual([(s["id"], s["state"]) for s in document["stations"]], [("CP_MOVED", "offline")])
        _, page = await self.get(a.status + "/")
        self.assertIn('"view":"local","reason":"Redis unreachable"', page)

    @async_test
    async def test_page_in_a_browser(self):
        """
        Chromium draws A's page: CP_MOVED "connected elsewhere (proxy-b)", CP_GONE offline
        (left proxy-b), and the line saying it is the cluster's view.
        """
        chromium = find_chromium()
        a, b = await self.two_instances()
        await self.moved_station(a, b)
        await self.station_gone_from(b, "CP_GONE")
        await self.until_listed(a, "CP_GONE", "offline", "?state=offline")
        await self.until_listed(a, "CP_MOVED", "connected")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        profile = f"--user-data-dir={os.path.join(directory, 'profile')}"
        args = [*CHROMIUM_FLAGS, VIRTUAL_TIME, profile, "--dump-dom", a.status + "/"]
        browser = await Deferred.asFuture(run_bounded(chromium, args, BROWSER_TIMEOUT), asyncio.get_event_loop())
        dom = bytes(browser.output).decode()
        self.assertEqual(re.findall(r'data-id="([^"]+)"', dom), ["CP_GONE", "CP_MOVED"])
        moved = dom.split('data-id="CP_MOVED"')[1]
        self.assertIn('<span class="badge s-connected">connected elsewhere (proxy-b)</span>', moved)
        gone = dom.split('data-id="CP_GONE"')[1].split('data-id="CP_MOVED"')[0]
        self.assertRegex(gone, r'<span class="badge s-offline">offline for \d+ s</span>')
        self.assertRegex(gone, r"Left [0-9-]+ [0-9:]+ UTC \(proxy-b\)")
        self.assertIn("Instance proxy-a · cluster view: connected 0 here, 1 on proxy-b", dom)
        self.assertRegex(dom, r'data-state="connected"><b>1</b>')
        self.assertRegex(dom, r'data-state="offline"><b>1</b>')
