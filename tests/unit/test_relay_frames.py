"""
How frames are relayed, on the synchronous harness (tests/harness.py): the real proxy
service and protocols between in-memory stations and central systems, no sockets.
Every "nothing else arrives" check has a barrier: a later frame on the same connection
that must arrive, so the frame that must not would have arrived before it.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ..harness import RelayHarness

BOOT = '[2,"b-1","BootNotification",{"chargePointModel":"M","chargePointVendor":"V"}]'


def answer(message_id: str, by: str) -> str:
    """The answer the in-memory central system C{by} gives to any CALL."""
    return f'[3,"{message_id}",{{"answeredBy":"{by}"}}]'


class StationCallTests(SynchronousTestCase):
    """CALLs from the station go to every upstream; only the primary's answer comes back."""

    def setUp(self) -> None:
        self.harness = RelayHarness(self, secondary=True)
        self.station = self.harness.connect_station("CP_1")

    def test_station_call_reaches_both_upstreams(self):
        """A BootNotification reaches the primary and the secondary unchanged, on /ocpp/<station id>."""
        self.station.send(BOOT)
        self.harness.flush()
        for central in (self.harness.primary, self.harness.secondary):
            (connection,) = central.connections
            self.assertEqual(connection.request.path, "/ocpp/CP_1")
            self.assertEqual(connection.received, [BOOT])

    def test_only_the_primarys_answer_reaches_the_station(self):
        """Both central systems answer; the station gets the primary's answer, never the secondary's."""
        self.station.send(BOOT)
        self.harness.flush()
        secondary = self.harness.secondary.connection
        self.assertEqual(secondary.sent, [answer("b-1", "secondary")])
        # Barrier: a CALL the secondary sends after its answer reaches the station.
        secondary.send('[2,"s-1","GetConfiguration",{}]')
        self.harness.flush()
        self.assertEqual(self.station.received, [answer("b-1", "primary"), '[2,"s-1","GetConfiguration",{}]'])

    def test_send_goes_to_every_upstream(self):
        """An OCPP 2.1 SEND (type 6) reaches both central systems, and nothing comes back for it."""
        station = self.harness.connect_station("CP_21", subprotocols=["ocpp2.1"])
        self.assertEqual(station.subprotocol, "ocpp2.1")
        send = (
            '[6,"send-1","NotifyPeriodicEventStream",{"id":1,"pending":0,"basetime":"2026-11-24T10:00:00Z","data":[]}]'
        )
        station.send(send)
        station.send('[2,"h-1","Heartbeat",{}]')
        self.harness.flush()
        self.assertEqual(self.harness.primary.connection.received, [send, '[2,"h-1","Heartbeat",{}]'])
        self.assertEqual(self.harness.secondary.connection.received, [send, '[2,"h-1","Heartbeat",{}]'])
        self.assertEqual(station.received, [answer("h-1", "primary")])

    def test_fragmented_messages_are_relayed_whole(self):
        """A message sent in several WebSocket frames is relayed as one message, byte for byte, both ways."""
        call = '[2,"frag-1","DataTransfer",{"vendorId":"X","data":"' + "y" * 5000 + '"}]'
        self.station.sendMessage(call.encode(), False, fragmentSize=1000)
        self.harness.flush()
        self.assertEqual(self.harness.primary.connection.received, [call])
        self.assertEqual(self.harness.secondary.connection.received, [call])
        request = '[2,"frag-2","GetVariables",{"getVariableData":[]}]'
        self.harness.primary.connection.sendMessage(request.encode(), False, fragmentSize=5)
        self.harness.flush()
        self.assertEqual(self.station.received, [answer("frag-1", "primary"), request])

    def test_primarys_answer_to_no_pending_call_is_dropped_with_a_warning(self):
        """An answer from the primary to no CALL of the station never reaches it, and is logged."""
        self.harness.primary.connection.send('[3,"nobody-asked",{}]')
        self.harness.flush()
        self.assertTrue(self.harness.logged("CALLRESULT nobody-asked from primary dropped"))
        # Barrier: the answer to a later CALL reaches the station.
        self.station.send('[2,"h-1","Heartbeat",{}]')
        self.harness.flush()
        self.assertEqual(self.station.received, [answer("h-1", "primary")])


