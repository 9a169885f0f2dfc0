"""
The control-plane API (issue 26) end to end: the installed daemon under ``twistd``, the
`ocpp` library's central system and charge point, the API over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sys

from ocpp.routing import on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action

from ..e2e import async_test
from ..peers import WAIT, CentralSystem, RecordingMixin, poll_until
from ..peers import Station as PlainStation
from .test_daemon import DaemonTestCase

CTL = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "ocppproxy-ctl")

OPERATE = "operate-token-0123456789"
READ = "read-token-abcdef"
NARROW = "narrow-token-xyz"
SECRET = "k3y-Api-9d1c"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SlowStation(PlainStation):
    """
    A charge point that handles each CALL as it arrives (concurrently, unlike the library's
    loop), answering after a pause, and notes every CALL's arrival and every answer sent in
    one ordered log: two CALLs outstanding at once would show there.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[str, str]] = []

    async def start(self):
        while True:
            message = await self._connection.recv()
            frame = json.loads(message)
            if frame[0] == 2:
                self.log.append(("call", frame[1]))
            asyncio.ensure_future(self.route_message(message))

    async def _send(self, message):
        frame = json.loads(message)
        if frame[0] in (3, 4):
            self.log.append(("answer", frame[1]))
        return await super()._send(message)

    @on(Action.trigger_message)
    async def on_trigger(self, requested_message, **kwargs):
        await asyncio.sleep(0.3)
        return call_result.TriggerMessage(status="Accepted")

    @on(Action.get_configuration)
    async def on_get_configuration(self, **kwargs):
        await asyncio.sleep(0.3)
        return call_result.GetConfiguration(
            configuration_key=[{"key": "AuthorizationKey", "readonly": False, "value": SECRET}]
        )

    @on(Action.change_configuration)
    async def on_change_configuration(self, key, value):
        await asyncio.sleep(0.3)
        return call_result.ChangeConfiguration(status="Accepted")

    @on(Action.get_diagnostics)
    async def on_get_diagnostics(self, location, **kwargs):
        await asyncio.sleep(3)
        return call_result.GetDiagnostics()


