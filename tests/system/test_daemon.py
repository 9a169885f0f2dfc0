"""
The real daemon as operators run it: ``twistd -n ocppproxy -c <config>`` in a
subprocess, stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
import tempfile

from ocpp.v16 import call
from twisted.trial.unittest import SkipTest

from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station, poll_until
from ..redisserver import free_port

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


class DaemonTestCase(ProxyTestCase):
    """Runs twistd with a configuration file and reads its log."""

    async def run_daemon(
        self, config_text: str, environ=None, twistd_options=(), stdout=asyncio.subprocess.PIPE, launcher=()
    ):
        """
        Start twistd; C{environ} is added to the environment, C{twistd_options} come
        before the plugin, C{launcher} is a command that runs twistd.
        """
        path = self.config_path = os.path.abspath(self.mktemp() + ".yaml")
        with open(path, "w") as out:
            out.write(config_text)
        # No PYTHONPATH: this runs the installed package and plugin, as operators do.
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.update(environ or {})
        process = await asyncio.create_subprocess_exec(
            *launcher, TWISTD, "-n", "--pidfile=", *twistd_options, "ocppproxy", "-c", path,
            stdout=stdout, stderr=asyncio.subprocess.PIPE, env=env,
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


class DaemonTests(DaemonTestCase):
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


class ReloadTests(DaemonTestCase):
    """SIGHUP re-reads the configuration file of a running daemon, stations staying connected."""

    @staticmethod
    def write(path: str, text: str) -> None:
        with open(path, "w") as out:
            out.write(text)

    @async_test
    async def test_sighup_applies_live_settings_and_refuses_a_broken_file(self):
        """Log level, events and names change on SIGHUP; a broken file is one error line; the station stays."""
        central = CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        names = os.path.abspath(self.mktemp())
        self.write(names, "CP_R: Depot Nord\n")
        settings = (
            f'listen: "tcp:port=0:interface=127.0.0.1"\nprimary_url: "ws://127.0.0.1:{port}/ocpp/"\n'
            f'client_names: "{names}"\n'
        )
        process = await self.run_daemon(settings + "notify: {log: true, events: {connected_to_proxy: true}}\n")
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        station, websocket, _ = await connect_station(f"ws://127.0.0.1:{found.group(1)}/", "CP_R")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        boot = call.BootNotification(charge_point_model="M", charge_point_vendor="V")
        await station.call(boot)
        await self.read_until(process.stdout, r"ALERT Depot Nord \(CP_R\): connected")

        self.write(names, "CP_R: Depot Sud\n")
        self.write(
            self.config_path,
            settings + "log_level: debug\npending_call_timeout: 20\n"
            "notify: {log: true, events: {station_boot: true}}\n",
        )
        process.send_signal(signal.SIGHUP)
        found, _ = await self.read_until(process.stdout, r"configuration reloaded .*: (.*) applied")
        self.assertEqual(found.group(1), "log_level, notify.events")
        await self.read_until(process.stdout, r"pending_call_timeout changed; applied only after a restart")
        await station.call(call.Heartbeat())
        await self.read_until(process.stdout, r"station CP_R -> primary: \[2,.*Heartbeat")
        await station.call(boot)
        await self.read_until(process.stdout, r"ALERT Depot Sud \(CP_R\): ")

        self.write(self.config_path, 'primary_url: "http://127.0.0.1/"\nlog_level: warn\n')
        process.send_signal(signal.SIGHUP)
        found, _ = await self.read_until(process.stdout, r"configuration reload refused: (.*)")
        self.assertEqual(
            found.group(1).strip(),
            f"configuration error in {self.config_path}: primary_url: must be a ws:// or wss:// URL,"
            " got 'http://127.0.0.1/'; the running configuration stays",
        )
        await station.call(call.Heartbeat())
        await self.read_until(process.stdout, r"station CP_R -> primary: \[2,.*Heartbeat")
        self.assertIsNone(websocket.close_code)
        self.assertEqual(len(central.connections), 1)
        self.assertFalse(central.connections[0].closed.is_set())
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)

    @async_test
    async def test_sighup_as_soon_as_listening(self):
        """A SIGHUP sent as soon as the daemon listens (systemd: right after READY=1) reloads, never kills."""
        settings = 'listen: "tcp:port=0:interface=127.0.0.1"\nprimary_url: "ws://127.0.0.1:1/"\n'
        process = await self.run_daemon(settings)
        await self.read_until(process.stdout, r"listening on")
        self.write(self.config_path, settings + "log_level: debug\n")
        process.send_signal(signal.SIGHUP)
        await self.read_until(process.stdout, r"configuration reloaded .*: log_level applied")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)


    @async_test
    async def test_frames_flow_while_a_slow_reload_runs(self):
        """
        A reload whose new Apprise channel takes 2 s to load (a slow stand-in for
        Apprise's plugin import) runs beside the relaying: a Heartbeat sent meanwhile is
        answered at once, and the reload is applied afterwards.
        """
        central = CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        stand_in = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(stand_in, "apprise"))
        started = os.path.join(stand_in, "import-started")
        with open(os.path.join(stand_in, "apprise", "__init__.py"), "w") as out:
            out.write(
                "import time\n"
                f"open({started!r}, 'w').close()\n"
                "time.sleep(2)\n"
                "class Apprise:\n"
                "    @staticmethod\n"
                "    def instantiate(url):\n"
                "        return object()\n"
            )
        settings = f'listen: "tcp:port=0:interface=127.0.0.1"\nprimary_url: "ws://127.0.0.1:{port}/ocpp/"\n'
        process = await self.run_daemon(settings, environ={"PYTHONPATH": stand_in})
        found, _ = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        station, websocket, _ = await connect_station(f"ws://127.0.0.1:{found.group(1)}/", "CP_SLOW")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.Heartbeat())
        self.write(self.config_path, settings + 'notify: {apprise: {urls: ["json://127.0.0.1:1/"]}}\n')
        process.send_signal(signal.SIGHUP)
        loop = asyncio.get_event_loop()

        async def import_started() -> bool:
            return os.path.exists(started)

        await poll_until(import_started, bool, lambda _: "the reload did not import apprise")
        sent = loop.time()
        await asyncio.wait_for(station.call(call.Heartbeat()), WAIT)
        self.assertLess(loop.time() - sent, 1.0)
        await self.read_until(process.stdout, r"configuration reloaded .*: notify.apprise applied")
        self.assertGreater(loop.time() - sent, 1.0)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)


class LogLevelTests(DaemonTestCase):
    """C{log_level} governs Twisted's own lines too; a reload that applied something says so at warn."""

    async def reconnecting_secondary(self, level: str) -> tuple[asyncio.subprocess.Process, list[str]]:
        """
        A daemon at C{level} whose station's secondary goes away and is given up after
        three quick attempts; the lines up to the giving up, and the running daemon.
        """
        primary, secondary = CentralSystem(100), CentralSystem(200)
        primary_port, secondary_port = await primary.start(), await secondary.start()
        self.addCleanup(lambda: asyncio.ensure_future(primary.stop()))
        port = free_port()
        self.settings = (
            f'listen: "tcp:port={port}:interface=127.0.0.1"\n'
            f'primary_url: "ws://127.0.0.1:{primary_port}/ocpp/"\n'
            f'secondary_url: "ws://127.0.0.1:{secondary_port}/ocpp/"\n'
            "reconnect: {initial_delay: 0.05, factor: 1, max_delay: 0.05, max_attempts: 3}\n"
        )
        process = await self.run_daemon(self.settings + f"log_level: {level}\n")

        async def connect():
            try:
                return await connect_station(f"ws://127.0.0.1:{port}/", "CP_L")
            except OSError:
                return None

        station, websocket, _ = await poll_until(connect, bool, lambda _: "the daemon never listened", interval=0.1)
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await secondary.wait_connections(1)
        await secondary.stop()
        _, lines = await self.read_until(process.stdout, r"giving up on secondary")
        await station.call(call.Heartbeat())
        return process, lines

    @async_test
    async def test_twisted_retry_lines_follow_log_level(self):
        """At warn, ClientService's "Scheduling retry" info lines are not shown (at info they are)."""
        process, lines = await self.reconnecting_secondary("info")
        self.assertTrue([line for line in lines if "Scheduling retry" in line], lines)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)

        process, lines = await self.reconnecting_secondary("warn")
        self.assertEqual([line for line in lines if "Scheduling retry" in line], [])
        # twistd's own two start-up lines are written before the configuration's level can apply.
        self.assertEqual([line for line in lines if "#info]" in line and "AppLogger#info" not in line], [])

    @async_test
    async def test_reload_summary_at_warn(self):
        """At log_level warn, a SIGHUP that applied a change leaves one line naming the keys."""
        process, _ = await self.reconnecting_secondary("warn")
        with open(self.config_path, "w") as out:
            out.write(self.settings + "log_level: warn\nnotify: {log: true}\n")
        process.send_signal(signal.SIGHUP)
        found, _ = await self.read_until(process.stdout, r"configuration reloaded .*: (.*) applied")
        self.assertEqual(found.group(1), "notify.log")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)


