"""
Faults the daemon must survive without losing what it promises to keep: ``kill -9`` in
the middle of traffic (the state file) and a traffic-log disk that fills up. The real
daemon under twistd, real OCPP peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys

import treq
from ocpp.v16 import call
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest

from ocppproxy.relay import statefile

from ..e2e import async_test
from ..peers import WAIT, CentralSystem, connect_station, poll_until, wait_until
from .test_daemon import DaemonTestCase

NOW = "2026-12-03T10:00:00Z"


def read_json(path: str):
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def read_json_lines(path: str) -> list:
    """Every line of C{path} as JSON: fails on a half-written line."""
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as stream:
        return stream.read()


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)


class DaemonOutput:
    """Every line the daemon writes to a stream, read as it comes (a full pipe would block the daemon)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._reader = asyncio.ensure_future(self._read(stream))

    async def _read(self, stream) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode("utf-8", "replace"))

    def having(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def finished(self) -> list[str]:
        await asyncio.wait_for(self._reader, WAIT)
        return self.lines


class FaultTestCase(DaemonTestCase):
    """Starts the daemon and reads its output while it runs."""

    async def start(self, config: str) -> tuple[asyncio.subprocess.Process, str, DaemonOutput]:
        """
        Run the daemon on C{config} until it listens: (process, the stations' base URL, its
        output from then on); C{self.start_lines} keeps the lines up to listening.
        """
        process = await self.run_daemon(config)
        found, self.start_lines = await self.read_until(process.stdout, r"listening on .*port=(\d+)")
        return process, f"ws://127.0.0.1:{found.group(1)}/", DaemonOutput(process.stdout)


class KillTests(FaultTestCase):
    """kill -9, then a restart on the same configuration; a state file that a crash left broken."""

    @async_test
    async def test_kill_9_in_the_middle_of_a_write_leaves_the_last_whole_file(self):
        """A process killed half-way through writing the state file: the file is the last whole one."""
        path = os.path.abspath(self.mktemp() + ".json")
        # The second write stops half-way (its JSON half written and flushed) and waits
        # there to be killed.
        writer = (
            "import json, sys, time\n"
            "from ocppproxy.relay.statefile import write_state\n"
            "write_state(sys.argv[1], {'generation': 1, 'CP_K': [[101, 201]]})\n"
            "print('written', flush=True)\n"
            "def half_then_hang(data, stream, **options):\n"
            "    text = json.dumps(data, **options)\n"
            "    stream.write(text[: len(text) // 2])\n"
            "    stream.flush()\n"
            "    print('half written', flush=True)\n"
            "    time.sleep(WAIT)\n"
            "json.dump = half_then_hang\n"
            "write_state(sys.argv[1], {'generation': 2, 'CP_K': [[101, 201]], 'CP_L': [[102, 202]]})\n"
        ).replace("WAIT", str(WAIT))
        # The writer runs the ocppproxy this test imported.
        environ = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(statefile.__file__))}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", writer, path, stdout=asyncio.subprocess.PIPE, env=environ
        )
        self.addCleanup(lambda: process.returncode is None and process.kill())
        self.assertEqual(await asyncio.wait_for(process.stdout.readline(), WAIT), b"written\n")
        self.assertEqual(await asyncio.wait_for(process.stdout.readline(), WAIT), b"half written\n")
        process.send_signal(signal.SIGKILL)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), -signal.SIGKILL)
        self.assertEqual(read_json(path), {"generation": 1, "CP_K": [[101, 201]]})
        self.assertTrue(read_text(path + ".tmp").startswith('{"generation":2'))  # the kill was mid-write

    async def transactions(self, station, connector: int, rounds: list[int]) -> None:
        """Start and stop transactions until cancelled: every answer changes the state file."""
        while True:
            start = call.StartTransaction(connector_id=connector, id_tag="T", meter_start=0, timestamp=NOW)
            started = await station.call(start)
            await station.call(call.StopTransaction(meter_stop=1, timestamp=NOW, transaction_id=started.transaction_id))
            rounds[0] += 1

    async def meter_values(self, station, transaction_id: int) -> None:
        sample = [{"timestamp": NOW, "sampledValue": [{"value": "1500"}]}]
        while True:
            await station.call(call.MeterValues(connector_id=1, transaction_id=transaction_id, meter_value=sample))

    @async_test
    async def test_kill_9_in_traffic_keeps_the_secondarys_transaction_ids(self):
        """After kill -9 mid-traffic and a restart, the state file is whole and StopTransaction reaches the
        secondary with the id the secondary gave."""
        primary, secondary = CentralSystem(100), CentralSystem(200)
        primary_port, secondary_port = await primary.start(), await secondary.start()
        self.addCleanup(lambda: asyncio.ensure_future(primary.stop()))
        self.addCleanup(lambda: asyncio.ensure_future(secondary.stop()))
        state = os.path.abspath(self.mktemp() + ".json")
        config = (
            'listen: "tcp:port=0:interface=127.0.0.1"\n'
            f'primary_url: "ws://127.0.0.1:{primary_port}/ocpp/"\n'
            f'secondary_url: "ws://127.0.0.1:{secondary_port}/ocpp/"\n'
            f'state_file: "{state}"\n'
        )
        process, base, _ = await self.start(config)
        station, _, _ = await connect_station(base, "CP_K")
        start = call.StartTransaction(connector_id=1, id_tag="T", meter_start=0, timestamp=NOW)
        self.assertEqual((await station.call(start)).transaction_id, 101)
        ids_k = [[101, {"primary": 101, "secondary": 201}]]
        await self.until(lambda: os.path.exists(state) and read_json(state).get("CP_K") == ids_k)
        writes = {os.stat(state).st_mtime_ns}

        def written_again(times: int) -> bool:
            with contextlib.suppress(FileNotFoundError):
                writes.add(os.stat(state).st_mtime_ns)
            return len(writes) > times

        # Traffic that keeps the state file changing (a write per second at most), then kill -9
        # once it has been replaced twice more while that traffic goes on.
        busy, _, _ = await connect_station(base, "CP_L")
        rounds = [0]
        traffic = [
            asyncio.ensure_future(self.transactions(busy, 2, rounds)),
            asyncio.ensure_future(self.meter_values(station, 101)),
        ]
        await self.until(lambda: written_again(2), timeout=WAIT)
        process.send_signal(signal.SIGKILL)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), -signal.SIGKILL)
        self.assertGreater(rounds[0], 0)
        for task in traffic:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

        saved = read_json(state)
        self.assertEqual(saved["CP_K"], ids_k)
        # Killed between a start and a stop, or between the primary's answer and the secondary's.
        self.assertIn(
            saved.get("CP_L", []), ([], [[102, {"primary": 102}]], [[102, {"primary": 102, "secondary": 202}]])
        )

        process, base, output = await self.start(config)
        station, websocket, _ = await connect_station(base, "CP_K")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.StopTransaction(meter_stop=10, timestamp=NOW, transaction_id=101))

        def connections_of_cp_k():
            return [connection for connection in secondary.connections if connection.path.endswith("/CP_K")]

        await wait_until(lambda: len(connections_of_cp_k()) == 2, secondary.changed)
        session = connections_of_cp_k()[1].session
        await wait_until(lambda: session.received, session.changed)
        self.assertEqual(
            session.received[0][2:], ["StopTransaction", {"meterStop": 10, "timestamp": NOW, "transactionId": 201}]
        )
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
        self.assertEqual([line for line in await output.finished() if "state file" in line], [])
        self.assertEqual(read_json(state).get("CP_K"), None)  # stopped: forgotten, and written at shutdown

    @async_test
    async def test_truncated_state_file_is_named_and_start_up_goes_on(self):
        """A half-written state file: one error line naming it, kept aside; the daemon starts and relays."""
        central = CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        state = os.path.abspath(self.mktemp() + ".json")
        write_text(state, '{"CP_K":[[101,2')
        process, base, output = await self.start(
            f'listen: "tcp:port=0:interface=127.0.0.1"\nprimary_url: "ws://127.0.0.1:{port}/ocpp/"\n'
            f'state_file: "{state}"\n'
        )
        station, _, _ = await connect_station(base, "CP_K")
        answer = await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        self.assertEqual(answer.interval, 100)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
        (line,) = [line for line in self.start_lines + await output.finished() if "state file" in line]
        path = re.escape(state)
        self.assertRegex(
            line,
            rf"\[ocppproxy.relay.statefile.StateFile#error\] state file {path} is corrupt \(15 bytes, .*\); kept as {path}\.corrupt-\d+;",
        )
        (aside,) = [name for name in os.listdir(os.path.dirname(state)) if ".corrupt-" in name]
        self.assertEqual(read_text(os.path.join(os.path.dirname(state), aside)), '{"CP_K":[[101,2')