async def http(port: int, method: str, path: str, token: str | None = None, body: bytes | None = None, headers=()):
    """One HTTP/1.1 request (Connection: close): (status, decoded JSON body or text)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines.extend(headers)
    body = body or b""
    lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    data = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    head, _, content = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"chunked" in head.lower():
        content = dechunk(content)
    try:
        return status, json.loads(content)
    except ValueError:
        return status, content.decode("utf-8", "replace")


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            break
        out += rest[:length]
        data = rest[length + 2 :]
    return out


class ApiDaemonTests(DaemonTestCase):
    """The API of a running daemon, with a real charge point and central system."""

    timeout = 90

    async def start(self):
        central = CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        base = os.path.abspath(self.mktemp())
        self.traffic = os.path.join(base, "traffic")
        os.makedirs(self.traffic)
        self.log_path = os.path.join(base, "daemon.log")
        log = open(self.log_path, "wb")
        self.addCleanup(log.close)
        await self.run_daemon(
            'listen: "tcp:port=0:interface=127.0.0.1"\n'
            f'primary_url: "ws://127.0.0.1:{port}/ocpp/"\n'
            "log_level: debug\n"
            "pending_call_timeout: 20\n"
            f'traffic_log: {{directory: "{self.traffic}"}}\n'
            "api:\n"
            '  listen: "tcp:port=0:interface=127.0.0.1"\n'
            "  history: 50\n"
            "  tokens:\n"
            f"    - {{name: night-shift, sha256: {sha(OPERATE)}, scope: operate}}\n"
            f"    - {{name: viewer, sha256: {sha(READ)}, scope: read}}\n"
            f"    - {{name: narrow, sha256: {sha(NARROW)}, scope: operate, actions: [TriggerMessage]}}\n",
            stdout=log,
        )
        self.api = int((await self.wait_in_log(r"api on .*port=(\d+)")).group(1))
        listening = (await self.wait_in_log(r"listening on .*port=(\d+)")).group(1)
        self.proxy_url = f"ws://127.0.0.1:{listening}/"
        return central

    async def wait_in_log(self, pattern: str) -> re.Match:
        async def probe():
            if not os.path.exists(self.log_path):
                return None
            with open(self.log_path, "rb") as stream:
                return re.search(pattern, stream.read().decode("utf-8", "replace"))

        return await poll_until(probe, lambda found: found is not None, lambda _: f"{pattern!r} not logged")

    async def connect(self, central, station_id: str, count: int):
        import websockets

        websocket = await websockets.connect(self.proxy_url + station_id, subprotocols=["ocpp1.6"], open_timeout=WAIT)
        station = SlowStation(station_id, websocket, response_timeout=WAIT)
        reader = asyncio.ensure_future(station.start())
        self.addCleanup(reader.cancel)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        connection = (await central.wait_connections(count))[count - 1]
        return station, websocket, connection

    def post_call(self, station_id: str, action: str, payload: dict, token: str = OPERATE, timeout=None):
        body = {"action": action, "payload": payload}
        if timeout is not None:
            body["timeout"] = timeout
        return http(self.api, "POST", f"/api/stations/{station_id}/call", token, json.dumps(body).encode())

    @async_test
    async def test_calls_through_the_api(self):
        """
        A TriggerMessage through the API while the primary sends CALLs: never two CALLs
        outstanding at the station, each answer to its asker; redaction of the
        AuthorizationKey in the answer, the history and the follow stream; 404, 504, the
        audit trail.
        """
        central = await self.start()
        station, websocket, connection = await self.connect(central, "CP_A", 1)
        primary_calls = [
            asyncio.ensure_future(connection.session.call(call.ChangeConfiguration(key="HeartbeatInterval", value="60")))
            for _ in range(2)
        ]
        api_calls = [
            asyncio.ensure_future(self.post_call("CP_A", "TriggerMessage", {"requestedMessage": "StatusNotification"}))
            for _ in range(2)
        ]
        results = await asyncio.wait_for(asyncio.gather(*primary_calls, *api_calls), 3 * WAIT)
        self.assertEqual([result.status for result in results[:2]], ["Accepted", "Accepted"])
        for status, document in results[2:]:
            self.assertEqual(status, 200, document)
            self.assertEqual(document["result"][0], 3)
            self.assertEqual(document["result"][2], {"status": "Accepted"})
            self.assertTrue(document["result"][1].startswith("api-"))
        # Never two CALLs outstanding at the station: the log alternates call, answer of that call.
        calls = [entry for entry in station.log if entry[1] != "boot"]
        for index in range(0, len(calls), 2):
            self.assertEqual(calls[index][0], "call", station.log)
            self.assertEqual(calls[index + 1], ("answer", calls[index][1]), station.log)
        self.assertEqual(len(calls), 8)
        # The API's answers never reached the central system.
        self.assertFalse([frame for frame in connection.session.received if "api-" in json.dumps(frame)])

        # The answer to the API's GetConfiguration holds the AuthorizationKey: masked.
        status, document = await self.post_call("CP_A", "GetConfiguration", {})
        self.assertEqual(status, 200)
        self.assertEqual(document["result"][2]["configurationKey"][0]["value"], "***")
        status, document = await http(self.api, "GET", "/api/stations/CP_A/frames", READ)
        self.assertEqual(status, 200)
        text = json.dumps(document)
        self.assertNotIn(SECRET, text)
        self.assertIn("GetConfiguration", text)
        self.assertIn("***", text)

        # Timeout: 504; the station is busy 3 s with GetDiagnostics.
        status, document = await self.post_call("CP_A", "GetDiagnostics", {"location": "ftp://x/"}, timeout=0.5)
        self.assertEqual(status, 504, document)

        # Station details.
        status, document = await http(self.api, "GET", "/api/stations/CP_A", READ)
        self.assertEqual((status, document["id"]), (200, "CP_A"))
        status, document = await http(self.api, "GET", "/api/stations", READ)
        self.assertEqual(status, 200)
        self.assertEqual([entry["id"] for entry in document["stations"]], ["CP_A"])

        # Gone: 404 (after its disconnection through the API).
        await asyncio.sleep(3)
        status, document = await http(self.api, "POST", "/api/stations/CP_A/disconnect", OPERATE, b'{"code": 1012}')
        self.assertEqual(status, 200, document)
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1012)

        async def gone():
            return await self.post_call("CP_A", "TriggerMessage", {"requestedMessage": "Heartbeat"})

        await poll_until(gone, lambda answer: answer[0] == 404, lambda answer: f"not 404: {answer}")
        # Its frames stay readable after it left.
        status, document = await http(self.api, "GET", "/api/stations/CP_A/frames", READ)
        self.assertEqual(status, 200)
        self.assertTrue(document["frames"])

        # The audit trail: one line per operate request, never a payload.
        audit = os.path.join(self.traffic, "audit.jsonl")
        lines = await poll_until(
            lambda: asyncio.sleep(0, [json.loads(line) for line in open(audit)] if os.path.exists(audit) else []),
            lambda lines: len(lines) >= 6,
            lambda lines: f"audit lines: {lines}",
        )
        self.assertEqual(lines[0]["token"], "night-shift")
        self.assertEqual(lines[0]["station"], "CP_A")
        self.assertLessEqual(
            {"TriggerMessage", "GetConfiguration", "GetDiagnostics", "disconnect"}, {line["action"] for line in lines}
        )
        self.assertEqual(set(lines[0]), {"time", "token", "address", "station", "action", "outcome", "duration"})
        outcomes = {line["action"]: line["outcome"] for line in lines}
        self.assertEqual(outcomes["GetDiagnostics"], "504")
        with open(audit) as stream:
            self.assertNotIn(SECRET, stream.read())
        with open(self.log_path, "rb") as stream:
            self.assertNotIn(SECRET.encode(), stream.read())
        with open(os.path.join(self.traffic, "traffic.jsonl"), "rb") as stream:
            self.assertNotIn(SECRET.encode(), stream.read())

    @async_test
    async def test_follow_sees_a_frame_within_a_second(self):
        """?follow=1 streams a frame as it passes (within 1 s), with an id; Last-Event-ID resumes from the history."""
        central = await self.start()
        station, websocket, connection = await self.connect(central, "CP_F", 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.api)
        self.addCleanup(writer.close)
        writer.write(
            f"GET /api/stations/CP_F/frames?follow=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READ}\r\n"
            "Last-Event-ID: 1\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        self.assertIn(b"200", head.split(b"\r\n")[0])
        self.assertIn(b"text/event-stream", head)
        seen = b""

        async def until(text: bytes):
            nonlocal seen
            while text not in seen:
                seen += await reader.read(4096)

        # Resumed from the history: the BootNotification's answer (frame 2 onwards).
        await asyncio.wait_for(until(b"BootNotification"), WAIT)
        self.assertIn(b"id: 2", seen)
        loop = asyncio.get_event_loop()
        sent = loop.time()
        await station.call(call.Heartbeat())
        await asyncio.wait_for(until(b"Heartbeat"), 1.0)
        self.assertLess(loop.time() - sent, 1.0)

    @async_test
    async def test_refusals(self):
        """401, 403, 400, 413, 429, 404, 405: each refusal as the issue says."""
        central = await self.start()
        await self.connect(central, "CP_R", 1)
        trigger = {"action": "TriggerMessage", "payload": {"requestedMessage": "Heartbeat"}}
        cases = [
            (("GET", "/api/stations", None, None), 401),
            (("GET", "/api/stations", "wrong-token", None), 401),
            (("POST", "/api/stations/CP_R/call", READ, json.dumps(trigger).encode()), 403),
            (("POST", "/api/stations/CP_R/call", NARROW, b'{"action": "Reset", "payload": {"type": "Hard"}}'), 403),
            (("POST", "/api/stations/CP_R/disconnect", READ, b""), 403),
            (("GET", "/api/stations/CP%2FX", READ, None), 400),
            (("GET", "/api/stations/CP%20X/frames", READ, None), 400),
            (("POST", "/api/stations/CP_R/call", OPERATE, b"[1, 2]"), 400),
            (("POST", "/api/stations/CP_R/call", OPERATE, b'{"action": 5, "payload": {}}'), 400),
            (("POST", "/api/stations/CP_R/call", OPERATE, b'{"action": "Reset", "payload": []}'), 400),
            (("POST", "/api/stations/CP_R/call", OPERATE, b"not json"), 400),
            (("POST", "/api/stations/CP_R/call", OPERATE, b'{"action":"Reset","payload":{},"x":"' + b"y" * 70000 + b'"}'), 413),
            (("POST", "/api/stations/CP_NONE/call", OPERATE, json.dumps(trigger).encode()), 404),
            (("POST", "/api/stations/CP_NONE/disconnect", OPERATE, b""), 404),
            (("GET", "/api/stations/CP_NONE", READ, None), 404),
            (("GET", "/api/nothing", READ, None), 404),
            (("DELETE", "/api/stations", READ, None), 405),
        ]
        for (method, path, token, body), expected in cases:
            status, document = await http(self.api, method, path, token, body)
            self.assertEqual(status, expected, (method, path, token, document))
        status, _ = await self.post_call("CP_R", "TriggerMessage", {"requestedMessage": "Heartbeat"}, NARROW)
        self.assertEqual(status, 200)
        # 429: ten follow streams of one token in flight, the eleventh refused.
        streams = []
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.api)
            self.addCleanup(writer.close)
            writer.write(f"GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READ}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            self.assertIn(b" 200 ", head)
            streams.append(writer)
        status, _ = await http(self.api, "GET", "/api/stations", READ)
        self.assertEqual(status, 429)
        status, _ = await http(self.api, "GET", "/api/stations", OPERATE)
        self.assertEqual(status, 200)
        await self.wait_in_log(r"api: refused .* with 401")
        await self.wait_in_log(r"api: refused .* with 403")

    async def ctl(self, *args: str, token: str | None = OPERATE, config: bool = False):
        """Run ocppproxy-ctl against the daemon: (exit code, stdout, stderr)."""
        environ = {key: value for key, value in os.environ.items() if not key.startswith("OCPPPROXY_")}
        if token is not None:
            environ["OCPPPROXY_TOKEN"] = token
        where = ["--url", f"http://127.0.0.1:{self.api}"]
        if config:
            # The daemon's own file says port=0: a file naming the port it got stands for it.
            path = self.mktemp() + ".yaml"
            with open(path, "w") as out:
                out.write(f'api: {{listen: "tcp:port={self.api}:interface=127.0.0.1"}}\n')
            where = ["-c", path]
        process = await asyncio.create_subprocess_exec(
            CTL, *where, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=environ
        )
        out, err = await asyncio.wait_for(process.communicate(), WAIT)
        return process.returncode, out.decode(), err.decode()

    @async_test
    async def test_ocppproxy_ctl(self):
        """ocppproxy-ctl against a running daemon: stations, call, frames, disconnect, and its exit codes."""
        central = await self.start()
        station, websocket, connection = await self.connect(central, "CP_C", 1)
        code, out, err = await self.ctl("stations")
        self.assertEqual(code, 0, err)
        self.assertIn("CP_C", out)
        code, out, _ = await self.ctl("--json", "stations", "--state", "offline")
        self.assertEqual((code, json.loads(out)["total"]), (0, 0))
        code, out, _ = await self.ctl("call", "CP_C", "TriggerMessage", '{"requestedMessage": "StatusNotification"}')
        self.assertEqual(code, 0, out)
        self.assertIn("Accepted", out)
        code, out, _ = await self.ctl("--json", "call", "CP_C", "GetConfiguration", config=True)
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["result"][2]["configurationKey"][0]["value"], "***")
        code, out, _ = await self.ctl("frames", "CP_C")
        self.assertEqual(code, 0)
        self.assertIn("BootNotification", out)
        self.assertNotIn(SECRET, out)
        code, _, err = await self.ctl("call", "CP_C", "Reset", '{"type": "Hard"}', token=READ)
        self.assertEqual(code, 3, err)
        code, _, err = await self.ctl("stations", token=None)
        self.assertEqual(code, 2, err)
        code, _, err = await self.ctl("call", "CP_NONE", "Reset", '{"type": "Hard"}')
        self.assertEqual(code, 4, err)
        code, _, err = await self.ctl("call", "CP_C", "GetDiagnostics", '{"location": "ftp://x/"}', "--timeout", "0.5")
        self.assertEqual(code, 5, err)
        # --follow prints a frame that passes after it started.
        environ = {**os.environ, "OCPPPROXY_TOKEN": READ}
        follower = await asyncio.create_subprocess_exec(
            CTL, "--url", f"http://127.0.0.1:{self.api}", "frames", "CP_C", "--follow",
            stdout=asyncio.subprocess.PIPE, env=environ,
        )
        self.addCleanup(lambda: follower.returncode is None and follower.kill())
        seen = b""
        while b"GetConfiguration" not in seen:
            seen += await asyncio.wait_for(follower.stdout.readline(), WAIT)
        await asyncio.sleep(3)  # the GetDiagnostics still holds the station's queue
        await station.call(call.Heartbeat())
        while b"Heartbeat" not in seen:
            seen += await asyncio.wait_for(follower.stdout.readline(), WAIT)
        code, out, _ = await self.ctl("disconnect", "CP_C")
        self.assertEqual(code, 0)
        await asyncio.wait_for(websocket.wait_closed(), WAIT)

    @async_test
    async def test_queue_full_and_station_gone(self):
        """409 while 100 CALLs of the primary wait for the station; 502 when it leaves before answering."""
        central = await self.start()
        station, websocket, connection = await self.connect(central, "CP_Q", 1)
        busy = asyncio.ensure_future(
            self.post_call("CP_Q", "GetDiagnostics", {"location": "ftp://x/"}, timeout=10)
        )
        await poll_until(
            lambda: asyncio.sleep(0, [entry for entry in station.log if entry[0] == "call"]),
            lambda calls: len(calls) >= 1,
            lambda calls: f"no CALL reached the station: {station.log}",
        )
        for number in range(100):
            await connection.websocket.send(json.dumps([2, f"q-{number}", "ClearCache", {}]))

        async def refused():
            return await self.post_call("CP_Q", "TriggerMessage", {"requestedMessage": "Heartbeat"})

        status, document = await poll_until(refused, lambda answer: answer[0] == 409, lambda answer: str(answer))
        await websocket.close()
        status, document = await asyncio.wait_for(busy, WAIT)
        self.assertEqual(status, 502, document)