class UpstreamCallTests(SynchronousTestCase):
    """CALLs from a central system reach the station; its answer goes back to the asker only."""

    def setUp(self) -> None:
        self.harness = RelayHarness(self, secondary=True)
        self.station = self.harness.connect_station("CP_1")
        self.primary = self.harness.primary.connection
        self.secondary = self.harness.secondary.connection

    def station_answers(self, result: str = '{"status":"Accepted"}') -> None:
        """The station answers the last CALL it received."""
        message_id = self.station.frames()[-1][1]
        self.station.send(f'[3,"{message_id}",{result}]')
        self.harness.flush()

    def check_answered_to_the_asker_only(self, asker, other) -> None:
        """A CALL from C{asker} reaches the station, whose answer goes to C{asker} and not to C{other}."""
        request = '[2,"c-1","ChangeAvailability",{"connectorId":0,"type":"Inoperative"}]'
        asker.send(request)
        self.harness.flush()
        self.assertEqual(self.station.received, [request])
        self.station_answers()
        self.assertEqual(asker.received, ['[3,"c-1",{"status":"Accepted"}]'])
        # Barrier: a later station CALL reaches the other upstream, after where a misrouted answer would be.
        self.station.send('[2,"h-1","Heartbeat",{}]')
        self.harness.flush()
        self.assertEqual(other.received, ['[2,"h-1","Heartbeat",{}]'])

    def test_secondarys_call_is_answered_to_the_secondary_only(self):
        """A CALL from the secondary reaches the station; the station's answer goes to the secondary, not the primary."""
        self.check_answered_to_the_asker_only(self.secondary, self.primary)

    def test_primarys_call_is_answered_to_the_primary_only(self):
        """A CALL from the primary reaches the station; the station's answer goes to the primary, not the secondary."""
        self.check_answered_to_the_asker_only(self.primary, self.secondary)

    def test_station_callresulterror_returns_to_the_asker(self):
        """The station's OCPP 2.1 CALLRESULTERROR (type 5) to the secondary's CALL goes to the secondary only."""
        station = self.harness.connect_station("CP_21", subprotocols=["ocpp2.1"])
        primary, secondary = self.harness.primary.connection, self.harness.secondary.connection
        secondary.send('[2,"q-1","GetVariables",{"getVariableData":[]}]')
        self.harness.flush()
        self.assertEqual(station.frames()[0][:2], [2, "q-1"])
        station.send('[5,"q-1","InternalError","could not build the result",{}]')
        station.send('[2,"h-1","Heartbeat",{}]')
        self.harness.flush()
        self.assertEqual(secondary.received[0], '[5,"q-1","InternalError","could not build the result",{}]')
        self.assertEqual(primary.received, ['[2,"h-1","Heartbeat",{}]'])

    def test_one_upstream_call_at_a_time_with_the_same_id_from_both(self):
        """Both central systems send a CALL with the same id: the station gets one at a time, each asker its answer."""
        self.primary.send('[2,"same-id","ChangeAvailability",{"connectorId":1,"type":"Inoperative"}]')
        self.secondary.send('[2,"same-id","ChangeAvailability",{"connectorId":2,"type":"Inoperative"}]')
        self.harness.flush()
        self.assertEqual(len(self.station.received), 1)
        for _ in range(2):
            connector = self.station.frames()[-1][3]["connectorId"]
            self.station_answers(f'{{"status":"Accepted","connectorId":{connector}}}')
        self.assertEqual([frame[1] for frame in self.station.frames()], ["same-id", "same-id"])
        self.assertEqual(self.primary.received, ['[3,"same-id",{"status":"Accepted","connectorId":1}]'])
        self.assertEqual(self.secondary.received, ['[3,"same-id",{"status":"Accepted","connectorId":2}]'])

    def test_read_only_secondary_gets_security_error(self):
        """With upstream_calls.secondary limited, a refused action gets SecurityError and never reaches the station."""
        harness = RelayHarness(self, secondary=True, upstream_calls={"secondary": ["GetConfiguration"]})
        station = harness.connect_station("CP_RO")
        harness.secondary.connection.send('[2,"c-1","ChangeAvailability",{"connectorId":0,"type":"Inoperative"}]')
        harness.flush()
        (refusal,) = harness.secondary.connection.frames()
        self.assertEqual(refusal[:3], [4, "c-1", "SecurityError"])
        # Barrier: the primary's later CALL is the first the station gets.
        harness.primary.connection.send('[2,"p-1","GetConfiguration",{}]')
        harness.flush()
        self.assertEqual(station.received, ['[2,"p-1","GetConfiguration",{}]'])
        self.assertTrue(harness.logged("ChangeAvailability"))