class SystemdTests(DaemonTestCase):
    """The daemon under a stand-in for systemd: a notification socket owned by the test."""

    @async_test
    async def test_ready_after_listening_watchdog_and_stopping(self):
        """READY=1 arrives once the port accepts stations, WATCHDOG=1 follows, STOPPING=1 at SIGTERM."""
        directory = tempfile.mkdtemp(prefix="ocppproxy-")  # AF_UNIX paths: at most 108 bytes
        self.addCleanup(shutil.rmtree, directory)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(notify.close)
        notify.bind(os.path.join(directory, "notify"))
        notify.setblocking(False)
        loop = asyncio.get_event_loop()

        async def next_state() -> str:
            return (await asyncio.wait_for(loop.sock_recv(notify, 4096), WAIT)).decode()

        process = await self.run_daemon(
            'listen: "tcp:port=0:interface=127.0.0.1"\nprimary_url: "ws://127.0.0.1:1/"\n',
            environ={"NOTIFY_SOCKET": notify.getsockname(), "WATCHDOG_USEC": "200000"},
        )
        ready = await next_state()
        found = re.fullmatch(r"READY=1\nSTATUS=listening on .*port=(\d+)\)", ready)
        self.assertIsNotNone(found, ready)
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", int(found.group(1))), WAIT)
        writer.close()
        self.assertEqual(await next_state(), "WATCHDOG=1")
        process.send_signal(signal.SIGTERM)
        states = [await next_state()]
        while states[-1] == "WATCHDOG=1":
            states.append(await next_state())
        self.assertEqual(states[-1], "STOPPING=1")
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)


    @async_test
    async def test_socket_activation(self):
        """With listen: systemd:domain=INET:index=0 the daemon serves the socket systemd passes it."""
        launcher = shutil.which("systemd-socket-activate")
        if launcher is None:
            raise SkipTest("systemd-socket-activate is not installed: socket activation not tested")
        central = CentralSystem(100)
        central_port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = await self.run_daemon(
            f'listen: "systemd:domain=INET:index=0"\nprimary_url: "ws://127.0.0.1:{central_port}/ocpp/"\n',
            launcher=[launcher, "--listen", f"127.0.0.1:{port}", "--fdname=ocppproxy.socket"],
        )
        await self.read_until(process.stderr, r"Listening on 127.0.0.1:\d+ as 3")
        station, websocket, _ = await connect_station(f"ws://127.0.0.1:{port}/", "CP_S")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        await self.read_until(process.stdout, rf"ocppproxy listening on .*port={port}\)")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)


    @async_test
    async def test_socket_activation_without_the_socket(self):
        """listen: systemd:... with no socket passed stops start-up with one critical line and status 1."""
        process = await self.run_daemon('listen: "systemd:domain=INET:index=0"\nprimary_url: "ws://127.0.0.1:1/"\n')
        status = await asyncio.wait_for(process.wait(), WAIT)
        stdout = (await process.stdout.read()).decode()
        self.assertEqual(status, 1)
        self.assertIn(
            "cannot listen on systemd:domain=INET:index=0: systemd passed no such socket (is the socket unit active?)",
            stdout,
        )
        self.assertNotIn("Traceback", stdout)


