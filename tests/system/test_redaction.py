"""
Station credentials set through frames never leave the proxy but in the frame relayed:
the installed daemon under ``twistd`` at ``debug``, with the traffic log, the status page
and alerts on, between the `ocpp` library's central system and stations (1.6 and 2.0.1).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal

import treq
import websockets
from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action, ConfigurationStatus
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.daemon.reload import compare_configs

from ..e2e import async_test
from ..peers import WAIT, CentralSystem, CentralSystemSession, RecordingMixin, Station, poll_until
from .test_daemon import DaemonTestCase

# One secret per path, so that a leak names its path.
SECRETS = {
    "AuthorizationKey": "k3y-AuthKey-7f3a",
    "BasicAuthPassword": "pw-Basic-91c2",
    "apnPassword": "pw-Apn-55d0",
    "vpn.password": "pw-Vpn-0b7e",
    "vpn.key": "k3y-Vpn-e4a9",
    "idTag": "TAG-GDPR-33aa",
    "malformed upstream": "pw-BadUp-7c1d",
    "malformed station": "pw-BadSt-2e8f",
    "bad shape": "pw-Shape-6d4b",
}


class RawRecording:
    """Keeps every frame as its raw text, received and sent (the relayed frame is compared byte for byte)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.raw_received: list[str] = []
        self.raw_sent: list[str] = []

    async def route_message(self, raw_msg):
        self.raw_received.append(raw_msg)
        return await super().route_message(raw_msg)

    async def _send(self, message):
        self.raw_sent.append(message)
        return await super()._send(message)


class Station16(RawRecording, Station):
    """An OCPP 1.6 charge point that accepts configuration changes."""

    @on(Action.change_configuration)
    def on_change_configuration(self, key, value):
        return call_result.ChangeConfiguration(status=ConfigurationStatus.accepted)


class Station201(RawRecording, RecordingMixin, ChargePoint201):
    """An OCPP 2.0.1 charging station that accepts its variables and network profile."""

    @on("SetVariables")
    def on_set_variables(self, set_variable_data, **kwargs):
        results = [
            {"attribute_status": "Accepted", "component": data["component"], "variable": data["variable"]}
            for data in set_variable_data
        ]
        return result201.SetVariables(set_variable_result=results)

    @on("SetNetworkProfile")
    def on_set_network_profile(self, configuration_slot, connection_data, **kwargs):
        return result201.SetNetworkProfile(status="Accepted")


class Central16(RawRecording, CentralSystemSession):
    """The ocpp library's 1.6 central system side, recording what it sends."""


class Central201(RawRecording, RecordingMixin, ChargePoint201):
    """The ocpp library's 2.0.1 central system side, recording what it sends."""


def central_session(station_id: str, websocket):
    """The central system's session in the OCPP version the connection agreed on."""
    return (Central16 if websocket.subprotocol == "ocpp1.6" else Central201)(station_id, websocket)


async def connect(url: str, station_class, subprotocol: str):
    websocket = await websockets.connect(url, subprotocols=[subprotocol], open_timeout=WAIT)
    station = station_class(url.rsplit("/", 1)[-1], websocket, response_timeout=WAIT)

    async def read() -> None:
        try:
            await station.start()
        except websockets.ConnectionClosed:
            pass

    return station, websocket, asyncio.ensure_future(read())


def read_file(path: str) -> str:
    with open(path, "rb") as stream:
        return stream.read().decode("utf-8", "replace")


def leaks(text: str) -> list[str]:
    """The paths whose secret C{text} holds."""
    return [path for path, secret in SECRETS.items() if secret in text]