class PendingCallTests(SynchronousTestCase):
    """Upstream CALLs wait their turn at the station, and not for ever."""

    def test_waiting_upstream_call_expires_with_generic_error(self):
        """A CALL waiting behind an unanswered one past pending_call_timeout is answered to its upstream with GenericError."""
        harness = RelayHarness(self, secondary=True, pending_call_timeout=5)
        station = harness.connect_station("CP_P")
        harness.primary.connection.send('[2,"c-1","GetConfiguration",{}]')
        harness.secondary.connection.send('[2,"c-2","GetConfiguration",{}]')
        harness.flush()
        harness.advance(4.5)
        self.assertEqual(harness.secondary.connection.received, [])
        harness.advance(1)
        (expired,) = harness.secondary.connection.frames()
        self.assertEqual(expired[:3], [4, "c-2", "GenericError"])
        # Barrier: the primary's next CALL reaches the station, which never got c-2.
        harness.primary.connection.send('[2,"c-3","GetConfiguration",{}]')
        harness.flush()
        self.assertEqual([frame[1] for frame in station.frames()], ["c-1", "c-3"])


class TransactionIdTests(SynchronousTestCase):
    """OCPP 1.6 transaction ids: the secondary sees its own, the primary the station's."""

    def test_secondary_sees_its_own_transaction_ids_both_ways(self):
        """MeterValues carry the secondary's id to it; its RemoteStopTransaction reaches the station with the primary's."""
        harness = RelayHarness(self, secondary=True)
        harness.primary.answer_calls = harness.secondary.answer_calls = False
        station = harness.connect_station("CP_T")
        primary, secondary = harness.primary.connection, harness.secondary.connection
        station.send('[2,"s-1","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,"timestamp":"2026"}]')
        harness.flush()
        primary.send('[3,"s-1",{"transactionId":101,"idTagInfo":{"status":"Accepted"}}]')
        secondary.send('[3,"s-1",{"transactionId":201,"idTagInfo":{"status":"Accepted"}}]')
        harness.flush()
        meter_values = '[2,"m-1","MeterValues",{"connectorId":1,"transactionId":101,"meterValue":[]}]'
        station.send(meter_values)
        harness.flush()
        self.assertEqual(primary.received[-1], meter_values)
        self.assertEqual(secondary.frames()[-1][3]["transactionId"], 201)
        secondary.send('[2,"r-1","RemoteStopTransaction",{"transactionId":201}]')
        harness.flush()
        # Only the primary's answer to StartTransaction before it: the secondary's was consumed.
        self.assertEqual(
            station.frames(),
            [
                [3, "s-1", {"transactionId": 101, "idTagInfo": {"status": "Accepted"}}],
                [2, "r-1", "RemoteStopTransaction", {"transactionId": 101}],
            ],
        )


