"""Transaction ids the secondary understands (OCPP 1.6): translation rules, the state file, end to end."""

from __future__ import annotations

import asyncio
import json
import os

from ocpp.v16 import call
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.core.transactions import PER_STATION_LIMIT, TransactionIdTranslator, TransactionStore
from ocppproxy.relay.proxy import ProxyService
from ocppproxy.relay.statefile import StateFile, read_state, write_state

from ..e2e import ProxyTestCase, async_test
from ..peers import WAIT, CentralSystem, connect_station, wait_until


def frame(*parts):
    payload = json.dumps(list(parts)).encode()
    return parse_frame(payload), payload


class TranslatorTests(SynchronousTestCase):
    def setUp(self):
        self.changes = []
        self.store = TransactionStore(lambda: self.changes.append(1))
        self.translator = TransactionIdTranslator("CP_1", self.store)

    def start(self, primary_id=7, secondary_id=3, order=("primary", "secondary")):
        start, _ = frame(
            2, "s1", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "x"}
        )
        self.translator.station_frame(start)
        answers = {"primary": primary_id, "secondary": secondary_id}
        for upstream in order:
            answer, _ = frame(3, "s1", {"transactionId": answers[upstream], "idTagInfo": {"status": "Accepted"}})
            self.translator.upstream_frame(upstream, answer)

    def test_meter_values_carry_the_secondarys_id(self):
        """MeterValues with the primary's transactionId reach the secondary with its own id, either answer order."""
        for order in (("primary", "secondary"), ("secondary", "primary")):
            self.start(order=order)
            meter, payload = frame(2, "m1", "MeterValues", {"connectorId": 1, "transactionId": 7, "meterValue": []})
            self.assertEqual(json.loads(self.translator.to_secondary(meter, payload))[3]["transactionId"], 3)

    def test_stop_translated_then_forgotten(self):
        """StopTransaction is translated for the secondary, then the pair is forgotten."""
        self.start()
        stop, payload = frame(2, "t1", "StopTransaction", {"transactionId": 7, "meterStop": 5, "timestamp": "x"})
        self.assertEqual(json.loads(self.translator.to_secondary(stop, payload))[3]["transactionId"], 3)
        self.assertIsNone(self.store.secondary_id("CP_1", 7))
        self.assertEqual(self.store.dump(), {})

    def test_remote_stop_from_secondary_gets_the_primarys_id(self):
        """The secondary's RemoteStopTransaction reaches the station with the primary's id (the one it knows)."""
        self.start()
        remote, payload = frame(2, "r1", "RemoteStopTransaction", {"transactionId": 3})
        self.assertEqual(json.loads(self.translator.from_secondary(remote, payload))[3], {"transactionId": 7})
        profile, payload = frame(
            2, "p1", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {"transactionId": 3, "x": 1}}
        )
        translated = json.loads(self.translator.from_secondary(profile, payload))[3]
        self.assertEqual(translated["csChargingProfiles"], {"transactionId": 7, "x": 1})

    def test_unknown_ids_and_other_frames_untouched(self):
        """Frames without a known id are passed byte for byte."""
        meter, payload = frame(2, "m1", "MeterValues", {"connectorId": 1, "transactionId": 99, "meterValue": []})
        self.assertIs(self.translator.to_secondary(meter, payload), payload)
        heartbeat, payload = frame(2, "h", "Heartbeat", {})
        self.assertIs(self.translator.to_secondary(heartbeat, payload), payload)

    def test_store_is_bounded_and_round_trips(self):
        """At most PER_STATION_LIMIT pairs per station; dump and load restore them."""
        for number in range(PER_STATION_LIMIT + 10):
            self.store.remember("CP_1", number, number + 1000)
        dumped = self.store.dump()
        self.assertEqual(len(dumped["CP_1"]), PER_STATION_LIMIT)
        restored = TransactionStore()
        self.assertEqual(restored.load(json.loads(json.dumps(dumped))), 0)
        self.assertEqual(restored.secondary_id("CP_1", PER_STATION_LIMIT + 9), PER_STATION_LIMIT + 1009)
        # What is not in dump's shape is skipped and counted: a station, a pair; the whole file.
        self.assertEqual(restored.load({"CP_2": "garbage", "CP_3": [[1, "x"], [2, 3]]}), 2)
        self.assertEqual(restored.secondary_id("CP_3", 2), 3)
        self.assertEqual((restored.load([]), restored.load(None)), (1, 0))


