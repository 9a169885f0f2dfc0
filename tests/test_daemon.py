"""
The real daemon as operators run it: ``twistd -n ocppproxy -c <config>`` in a
subprocess, stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

from ocpp.v16 import call

from .e2e import ProxyTestCase, async_test
from .peers import WAIT, CentralSystem, connect_station

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


class DaemonTests(ProxyTestCase):
    async def run_daemon(self, config_text: str):
        path = os.path.abspath(self.mktemp() + ".yaml")
        with open(path, "w") as out:
            out.write(config_text)
        # No PYTHONPATH: this runs the installed package and plugin, as operators do.
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        process = await asyncio.create_subprocess_exec(
            TWISTD, "-n", "--pidfile=", "ocppproxy", "-c", path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )

        def kill():
            if process.returncode is None:
                process.kill()

        self.addCleanup(kill)
        return process

    async def read_until(self, stream, pattern: str) -> tuple[re.Match, list[str]]:
        lines = []
        async def scan():
            while True:
                line = await stream.readline()
                if not line:
                    raise AssertionError(f"stream ended before {pattern!r}: {lines}")
                text = line.decode("utf-8", "replace")
                lines.append(text)
                found = re.search(pattern, text)
                if found:
                    return found

        return await asyncio.wait_for(scan(), WAIT), lines

    @async_test
    async def test_sigterm_closes_stations_with_1001_and_exits_0(self):
        """SIGTERM: the station gets close code 1001, the upstream connection is closed, twistd exits 0."""
        central = CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        process = await self.run_daemon(
            'listen: "tcp:port=0:interface=127.0.0.1"\n'
            f'primary_url: "ws://127.0.0.1:{port}/ocpp/"\n'
        )
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        station, websocket, _ = await connect_station(f"ws://127.0.0.1:{found.group(1)}/", "CP_D")
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        (connection,) = await central.wait_connections(1)
        process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(process.wait(), WAIT)
        output = (await process.stdout.read()).decode()
        self.assertEqual(status, 0, output)
        await asyncio.wait_for(websocket.wait_closed(), WAIT)
        self.assertEqual(websocket.close_code, 1001)
        await asyncio.wait_for(connection.closed.wait(), WAIT)
        self.assertEqual(connection.websocket.close_code, 1001)

    @async_test
    async def test_status_and_traffic_log_under_twistd(self):
        """The installed daemon serves /metrics and writes the traffic log, the last lines at SIGTERM."""
        import json

        import treq
        from twisted.internet.defer import Deferred

        central = CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        process = await self.run_daemon(
            'listen: "tcp:port=0:interface=127.0.0.1"\n'
            f'primary_url: "ws://127.0.0.1:{port}/ocpp/"\n'
            'status: {listen: "tcp:port=0:interface=127.0.0.1"}\n'
            f'traffic_log: {{directory: "{directory}"}}\n'
        )
        status, _ = await self.read_until(process.stdout, r"status page on .*port=(\d+)")
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        station, _, _ = await connect_station(f"ws://127.0.0.1:{found.group(1)}/", "CP_D")
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        loop = asyncio.get_event_loop()
        response = await Deferred.asFuture(
            treq.get(f"http://127.0.0.1:{status.group(1)}/metrics", persistent=False), loop
        )
        metrics = (await Deferred.asFuture(response.content(), loop)).decode()
        self.assertIn('ocppproxy_frames_total{direction="from_station",type="CALL",upstream=""} 1.0', metrics)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
        with open(os.path.join(directory, "traffic.jsonl"), encoding="utf-8") as stream:
            directions = [json.loads(line)["direction"] for line in stream]
        self.assertEqual(directions, ["from_station", "to_upstream", "from_upstream", "to_station"])

    @async_test
    async def test_config_error_is_one_line_and_non_zero(self):
        """A bad config key stops start-up with one line naming the key, and a non-zero status."""
        process = await self.run_daemon('primary_url: "http://example.invalid/"\nlisten: "tcp:port=0"\n')
        status = await asyncio.wait_for(process.wait(), WAIT)
        stderr = (await process.stderr.read()).decode()
        stdout = (await process.stdout.read()).decode()
        self.assertNotEqual(status, 0)
        self.assertEqual(stdout, "")
        self.assertEqual(len(stderr.strip().splitlines()), 1, stderr)
        self.assertIn("primary_url: must be a ws:// or wss:// URL", stderr)
        self.assertNotIn("Traceback", stderr)

    @async_test
    async def test_unknown_key_is_named(self):
        """An unknown key is named in the one-line error."""
        process = await self.run_daemon('primary_url: "ws://127.0.0.1:1/"\nreconect: {}\n')
        status = await asyncio.wait_for(process.wait(), WAIT)
        stderr = (await process.stderr.read()).decode()
        self.assertEqual(status, 2)
        self.assertIn("reconect: unknown key", stderr)

    @async_test
    async def test_listen_failure_stops_start_up(self):
        """A listen address already in use stops start-up with a critical line and status 1."""
        import socket

        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = await self.run_daemon(f'listen: "tcp:port={port}:interface=127.0.0.1"\nprimary_url: "ws://127.0.0.1:1/"\n')
        status = await asyncio.wait_for(process.wait(), WAIT)
        stdout = (await process.stdout.read()).decode()
        self.assertEqual(status, 1)
        self.assertIn(f"cannot listen on tcp:port={port}:interface=127.0.0.1", stdout)
        self.assertIn("Address already in use", stdout)


class NodeConfigTests(ProxyTestCase):
    """Users of the Node tool point -c at their config.json and keep clientIdToHuman.json beside it."""

    @async_test
    async def test_node_config_json_runs_with_names_and_email(self):
        """The Node example config (local addresses put in) relays, and mails a fault naming the station."""
        import json
        import socket

        from twisted.internet import reactor

        from .smtpserver import SmtpTestServer

        central = CentralSystem(100)
        central_port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        smtp = SmtpTestServer(users={"alerts@example.com": "smtp-password"})
        smtp_port = smtp.listen(reactor)
        self.addCleanup(smtp.stop)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            proxy_port = probe.getsockname()[1]
        example = os.path.join(os.path.dirname(__file__), "..", "etc", "node-config.example.json")
        with open(example) as stream:
            node = json.load(stream)
        node["primaryUrl"] = f"ws://127.0.0.1:{central_port}/ocpp/"
        del node["secondaryUrl"]
        node["proxy"] = {"host": "127.0.0.1", "port": proxy_port}
        node["notify"]["email"]["transporter"].update(host="127.0.0.1", port=smtp_port, ignoreTLS=True)
        del node["notify"]["pushover"]  # its API is not on 127.0.0.1
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "clientIdToHuman.json"), "w") as out:
            json.dump({"CP_N": "Parking Gare, borne 2"}, out)
        path = os.path.join(directory, "config.json")
        with open(path, "w") as out:
            json.dump(node, out)
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        process = await asyncio.create_subprocess_exec(
            TWISTD, "-n", "--pidfile=", "ocppproxy", "-c", path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )
        self.addCleanup(lambda: process.returncode is None and process.kill())
        await DaemonTests.read_until(self, process.stdout, r"listening on")
        station, websocket, _ = await connect_station(f"ws://127.0.0.1:{proxy_port}/", "CP_N")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await websocket.send('[2,"f1","StatusNotification",{"connectorId":1,"errorCode":"GroundFailure","status":"Faulted"}]')
        loop = asyncio.get_event_loop()
        deadline = loop.time() + WAIT
        while len(smtp.received) < 2 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        subjects = [mail.data for mail in smtp.received]
        self.assertEqual(len(subjects), 2, subjects)
        self.assertTrue(all(b"Parking Gare, borne 2" in data for data in subjects))
        self.assertEqual({mail.recipient for mail in smtp.received}, {"ops@example.com", "oncall@example.com"})
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
        output = (await process.stdout.read()).decode()
        self.assertNotIn("smtp-password", output)
