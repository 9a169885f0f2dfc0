"""
The control-plane API's CALLs to a station (issue 26), on the synchronous harness: they go
through the station's one-at-a-time queue of CALLs as a party of their own, never
overlap the central systems' CALLs, and their answers reach only the API.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.relay.api_calls import CallTimeout, QueueFull, StationGone

from ..harness import RelayHarness


class ApiCallThroughTheQueueTests(SynchronousTestCase):
    """The API's CALL waits its turn behind the primary's, and its answer goes to the API only."""

    def setUp(self) -> None:
        self.harness = RelayHarness(self, secondary=True, pending_call_timeout=40)
        self.station = self.harness.connect_station("CP_1")
        self.session = self.harness.proxy.sessions["CP_1"]

    def answers(self, call) -> list:
        done: list = []
        call.addBoth(done.append)
        return done

    def test_waits_behind_the_primarys_call_and_returns_to_the_api(self):
        """While the primary's CALL is unanswered the API's waits; each answer reaches its own asker."""
        self.harness.primary.connection.send('[2,"p-1","GetConfiguration",{}]')
        self.harness.flush()
        done = self.answers(self.session.api_call("TriggerMessage", {"requestedMessage": "Heartbeat"}, 30))
        self.harness.flush()
        self.assertEqual(self.station.received, ['[2,"p-1","GetConfiguration",{}]'])
        self.station.send('[3,"p-1",{"configurationKey":[]}]')
        self.harness.flush()
        self.assertEqual(len(self.station.received), 2)
        api_call = json.loads(self.station.received[1])
        self.assertEqual(api_call[0], 2)
        self.assertTrue(api_call[1].startswith("api-"))
        self.assertEqual(api_call[2:], ["TriggerMessage", {"requestedMessage": "Heartbeat"}])
        self.assertEqual(done, [])
        reply = json.dumps([3, api_call[1], {"status": "Accepted"}])
        self.station.send(reply)
        # Barrier: a later CALL of the station reaches the primary after the API's answer would have.
        self.station.send('[2,"h-1","Heartbeat",{}]')
        self.harness.flush()
        self.assertEqual(done, [reply.encode()])
        for central in (self.harness.primary, self.harness.secondary):
            self.assertNotIn(reply, central.connection.received)
            self.assertIn('[2,"h-1","Heartbeat",{}]', central.connection.received)
        self.assertEqual(self.harness.primary.connection.received[0], '[3,"p-1",{"configurationKey":[]}]')

    def test_the_primarys_call_waits_behind_the_apis(self):
        """A CALL of the primary sent while the API's is outstanding reaches the station only after its answer."""
        done = self.answers(self.session.api_call("GetConfiguration", {}, 30))
        self.harness.flush()
        api_id = json.loads(self.station.received[0])[1]
        self.harness.primary.connection.send('[2,"p-2","Reset",{"type":"Soft"}]')
        self.harness.flush()
        self.assertEqual(len(self.station.received), 1)
        self.station.send(json.dumps([4, api_id, "NotImplemented", "no", {}]))
        self.harness.flush()
        self.assertEqual(self.station.received[1], '[2,"p-2","Reset",{"type":"Soft"}]')
        self.assertEqual(json.loads(done[0])[0], 4)

    def test_timeout(self):
        """No answer within the call's timeout: CallTimeout; a late answer is dropped quietly."""
        done = self.answers(self.session.api_call("GetConfiguration", {}, 5))
        self.harness.flush()
        self.harness.advance(5.2)
        self.assertTrue(done and done[0].check(CallTimeout))

    def test_station_gone(self):
        """The station leaves before answering: StationGone."""
        done = self.answers(self.session.api_call("GetConfiguration", {}, 30))
        self.harness.flush()
        self.station.sendClose(1000)
        self.harness.flush()
        self.assertTrue(done and done[0].check(StationGone))

    def test_queue_full(self):
        """With the station's queue of CALLs full, the API's is refused at once (QueueFull)."""
        central = self.harness.primary.connection
        for number in range(101):
            central.send(f'[2,"p-{number}","GetConfiguration",{{}}]')
        self.harness.flush()
        done = self.answers(self.session.api_call("GetConfiguration", {}, 30))
        self.assertTrue(done and done[0].check(QueueFull))