class NamedUpstreamStoreTests(SynchronousTestCase):
    """The store by upstream name: what earlier releases wrote is read as primary and secondary; names round-trip."""

    def test_earlier_shape_read_as_primary_and_secondary(self):
        """[[primary id, secondary id]] (the file and Redis shape before named upstreams) becomes named ids."""
        store = TransactionStore()
        self.assertEqual(store.load({"CP_1": [[101, 201], [102, 202]]}), 0)
        self.assertEqual(store.ids("CP_1", 101), {"primary": 101, "secondary": 201})
        self.assertEqual(store.station_tx("CP_1", "secondary", 202), 102)
        self.assertEqual(
            store.dump(),
            {"CP_1": [[101, {"primary": 101, "secondary": 201}], [102, {"primary": 102, "secondary": 202}]]},
        )

    def test_names_and_a_twice_open_id_round_trip(self):
        """Ids of any upstream names, and the same station id open twice, survive dump and load in order."""
        store = TransactionStore()
        store.started("CP_1", 201, {"csms-a": 201, "csms-b": 7, "analytics": 3})
        self.assertEqual(
            store.started("CP_1", 201, {"csms-b": 201, "csms-a": 305}), {"csms-a": 201, "csms-b": 7, "analytics": 3}
        )
        restored = TransactionStore()
        self.assertEqual(restored.load(json.loads(json.dumps(store.dump()))), 0)
        self.assertEqual(restored.ids("CP_1", 201), {"csms-b": 201, "csms-a": 305})
        restored.finished("CP_1", 201)
        self.assertEqual(restored.ids("CP_1", 201), {"csms-a": 201, "csms-b": 7, "analytics": 3})
        self.assertEqual(restored.load({"CP_2": [[5, {"a": "x"}], [6, {}], [7, {"a": 1}]]}), 2)


class TransactionEndToEndTests(ProxyTestCase):
    @async_test
    async def test_secondary_sees_its_own_ids_across_a_restart(self):
        """MeterValues and StopTransaction reach the secondary with its id, even after the proxy restarts."""
        primary, secondary = CentralSystem(100), CentralSystem(200)
        primary_port, secondary_port = await primary.start(), await secondary.start()
        self.addCleanup(lambda: asyncio.ensure_future(primary.stop()))
        self.addCleanup(lambda: asyncio.ensure_future(secondary.stop()))
        state = os.path.abspath(self.mktemp())
        settings = {
            "primary_url": f"ws://127.0.0.1:{primary_port}/ocpp/",
            "secondary_url": f"ws://127.0.0.1:{secondary_port}/ocpp/",
            "state_file": state,
        }
        base = await self.start_proxy(**settings)
        station, websocket, _ = await connect_station(base, "CP_T")
        started = await station.call(
            call.StartTransaction(connector_id=1, id_tag="T", meter_start=0, timestamp="2026-11-24T10:00:00Z")
        )
        self.assertEqual(started.transaction_id, 101)
        sample = [{"timestamp": "2026-11-24T10:05:00Z", "sampledValue": [{"value": "1500"}]}]
        await station.call(call.MeterValues(connector_id=1, transaction_id=101, meter_value=sample))
        (secondary_side,) = await secondary.wait_connections(1)
        await wait_until(lambda: len(secondary_side.session.received) >= 2, secondary_side.session.changed)
        self.assertEqual(secondary_side.session.received[1][3]["transactionId"], 201)
        stopped = await asyncio.wait_for(
            secondary_side.session.call(call.RemoteStopTransaction(transaction_id=201)), WAIT
        )
        self.assertEqual(stopped.status, "Accepted")
        remote = [frame for frame in station.received if frame[0] == 2 and frame[2] == "RemoteStopTransaction"]
        self.assertEqual(remote[0][3], {"transactionId": 101})

        await websocket.close()
        await Deferred.asFuture(self.proxy.stopService(), asyncio.get_event_loop())
        self.assertEqual(read_state(state), {"CP_T": [[101, {"primary": 101, "secondary": 201}]]})
        base = await self.start_proxy(**settings)
        station, websocket, _ = await connect_station(base, "CP_T")
        self.addCleanup(lambda: asyncio.ensure_future(websocket.close()))
        await station.call(call.StopTransaction(meter_stop=10, timestamp="2026-11-24T11:00:00Z", transaction_id=101))
        second = (await secondary.wait_connections(2))[1]
        await wait_until(lambda: second.session.received, second.session.changed)
        self.assertEqual(second.session.received[0][3]["transactionId"], 201)
        primary_stop = (await primary.wait_connections(2))[1]
        await wait_until(lambda: primary_stop.session.received, primary_stop.session.changed)
        self.assertEqual(primary_stop.session.received[0][3]["transactionId"], 101)