class BadFrameTests(SynchronousTestCase):
    """Bad input gets a clear answer, is logged with the station id, and loses nothing else."""

    def setUp(self) -> None:
        self.harness = RelayHarness(self)

    def test_malformed_call_with_an_id_is_answered_with_callerror(self):
        """A CALL whose id can be read but which is malformed gets a CALLERROR (1.6 spelling) and goes nowhere."""
        station = self.harness.connect_station("BAD")
        station.send('[2,"x",5,{}]')
        station.send('[2,"ok-1","Heartbeat",{}]')
        self.harness.flush()
        self.assertEqual(
            station.received, ['[4, "x", "FormationViolation", "malformed CALL", {}]', answer("ok-1", "primary")]
        )
        self.assertEqual(self.harness.primary.connection.received, ['[2,"ok-1","Heartbeat",{}]'])

    def test_garbage_is_logged_and_the_station_keeps_being_relayed(self):
        """Frames that are not OCPP-J are logged with the station id; its next frames and other stations' are relayed."""
        good = self.harness.connect_station("GOOD")
        bad = self.harness.connect_station("BAD")
        bad.send("this is not OCPP")
        bad.send('[2, 17, "Heartbeat", {}]')
        bad.send('[2,"ok-1","Heartbeat",{}]')
        good.send('[2,"g-1","Heartbeat",{}]')
        self.harness.flush()
        self.assertTrue(self.harness.logged("station BAD sent a bad frame (not JSON)"))
        self.assertTrue(self.harness.logged("message id is not a non-empty string"))
        self.assertEqual(bad.received, [answer("ok-1", "primary")])
        self.assertEqual(good.received, [answer("g-1", "primary")])

    def test_malformed_call_in_201_is_answered_with_format_violation(self):
        """The same in OCPP 2.0.1 is answered with a CALLERROR FormatViolation (the 2.0.1 spelling)."""
        station = self.harness.connect_station("BAD", subprotocols=["ocpp2.0.1"])
        station.send('[2, "bad-2", 42, {}]')
        self.harness.flush()
        self.assertEqual(station.frames()[0][:3], [4, "bad-2", "FormatViolation"])

    def test_oversized_frame_closes_the_station_with_1009(self):
        """A frame over max_frame_size closes the station with 1009 (message too big); nothing of it goes upstream."""
        harness = RelayHarness(self, max_frame_size=4096)
        station = harness.connect_station("BIG")
        station.send('[2,"big","DataTransfer",{"data":"%s"}]' % ("x" * 5000))
        harness.flush()
        self.assertEqual(station.close_code, 1009)
        self.assertEqual(harness.primary.connection.received, [])

    def test_binary_frame_closes_the_station_with_1003(self):
        """A binary frame from the station closes it with 1003 (unsupported data)."""
        station = self.harness.connect_station("BIN")
        station.sendMessage(b"\x00\x01", True)
        self.harness.flush()
        self.assertEqual(station.close_code, 1003)

    def test_malformed_call_from_upstream_is_answered_to_it(self):
        """A malformed CALL from a central system is answered to it with a CALLERROR and never reaches the station."""
        station = self.harness.connect_station("CP_1")
        primary = self.harness.primary.connection
        primary.send('[2,"x",5,{}]')
        primary.send('[2,"p-1","GetConfiguration",{}]')
        self.harness.flush()
        self.assertEqual(primary.received, ['[4, "x", "FormationViolation", "malformed CALL", {}]'])
        self.assertEqual(station.received, ['[2,"p-1","GetConfiguration",{}]'])

    def test_exception_while_relaying_stays_with_that_frame(self):
        """A bug in the core while relaying one frame is logged with the station id; the next frames are relayed."""
        harness = RelayHarness(self)
        station = harness.connect_station("CP_ERR")
        relay = harness.proxy.sessions["CP_ERR"].relay
        original, failures = relay.from_station, []

        def broken_once(payload, now, binary=False):
            if b"boom-1" in payload and not failures:
                failures.append(payload)
                raise RuntimeError("routing bug")
            return original(payload, now, binary)

        relay.from_station = broken_once
        station.send('[2,"boom-1","Heartbeat",{}]')
        station.send('[2,"h-2","Heartbeat",{}]')
        harness.flush()
        self.assertEqual(station.received, [answer("h-2", "primary")])
        self.assertTrue(harness.logged("station CP_ERR: error relaying a frame from the station"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_failing_recorder_hides_no_frame(self):
        """A traffic-log recorder that fails on a frame costs that frame nothing: it is relayed, the failure logged."""
        failures = []

        def recorder(station_id, direction, upstream, payload):
            if b"boom-1" in payload and not failures:
                failures.append(payload)
                raise RuntimeError("recorder bug")

        harness = RelayHarness(self, recorder=recorder)
        station = harness.connect_station("CP_REC")
        station.send('[2,"boom-1","Heartbeat",{}]')
        station.send('[2,"h-2","Heartbeat",{}]')
        harness.flush()
        self.assertEqual(station.received, [answer("boom-1", "primary"), answer("h-2", "primary")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
