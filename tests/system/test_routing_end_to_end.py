"""
Routes end to end (issue 24): the installed daemon under ``twistd`` between the `ocpp`
library's charge points and three of its central systems as named upstreams. Stations on
two routes hear only their own primary, a mirror with receives [MeterValues] gets only
those, a station on no route gets HTTP 404, and a SIGHUP that swaps primary and mirror in
the middle of a 1.6 transaction leaves each central system with its own ids, the station
connected and every frame delivered.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import websockets
from ocpp.v16 import call

from ..e2e import async_test
from ..peers import WAIT, CentralSystem, connect_station, poll_until
from .test_daemon import DaemonTestCase


def now() -> str:
    return datetime.now(UTC).isoformat()


def calls(connection, action: str) -> list[dict]:
    """The payloads of the CALLs with C{action} a central system received on C{connection}."""
    return [frame[3] for frame in connection.session.received if frame[0] == 2 and frame[2] == action]


class RoutingDaemonTests(DaemonTestCase):
    async def centrals(self, *intervals: int) -> list[tuple[CentralSystem, int]]:
        found = []
        for interval in intervals:
            central = CentralSystem(interval)
            port = await central.start()
            self.addCleanup(lambda central=central: asyncio.ensure_future(central.stop()))
            found.append((central, port))
        return found

    async def start(self, text: str) -> tuple[asyncio.subprocess.Process, str]:
        process = await self.run_daemon('listen: "tcp:port=0:interface=127.0.0.1"\n' + text)
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        return process, f"ws://127.0.0.1:{found.group(1)}/"

    async def stop(self, process) -> None:
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)

    @async_test
    async def test_routes_mirrors_and_404(self):
        """Two routes, each station answered by its own primary; the feed gets MeterValues only; no route: 404."""
        (a, port_a), (b, port_b), (feed, port_feed) = await self.centrals(100, 200, 300)
        process, url = await self.start(
            "upstreams:\n"
            f'  csms-a: {{url: "ws://127.0.0.1:{port_a}/ocpp/"}}\n'
            f'  csms-b: {{url: "ws://127.0.0.1:{port_b}/ocpp/"}}\n'
            f'  feed: {{url: "ws://127.0.0.1:{port_feed}/ocpp/", calls: none, receives: [MeterValues]}}\n'
            "routes:\n"
            '  - {stations: ["B-*"], primary: csms-b}\n'
            '  - {stations: ["A-*", "CP_0042"], primary: csms-a, mirrors: [csms-b, feed]}\n'
        )
        on_a, websocket_a, _ = await connect_station(url, "A-1")
        on_b, websocket_b, _ = await connect_station(url, "B-1")
        self.addCleanup(lambda: asyncio.ensure_future(websocket_a.close()))
        self.addCleanup(lambda: asyncio.ensure_future(websocket_b.close()))
        boot = call.BootNotification(charge_point_model="M", charge_point_vendor="V")
        self.assertEqual((await on_a.call(boot)).interval, 100)
        self.assertEqual((await on_b.call(boot)).interval, 200)
        await on_a.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"))
        await on_a.call(call.MeterValues(connector_id=1, meter_value=[{"timestamp": now(), "sampledValue": [{"value": "7"}]}]))
        (feed_connection,) = await feed.wait_connections(1)
        await poll_until(
            lambda: asyncio.sleep(0, calls(feed_connection, "MeterValues")),
            lambda found: len(found) == 1,
            lambda found: f"the feed got {feed_connection.session.received}",
        )
        self.assertEqual([frame[2] for frame in feed_connection.session.received], ["MeterValues"])
        self.assertEqual(feed_connection.path, "/ocpp/A-1")
        self.assertEqual([connection.path for connection in a.connections], ["/ocpp/A-1"])
        self.assertEqual(sorted(connection.path for connection in b.connections), ["/ocpp/A-1", "/ocpp/B-1"])
        with self.assertRaises(websockets.InvalidStatus) as refused:
            await websockets.connect(url + "X-1", subprotocols=["ocpp1.6"], open_timeout=WAIT)
        self.assertEqual(refused.exception.response.status_code, 404)
        await self.read_until(process.stdout, r"station X-1 .* refused with HTTP 404: no route admits it")
        await self.stop(process)

    @async_test
    async def test_sighup_swaps_primary_in_the_middle_of_a_transaction(self):
        """
        Start under A (A primary, B mirror); SIGHUP makes B primary and A its mirror;
        MeterValues and Stop after the swap reach both, each with its own transaction id;
        the station stays connected and Stop is answered by B.
        """
        (a, port_a), (b, port_b) = await self.centrals(100, 200)
        upstreams = (
            "upstreams:\n"
            f'  csms-a: {{url: "ws://127.0.0.1:{port_a}/ocpp/"}}\n'
            f'  csms-b: {{url: "ws://127.0.0.1:{port_b}/ocpp/"}}\n'
            "migration_rate: 10\n"
        )
        process, url = await self.start(upstreams + 'routes: [{stations: ["*"], primary: csms-a, mirrors: [csms-b]}]\n')
        station, websocket, _ = await connect_station(url, "CP_M")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        (on_a,), (on_b,) = await a.wait_connections(1), await b.wait_connections(1)
        started = await station.call(call.StartTransaction(connector_id=1, id_tag="TAG", meter_start=0, timestamp=now()))
        self.assertEqual(started.transaction_id, 101)
        await poll_until(
            lambda: asyncio.sleep(0, calls(on_b, "StartTransaction")), bool, lambda _: "B never got the start"
        )

        with open(self.config_path, "w") as out:
            out.write(
                'listen: "tcp:port=0:interface=127.0.0.1"\n'
                + upstreams
                + 'routes: [{stations: ["*"], primary: csms-b, mirrors: [csms-a]}]\n'
            )
        process.send_signal(signal.SIGHUP)
        await self.read_until(process.stdout, r"station CP_M: route changed: primary csms-b \(was csms-a\)")

        value = [{"timestamp": now(), "sampledValue": [{"value": "5"}]}]
        await station.call(call.MeterValues(connector_id=1, transaction_id=101, meter_value=value))
        stopped = await station.call(call.StopTransaction(meter_stop=5, timestamp=now(), transaction_id=101))
        self.assertIsNotNone(stopped)
        await poll_until(
            lambda: asyncio.sleep(0, (calls(on_a, "StopTransaction"), calls(on_b, "StopTransaction"))),
            lambda found: all(found),
            lambda found: f"stops seen: {found}",
        )
        self.assertEqual([payload["transactionId"] for payload in calls(on_a, "MeterValues")], [101])
        self.assertEqual([payload["transactionId"] for payload in calls(on_b, "MeterValues")], [201])
        self.assertEqual([payload["transactionId"] for payload in calls(on_a, "StopTransaction")], [101])
        self.assertEqual([payload["transactionId"] for payload in calls(on_b, "StopTransaction")], [201])
        # Every frame reached both; the station never left; no new link was needed.
        for connection in (on_a, on_b):
            self.assertEqual(
                [frame[2] for frame in connection.session.received if frame[0] == 2],
                ["BootNotification", "StartTransaction", "MeterValues", "StopTransaction"],
            )
        self.assertIsNone(websocket.close_code)
        self.assertEqual((len(a.connections), len(b.connections)), (1, 1))
        await self.stop(process)