class StateFileTests(ProxyTestCase):
    @async_test
    async def test_changes_written_atomically_and_flushed(self):
        """Changes are written off the reactor thread, coalesced; flush writes what is pending."""
        path = os.path.abspath(self.mktemp())
        data = {"CP_1": [[1, 2]]}
        state = StateFile(path, lambda: data, reactor, delay=10.0)
        state.changed()
        state.changed()
        await Deferred.asFuture(state.flush(), asyncio.get_event_loop())
        self.assertEqual(read_state(path), data)
        self.assertFalse(os.path.exists(path + ".tmp"))
        self.assertIsNone(read_state(path + ".missing"))


class StateFileReadWriteTests(SynchronousTestCase):
    """What start-up reads, and how a write reaches the disk."""

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "state.json")
        self.messages = []
        globalLogPublisher.addObserver(self.messages.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.messages.append)

    def errors(self) -> list[str]:
        return [formatEvent(event) for event in self.messages if "state file" in formatEvent(event)]

    def test_missing_file_is_a_first_start(self):
        """No file yet: nothing to restore, nothing logged."""
        self.assertIsNone(read_state(self.path))
        self.assertEqual(self.errors(), [])

    def test_truncated_file_is_named_and_kept_aside(self):
        """A half-written file is not read as empty silently: one error line, the file moved aside, start-up goes on."""
        whole = json.dumps({"CP_1": [[101, 201]], "CP_2": [[102, 202]]}).encode()
        with open(self.path, "wb") as out:
            out.write(whole[: len(whole) // 2])
        self.assertIsNone(read_state(self.path, clock=lambda: 1700000000))
        (line,) = self.errors()
        self.assertIn(f"state file {self.path} is corrupt ({len(whole) // 2} bytes", line)
        self.assertIn(f"kept as {self.path}.corrupt-1700000000", line)
        self.assertFalse(os.path.exists(self.path))
        with open(f"{self.path}.corrupt-1700000000", "rb") as kept:
            self.assertEqual(kept.read(), whole[: len(whole) // 2])

    def test_empty_and_binary_files_are_corrupt_too(self):
        """A zero-length file (what a crash can leave without fsync) and garbage are reported the same way."""
        for content in (b"", b"\xff\xfe\x00garbage"):
            with open(self.path, "wb") as out:
                out.write(content)
            self.assertIsNone(read_state(self.path))
        self.assertEqual(len(self.errors()), 2)
        self.assertTrue(all(" is corrupt (" in line for line in self.errors()))

    def test_json_of_another_shape_is_named(self):
        """Valid JSON that is not what the proxy writes: one warning with the count skipped; start-up goes on."""
        with open(self.path, "w") as out:
            json.dump({"CP_1": [[101, 201], "x"], "CP_2": 7}, out)
        config = config_from_mapping({"primary_url": "ws://127.0.0.1:9/ocpp/", "state_file": self.path})
        proxy = ProxyService(config, MemoryReactorClock())
        self.assertEqual(proxy.transactions.secondary_id("CP_1", 101), 201)
        (line,) = self.errors()
        self.assertIn(f"state file {self.path}: 2 entries not in the expected shape were skipped", line)

    def test_write_is_synced_then_renamed_then_directory_synced(self):
        """write_state syncs the temporary file, renames it over the old file, then syncs the directory."""
        write_state(self.path, {"old": 1})
        steps = []
        real_fsync, real_replace = os.fsync, os.replace
        self.patch(
            os, "fsync", lambda fd: (steps.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))
        )
        self.patch(os, "replace", lambda a, b: (steps.append(("replace", a, b)), real_replace(a, b)))
        write_state(self.path, {"CP_1": [[1, 2]]})
        self.assertEqual(
            steps,
            [
                ("fsync", self.path + ".tmp"),
                ("replace", self.path + ".tmp", self.path),
                ("fsync", self.directory),
            ],
        )
        self.assertEqual(read_state(self.path), {"CP_1": [[1, 2]]})
        self.assertEqual(os.listdir(self.directory), ["state.json"])

    def test_temporary_file_left_by_a_crash_is_ignored_then_replaced(self):
        """A kill during a write leaves a half .tmp beside the whole file: start-up reads the whole one."""
        write_state(self.path, {"CP_1": [[1, 2]]})
        with open(self.path + ".tmp", "w") as half:
            half.write('{"CP_1":[[1,2]],"CP_2":[[3')
        self.assertEqual(read_state(self.path), {"CP_1": [[1, 2]]})
        self.assertEqual(self.errors(), [])
        write_state(self.path, {"CP_2": [[3, 4]]})
        self.assertEqual(read_state(self.path), {"CP_2": [[3, 4]]})
        self.assertEqual(os.listdir(self.directory), ["state.json"])