class JournalTests(DaemonTestCase):
    """twistd --logger=ocppproxy.journal.log_observer with standard output on a stream named by JOURNAL_STREAM."""

    @async_test
    async def test_lines_carry_their_syslog_priority(self):
        """Info, warning and error lines start with <6>, <4> and <3>, and every line has a prefix."""
        read_end, write_end = os.pipe()
        status = os.fstat(write_end)
        try:
            process = await self.run_daemon(
                'listen: "tcp:port=0:interface=127.0.0.1"\nprimary_url: "ws://127.0.0.1:1/"\n'
                "notify: {events: {station_boot: true}}\n",
                environ={"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"},
                twistd_options=["--logger=ocppproxy.journal.log_observer"],
                stdout=write_end,
            )
        finally:
            os.close(write_end)
        journal = asyncio.StreamReader()
        transport, _ = await asyncio.get_event_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(journal), os.fdopen(read_end, "rb")
        )
        self.addCleanup(transport.close)
        await self.read_until(journal, r"^<6>\[[^]]+\] ocppproxy listening on")
        self.write_config('primary_url: "http://127.0.0.1/"\n')
        process.send_signal(signal.SIGHUP)
        await self.read_until(journal, r"^<3>\[[^]]+\] configuration reload refused")
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
        lines = (await asyncio.wait_for(journal.read(), WAIT)).decode().splitlines()
        self.assertTrue(all(re.match(r"<[2-7]>", line) for line in lines), lines)

    def write_config(self, text: str) -> None:
        with open(self.config_path, "w") as out:
            out.write(text)


class NodeConfigTests(ProxyTestCase):
    """Users of the Node tool point -c at their config.json and keep clientIdToHuman.json beside it."""

    @async_test
    async def test_node_config_json_runs_with_names_and_email(self):
        """The Node example config (local addresses put in) relays, and mails a fault naming the station."""
        import json
        import socket

        from twisted.internet import reactor

        from ..smtpserver import SmtpTestServer

        central = CentralSystem(100)
        central_port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        smtp = SmtpTestServer(users={"alerts@example.com": "smtp-password"})
        smtp_port = smtp.listen(reactor)
        self.addCleanup(smtp.stop)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            proxy_port = probe.getsockname()[1]
        example = os.path.join(os.path.dirname(__file__), "..", "..", "etc", "node-config.example.json")
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
