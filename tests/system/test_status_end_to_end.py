"""
The status page and the traffic log end to end: the daemon's service tree between the
`ocpp` library's charge point and central system, read over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import re

import treq
from ocpp.v16 import call
from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus
from twisted.internet.defer import Deferred

from ocppproxy.relay.observers import frame_recorder

from ..e2e import ProxyTestCase, async_test
from ..peers import CentralSystem, connect_station

AUTHORIZATION = "Basic Q1BfUzpzM2NyZXQtcGFzc3dvcmQ="


class StatusEndToEndTests(ProxyTestCase):
    async def start(self, **settings):
        central = CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: Deferred.fromFuture(asyncio.ensure_future(central.stop())))
        url = await self.start_services(primary_url=f"ws://127.0.0.1:{port}/ocpp/", **settings)
        station, websocket, _ = await connect_station(url, "CP_S", headers={"Authorization": AUTHORIZATION})
        self.addCleanup(lambda: Deferred.fromFuture(asyncio.ensure_future(websocket.close())))
        self.websocket = websocket
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await station.call(
            call.StatusNotification(
                connector_id=1,
                error_code=ChargePointErrorCode.ground_failure,
                status=ChargePointStatus.faulted,
                timestamp="2027-01-15T08:00:00Z",
            )
        )
        return central, station

    async def get(self, path: str) -> bytes:
        if not hasattr(self, "status_port"):
            listening = self.services.getServiceNamed("status").listening
            self.status_port = (await Deferred.asFuture(listening, asyncio.get_event_loop())).getHost().port
        url = f"http://127.0.0.1:{self.status_port}{path}"
        response = await Deferred.asFuture(treq.get(url, persistent=False), asyncio.get_event_loop())
        self.assertEqual(response.code, 200)
        return await Deferred.asFuture(response.content(), asyncio.get_event_loop())

    @async_test
    async def test_stations_and_metrics_show_a_real_station(self):
        """/stations lists the station with its connector's status; /metrics counts its frames and answers."""
        await self.start(status={"listen": "tcp:port=0:interface=127.0.0.1"})
        (station,) = json.loads(await self.get("/stations"))["stations"]
        self.assertEqual(station["id"], "CP_S")
        self.assertEqual(station["subprotocol"], "ocpp1.6")
        self.assertEqual(
            station["upstreams"],
            {"primary": {"role": "primary", "state": "connected", "failed_attempts": 0, "queued": 0}},
        )
        self.assertEqual(
            station["connectors"]["1"],
            {
                "status": "Faulted",
                "errorCode": "GroundFailure",
                "timestamp": "2027-01-15T08:00:00Z",
                "received": station["last_message"],
            },
        )
        self.assertTrue(station["remote"].startswith("tcp4:127.0.0.1:"))
        metrics = (await self.get("/metrics")).decode()
        self.assertIn("ocppproxy_stations_connected 1.0", metrics)
        self.assertIn('ocppproxy_frames_total{direction="from_station",type="CALL",upstream=""} 2.0', metrics)
        self.assertIn(
            'ocppproxy_frames_total{direction="from_upstream",type="CALLRESULT",upstream="primary"} 2.0', metrics
        )
        self.assertIn('ocppproxy_upstream_links{role="primary",state="connected",upstream="primary"} 1.0', metrics)
        self.assertIn(
            'ocppproxy_upstream_connect_attempts_total{outcome="ok",role="primary",upstream="primary"} 1.0', metrics
        )
        self.assertIn("ocppproxy_primary_answer_seconds_count 2.0", metrics)
        page = (await self.get("/")).decode()
        self.assertIn('"id":"CP_S"', page)
        self.assertIn('"errorCode":"GroundFailure"', page)

    @async_test
    async def test_station_that_left_is_listed_offline_with_its_alert(self):
        """A station that closes its connection is listed offline, with when it left and its last status;
        the alert its departure raised is in /alerts."""
        await self.start(
            status={"listen": "tcp:port=0:interface=127.0.0.1"},
            notify={"events": {"disconnected_from_proxy": True}, "flap_window": 0},
        )
        await self.websocket.close()
        await self.until(lambda: "CP_S" not in self.proxy.sessions)
        document = json.loads(await self.get("/stations?state=offline&q=cp_s"))
        self.assertEqual(document["counts"], {"connected": 0, "offline": 1, "faulted": 0, "charging": 0})
        (station,) = document["stations"]
        self.assertEqual((station["id"], station["state"]), ("CP_S", "offline"))
        self.assertRegex(station["left"], r"^\d{4}-\d\d-\d\dT")
        self.assertEqual(station["connectors"]["1"]["status"], "Faulted")
        alerts = json.loads(await self.get("/alerts"))
        self.assertEqual(alerts["last_hour"], 1)
        self.assertEqual(
            [(alert["station"], alert["kind"], alert["channels"]) for alert in alerts["alerts"]],
            [("CP_S", "disconnected_from_proxy", {})],
        )

    @async_test
    async def test_traffic_log_has_every_direction(self):
        """Each frame appears in the traffic log with its direction and upstream, the last ones flushed on stop."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        await self.start(traffic_log={"directory": directory})
        await Deferred.asFuture(self.services.stopService(), asyncio.get_event_loop())
        with open(os.path.join(directory, "traffic.jsonl"), encoding="utf-8") as stream:
            text = stream.read()
        self.assertNotIn(AUTHORIZATION.split()[1], text)
        lines = [json.loads(line) for line in text.splitlines()]
        seen = [(line["direction"], line["upstream"], json.loads(line["frame"])[0]) for line in lines]
        self.assertEqual(
            seen,
            [
                ("from_station", None, 2),
                ("to_upstream", "primary", 2),
                ("from_upstream", "primary", 3),
                ("to_station", None, 3),
            ]
            * 2,
        )
        self.assertEqual({line["station"] for line in lines}, {"CP_S"})
        self.assertEqual(json.loads(lines[4]["frame"])[2], "StatusNotification")
        self.assertTrue(all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]) for line in lines))

    @async_test
    async def test_off_by_default(self):
        """Without status and traffic_log the proxy has only the notifier as observer and nothing records frames."""
        await self.start()
        self.assertEqual(sorted(service.name for service in self.services), ["notifier", "proxy"])
        self.assertIsNone(frame_recorder(self.proxy.observer))
        self.assertEqual(self.proxy.observer.observers, [self.services.getServiceNamed("notifier")])