class TrafficLogDiskFullTests(FaultTestCase):
    """The traffic log's directory on a small tmpfs that fills up, then frees."""

    def mount_small_tmpfs(self) -> str:
        if os.geteuid() != 0:
            raise SkipTest("not root: cannot mount a small tmpfs (test_trafficlog injects ENOSPC instead)")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", directory],
            capture_output=True,
            text=True,
            check=False,
        )
        if mounted.returncode:
            raise SkipTest(f"mount -t tmpfs failed (no CAP_SYS_ADMIN here?): {mounted.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", directory], check=True)
        return directory

    @staticmethod
    def fill(path: str) -> None:
        """Write zeros to C{path} until the disk is full."""
        with open(path, "wb", buffering=0) as out:
            try:
                while True:
                    out.write(bytes(4096))
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise

    @async_test
    async def test_relaying_goes_on_one_error_per_outage_one_line_on_recovery(self):
        """A full traffic-log disk costs log lines, never an answer; one error line, one recovery line, whole lines."""
        directory = self.mount_small_tmpfs()
        central = CentralSystem(100)
        port = await central.start()
        self.addCleanup(lambda: asyncio.ensure_future(central.stop()))
        process, base, output = await self.start(
            f'listen: "tcp:port=0:interface=127.0.0.1"\nprimary_url: "ws://127.0.0.1:{port}/ocpp/"\n'
            f'traffic_log: {{directory: "{directory}"}}\nstatus: {{listen: "tcp:port=0:interface=127.0.0.1"}}\n'
        )
        (status_port,) = [
            found.group(1) for line in self.start_lines if (found := re.search(r"status page on .*port=(\d+)", line))
        ]
        traffic = os.path.join(directory, "traffic.jsonl")
        station, websocket, _ = await connect_station(base, "CP_F")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await self.until(lambda: os.path.exists(traffic) and len(read_json_lines(traffic)) == 4)
        self.fill(os.path.join(directory, "filler"))

        # A 6 KB frame takes more than the file's last page has left: a short write, then ENOSPC.
        sample = [{"timestamp": NOW, "sampledValue": [{"value": str(number)} for number in range(400)]}]
        for _ in range(3):
            await station.call(call.MeterValues(connector_id=1, meter_value=sample))
            await station.call(call.Heartbeat())
        # Four lines per call (station, upstream, answer, station): all of them tried and lost.
        await self.until_counted(status_port, "failed", 24)

        os.remove(os.path.join(directory, "filler"))
        await station.call(call.Heartbeat())
        await self.until_counted(status_port, "written", 8)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(await asyncio.wait_for(process.wait(), WAIT), 0)
        lines = [line for line in await output.finished() if "traffic log:" in line]
        self.assertEqual(len(lines), 2, lines)
        self.assertIn(f"traffic log: cannot write to {directory}: [Errno 28] No space left on device", lines[0])
        self.assertIn("traffic log: writing again; 24 lines were lost", lines[1])
        logged = read_json_lines(traffic)
        self.assertEqual(
            [(line["direction"], json.loads(line["frame"])[0]) for line in logged],
            [("from_station", 2), ("to_upstream", 2), ("from_upstream", 3), ("to_station", 3)] * 2,
        )
        self.assertEqual([json.loads(line["frame"])[2] for line in logged[::4]], ["BootNotification", "Heartbeat"])

    async def until_counted(self, status_port: str, outcome: str, count: int) -> None:
        """Wait (at most WAIT seconds) until the daemon's /metrics counts C{count} traffic-log lines C{outcome}."""
        loop = asyncio.get_event_loop()
        wanted = f'ocppproxy_traffic_log_lines_total{{outcome="{outcome}"}} {float(count)}'

        async def metrics() -> list[str]:
            response = await Deferred.asFuture(
                treq.get(f"http://127.0.0.1:{status_port}/metrics", persistent=False), loop
            )
            return (await Deferred.asFuture(response.content(), loop)).decode().splitlines()

        await poll_until(
            metrics,
            lambda lines: wanted in lines,
            lambda lines: f"{wanted!r} not in time: {[m for m in lines if 'traffic' in m]}",
            interval=0.05,
        )