class RedactionDaemonTests(DaemonTestCase):
    """The secret set through each path never appears in any file the daemon writes nor any line it logs."""

    timeout = 60

    async def wait_in_log(self, pattern: str) -> re.Match:
        async def probe():
            return re.search(pattern, read_file(self.log_path)) if os.path.exists(self.log_path) else None

        return await poll_until(probe, lambda found: found is not None, lambda _: f"{pattern!r} not logged")

    async def fetch(self, url: str) -> str:
        loop = asyncio.get_event_loop()
        response = await Deferred.asFuture(treq.get(url, persistent=False), loop)
        return (await Deferred.asFuture(response.content(), loop)).decode("utf-8", "replace")

    @async_test
    async def test_secrets_never_shown_and_relayed_untouched(self):
        """
        ChangeConfiguration AuthorizationKey (1.6), SetVariables BasicAuthPassword and
        SetNetworkProfile (2.0.1), an id tag under redact: [idTag], and malformed frames
        holding a secret: the stations get the frames byte for byte, and no secret is in
        the daemon's debug log, its traffic log, its status page or its alerts.
        """
        central = CentralSystem(100, subprotocols=("ocpp1.6", "ocpp2.0.1"), session_class=central_session)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        base = os.path.abspath(self.mktemp())
        traffic = os.path.join(base, "traffic")
        os.makedirs(traffic)
        self.log_path = os.path.join(base, "daemon.log")
        log = open(self.log_path, "wb")
        self.addCleanup(log.close)
        process = await self.run_daemon(
            'listen: "tcp:port=0:interface=127.0.0.1"\n'
            f'primary_url: "ws://127.0.0.1:{port}/ocpp/"\n'
            "log_level: debug\n"
            'status: {listen: "tcp:port=0:interface=127.0.0.1"}\n'
            f'traffic_log: {{directory: "{traffic}"}}\n'
            f'state_file: "{os.path.join(base, "state.json")}"\n'
            "redact: [idTag]\n"
            "notify: {log: true, events: {con_start_transaction: true, connected_to_proxy: true}}\n",
            stdout=log,
        )
        status_port = (await self.wait_in_log(r"status page on .*port=(\d+)")).group(1)
        listening = await self.wait_in_log(r"listening on .*port=(\d+)")
        proxy = f"ws://127.0.0.1:{listening.group(1)}/"

        # 1.6: ChangeConfiguration AuthorizationKey, and a transaction with an id tag.
        station16, websocket16, _ = await connect(proxy + "CP_16", Station16, "ocpp1.6")
        self.addCleanup(lambda: asyncio.ensure_future(websocket16.close()))
        await station16.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await station16.call(call.Authorize(id_tag=SECRETS["idTag"]))
        await station16.call(
            call.StartTransaction(
                connector_id=1, id_tag=SECRETS["idTag"], meter_start=0, timestamp="2030-01-01T00:00:00Z"
            )
        )
        (connection16,) = await central.wait_connections(1)
        answer = await connection16.session.call(
            call.ChangeConfiguration(key="AuthorizationKey", value=SECRETS["AuthorizationKey"])
        )
        self.assertEqual(answer.status, "Accepted")

        # 2.0.1: SetVariables BasicAuthPassword, SetNetworkProfile with APN and VPN secrets.
        station201, websocket201, _ = await connect(proxy + "CP_201", Station201, "ocpp2.0.1")
        self.addCleanup(lambda: asyncio.ensure_future(websocket201.close()))
        connection201 = (await central.wait_connections(2))[1]
        self.assertEqual(connection201.subprotocol, "ocpp2.0.1")
        password = {
            "attribute_value": SECRETS["BasicAuthPassword"],
            "component": {"name": "SecurityCtrlr"},
            "variable": {"name": "BasicAuthPassword"},
        }
        answer = await connection201.session.call(call201.SetVariables(set_variable_data=[password]))
        self.assertEqual(answer.set_variable_result[0]["attribute_status"], "Accepted")
        profile = {
            "ocpp_version": "OCPP20",
            "ocpp_transport": "JSON",
            "ocpp_csms_url": "wss://csms.example.com/ocpp/",
            "message_timeout": 30,
            "security_profile": 2,
            "ocpp_interface": "Wireless0",
            "apn": {"apn": "internet", "apn_authentication": "AUTO", "apn_password": SECRETS["apnPassword"]},
            "vpn": {
                "server": "vpn.example.com",
                "user": "station",
                "password": SECRETS["vpn.password"],
                "key": SECRETS["vpn.key"],
                "type": "IPSec",
            },
        }
        answer = await connection201.session.call(
            call201.SetNetworkProfile(configuration_slot=1, connection_data=profile)
        )
        self.assertEqual(answer.status, "Accepted")

        # Malformed frames holding a secret, from the central system and from a station.
        await connection16.websocket.send(
            '[2,"bad-1","ChangeConfiguration",{"key":"AuthorizationKey","value":"' + SECRETS["malformed upstream"] + '"'
        )
        await self.wait_in_log(r"CP_16: primary sent a bad frame \(not JSON\)")
        await websocket16.send(
            '[2,"bad-2","ChangeConfiguration",{"key":"AuthorizationKey","value":"' + SECRETS["malformed station"]
        )
        await self.wait_in_log(r"CP_16 sent a bad frame \(not JSON\)")
        shape = [2, "bad-3", "ChangeConfiguration", {"key": "AuthorizationKey", "value": SECRETS["bad shape"]}, 5]
        await websocket16.send(json.dumps(shape))
        await self.wait_in_log(r"CP_16 sent a bad frame \(CALL must have 4 elements")

        # The stations got the central system's frames byte for byte, secrets and all.
        sent16 = [raw for raw in connection16.session.raw_sent if "AuthorizationKey" in raw]
        self.assertEqual(len(sent16), 1)
        self.assertIn(sent16[0], station16.raw_received)
        self.assertIn(SECRETS["AuthorizationKey"], sent16[0])
        sent201 = [raw for raw in connection201.session.raw_sent if raw.startswith("[2,")]
        self.assertEqual(len(sent201), 2)
        for raw in sent201:
            self.assertIn(raw, station201.raw_received)
        for path in ("BasicAuthPassword", "apnPassword", "vpn.password", "vpn.key"):
            self.assertIn(SECRETS[path], "".join(sent201))

        await self.wait_in_log(r"Id tag: \*\*\*")
        pages = {
            page: await self.fetch(f"http://127.0.0.1:{status_port}/{page}")
            for page in ("", "stations", "alerts", "metrics", "health")
        }
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
        stderr = (await process.stderr.read()).decode("utf-8", "replace")

        log_text = read_file(self.log_path)
        written = {
            os.path.relpath(os.path.join(directory, name), base): read_file(os.path.join(directory, name))
            for directory, _, names in os.walk(base)
            for name in names
        }
        self.assertIn("traffic/traffic.jsonl", written)
        shown = {**written, "stderr": stderr, **{f"status /{page}": text for page, text in pages.items()}}
        for name, text in shown.items():
            self.assertEqual(leaks(text), [], name)
        # Shown, masked: the debug lines, the traffic log and the alert quote the frames with "***".
        self.assertIn('"key":"AuthorizationKey","value":"***"', log_text)
        self.assertIn('"attributeValue":"***"', log_text)
        self.assertIn("not JSON, ", log_text)
        lines = [json.loads(line) for line in written["traffic/traffic.jsonl"].splitlines()]
        frames = [line["frame"] for line in lines]
        self.assertIn('"apnPassword":"***"', "".join(frames))
        self.assertIn('"idTag":"***"', "".join(frames))
        masked_keys = [line["direction"] for line in lines if '"AuthorizationKey","value":"***"' in line["frame"]]
        # ChangeConfiguration both ways it crossed; the CALL of the wrong shape as the station sent it.
        self.assertEqual(masked_keys, ["from_upstream", "to_station", "from_station"])
        self.assertRegex(log_text, r"Id tag: \*\*\*")


class RedactReloadTests(SynchronousTestCase):
    """redact is read at start-up: a reload names it among the keys waiting for a restart."""

    def test_restart_only(self):
        old = config_from_mapping({"primary_url": "ws://127.0.0.1:1/"})
        new = config_from_mapping({"primary_url": "ws://127.0.0.1:1/", "redact": ["idTag"]})
        changes = compare_configs(old, new)
        self.assertEqual((changes.live, changes.restart), ((), ("redact",)))
