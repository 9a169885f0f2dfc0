"""
The connection rules of the relaying core on the synchronous harness (tests/harness.py):
handshakes and subprotocols, replacement, losing upstreams, queueing while an upstream
reconnects (with the backoff driven by the clock), failover and shutdown.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ..harness import DOWN, SILENT, UP, RelayHarness, websocket_request

AUTH = "Basic Q1BfMTpzM2NyZXQtcGFzc3dvcmQ="


def heartbeat(message_id: str) -> str:
    return f'[2,"{message_id}","Heartbeat",{{}}]'


def answer(message_id: str, by: str) -> str:
    """The answer the in-memory central system C{by} gives to any CALL."""
    return f'[3,"{message_id}",{{"answeredBy":"{by}"}}]'


class HandshakeTests(SynchronousTestCase):
    """The station's handshake waits for the primary's and carries the station's headers upstream."""

    def test_upstream_handshakes_carry_the_stations_headers(self):
        """Each upstream handshake carries the station's Authorization, User-Agent, address and subprotocol."""
        harness = RelayHarness(self, secondary=True)
        harness.connect_station("CP_1", headers={"Authorization": AUTH}, useragent="Wallbox/1.2", host="127.0.0.7")
        for central in (harness.primary, harness.secondary):
            headers = central.connection.headers()
            self.assertEqual(headers["authorization"], AUTH)
            self.assertEqual(headers["user-agent"], "Wallbox/1.2")
            self.assertEqual(headers["x-forwarded-for"], "127.0.0.7")
            self.assertEqual(headers["x-real-ip"], "127.0.0.7")
            self.assertEqual(central.connection.subprotocol, "ocpp1.6")
        self.assertEqual([line for line in harness.log_lines if "Q1BfMTpzM2Ny" in line], [])

    def test_station_gets_the_primarys_choice(self):
        """A station offering ocpp1.6, ocpp2.0.1 before central systems speaking only 2.0.1 ends up on 2.0.1."""
        harness = RelayHarness(self, secondary=True, subprotocols=("ocpp2.0.1",))
        station = harness.connect_station("CP_S", subprotocols=["ocpp1.6", "ocpp2.0.1"])
        self.assertEqual(station.subprotocol, "ocpp2.0.1")
        self.assertEqual(harness.primary.connection.request.protocols, ["ocpp1.6", "ocpp2.0.1"])
        # The secondary connects only once the primary chose, and is offered that choice alone.
        self.assertEqual(harness.secondary.connection.request.protocols, ["ocpp2.0.1"])

    def test_station_without_subprotocol_is_answered_without_one(self):
        """A station offering no subprotocol is answered without one; upstreams are offered the default (ocpp1.6)."""
        harness = RelayHarness(self)
        station = harness.connect_station("CP_N", subprotocols=None)
        self.assertTrue(station.opened)
        self.assertIsNone(station.subprotocol)
        self.assertEqual(harness.primary.connection.request.protocols, ["ocpp1.6"])

    def test_stray_commas_in_the_offer(self):
        """An offer with an empty entry (",ocpp2.0.1") is answered with ocpp2.0.1."""
        harness = RelayHarness(self, subprotocols=("ocpp2.0.1",))
        client = harness.connect_raw(websocket_request("/CP_C", ",ocpp2.0.1"))
        self.assertEqual(client.status, 101)
        self.assertIn(b"\r\nSec-WebSocket-Protocol: ocpp2.0.1\r\n", client.response)

    def test_only_non_ocpp_offers_are_refused(self):
        """A station offering only non-OCPP subprotocols gets HTTP 400, and no upstream connection is made."""
        harness = RelayHarness(self)
        station = harness.connect_station("CP_X", subprotocols=["mqtt", "wamp.2.json"])
        self.assertEqual(station.refused_status, 400)
        self.assertEqual(harness.primary.attempts, 0)
        self.assertTrue(harness.logged("it offers no OCPP subprotocol"))

    def test_bad_station_ids_are_refused_before_any_upstream(self):
        """Paths that are not a valid station id get HTTP 400 (counted), and no upstream connection is made."""
        harness = RelayHarness(self)
        paths = ["/", "/a/b", "/CP%201", "/" + "x" * 49, "/..."]
        for path in paths:
            self.assertEqual(harness.connect_raw(websocket_request(path, "ocpp1.6")).status, 400, path)
        self.assertEqual(harness.primary.attempts, 0)
        self.assertEqual(harness.proxy.handshakes_refused, len(paths))
        self.assertTrue(harness.logged("bad path"))

    def test_primarys_refusal_reaches_the_station(self):
        """When the primary refuses the handshake (404), the station is refused with 404 and the secondary is never asked."""
        harness = RelayHarness(self, secondary=True)
        harness.primary.refuse_status = 404
        station = harness.connect_station("CP_UNKNOWN")
        self.assertEqual(station.refused_status, 404)
        self.assertEqual(harness.primary.refused, ["/ocpp/CP_UNKNOWN"])
        self.assertEqual(harness.secondary.attempts, 0)
        self.assertTrue(harness.logged("station CP_UNKNOWN: refused, as the primary refused it: HTTP 404"))

    def test_silent_primary_station_accepted_after_handshake_timeout(self):
        """A primary that never answers its handshake: the station is accepted after handshake_timeout, with its first offer."""
        harness = RelayHarness(self, secondary=True, handshake_timeout=5)
        harness.primary.state = SILENT
        station = harness.connect_station("CP_T", subprotocols=["ocpp1.6", "ocpp2.0.1"])
        harness.advance(4.8)
        self.assertFalse(station.opened)
        self.assertEqual(harness.secondary.attempts, 0)
        harness.advance(0.4)
        self.assertTrue(station.opened)
        self.assertEqual(station.subprotocol, "ocpp1.6")
        self.assertEqual(harness.secondary.connection.request.protocols, ["ocpp1.6"])
        self.assertTrue(harness.logged("station CP_T: primary has not answered within 5 s"))

    def test_refused_primary_station_accepted_with_first_offer(self):
        """A primary that refuses TCP: the station is accepted at once with its first offer and served by the secondary."""
        harness = RelayHarness(self, secondary=True)
        harness.primary.state = DOWN
        station = harness.connect_station("CP_R", subprotocols=["ocpp2.0.1", "ocpp1.6"])
        # HostnameEndpoint reports a refused attempt once its next attempt would be due (0.3 s).
        harness.advance(0.5)
        self.assertEqual(station.subprotocol, "ocpp2.0.1")
        self.assertEqual(harness.secondary.connection.request.protocols, ["ocpp2.0.1"])


class ConnectionRuleTests(SynchronousTestCase):
    """Replacement, and what happens when upstreams go away."""

    def test_second_connection_replaces_the_first(self):
        """A second connection with the same id closes the first with 4000, and the first's upstream link with 1001."""
        harness = RelayHarness(self)
        first = harness.connect_station("CP_7")
        second = harness.connect_station("CP_7")
        self.assertEqual(first.close_code, 4000)
        first_upstream, second_upstream = harness.primary.connections
        self.assertEqual(first_upstream.close_code, 1001)
        second.send(heartbeat("h-2"))
        harness.flush()
        self.assertEqual(second.received, [answer("h-2", "primary")])
        self.assertEqual(second_upstream.received, [heartbeat("h-2")])
        self.assertFalse(second_upstream.closed)

    def test_station_closed_with_1013_when_its_only_upstream_drops(self):
        """When the only upstream connection drops, the station is closed with 1013 (try again later)."""
        harness = RelayHarness(self)
        station = harness.connect_station("CP_2")
        harness.primary.connection.sendClose(3000, "central system restarting")
        harness.flush()
        self.assertEqual(station.close_code, 1013)

    def test_station_closed_with_1013_when_its_only_upstream_is_given_up(self):
        """An upstream that refuses every attempt is given up after max_attempts; the station is closed with 1013."""
        harness = RelayHarness(self, reconnect={"initial_delay": 1, "factor": 2, "max_delay": 4, "max_attempts": 3})
        harness.primary.state = DOWN
        station = harness.connect_station("CP_G")
        harness.advance(0.5)
        self.assertTrue(station.opened)
        self.assertEqual(harness.primary.attempts, 1)
        harness.advance(1.5)
        self.assertIsNone(station.close_code)
        self.assertEqual(harness.primary.attempts, 2)
        harness.advance(3)
        self.assertEqual(harness.primary.attempts, 3)
        self.assertEqual(station.close_code, 1013)
        self.assertTrue(harness.logged("station CP_G: giving up on primary"))

    def test_station_stays_while_one_upstream_remains(self):
        """When the secondary drops but the primary stays, the station keeps being served."""
        harness = RelayHarness(self, secondary=True)
        station = harness.connect_station("CP_3")
        harness.secondary.state = DOWN
        harness.secondary.connection.sendClose(3000, "central system restarting")
        harness.flush()
        station.send(heartbeat("h-1"))
        harness.flush()
        self.assertEqual(station.received, [answer("h-1", "primary")])
        self.assertFalse(station.closed)

    def test_shutdown_during_a_station_handshake(self):
        """Stopping the proxy while a station's handshake waits for the primary refuses it with 503 and fires."""
        harness = RelayHarness(self, handshake_timeout=5)
        harness.primary.state = SILENT
        station = harness.connect_station("CP_H")
        try:
            stopped = harness.proxy.stopService()
            harness.flush()
            self.successResultOf(stopped)
            self.assertFalse(station.opened)
            self.assertEqual(station.refused_status, 503)
        finally:
            # Past the handshake timeout the station is open; its own close lets the harness stop the proxy.
            harness.advance(6, step=1)
            if station.opened:
                station.sendClose(1000)
                harness.flush()


    def test_shutdown_closes_stations_and_upstreams_with_1001(self):
        """Stopping the proxy closes every station and its upstream connections with 1001, then fires."""
        harness = RelayHarness(self, secondary=True)
        stations = [harness.connect_station("CP_4"), harness.connect_station("CP_5")]
        stopped = harness.proxy.stopService()
        harness.flush()
        self.successResultOf(stopped)
        self.assertEqual([station.close_code for station in stations], [1001, 1001])
        upstreams = harness.primary.connections + harness.secondary.connections
        self.assertEqual([connection.close_code for connection in upstreams], [1001] * 4)


class QueueTests(SynchronousTestCase):
    """Frames for an upstream that is away wait in its queue and go out in order when it is back."""

    def test_late_secondary_gets_the_queued_frames_in_order(self):
        """A secondary that comes up after the station booted still receives its frames, in order."""
        harness = RelayHarness(
            self, secondary=True, reconnect={"initial_delay": 1, "max_delay": 1, "max_attempts": 100}
        )
        harness.secondary.state = DOWN
        station = harness.connect_station("CP_L")
        frames = [heartbeat("q-1"), heartbeat("q-2"), heartbeat("q-3")]
        for frame in frames:
            station.send(frame)
        harness.flush()
        self.assertEqual(harness.secondary.connections, [])
        harness.secondary.state = UP
        harness.advance(2)
        self.assertEqual(harness.secondary.connection.received, frames)
        self.assertEqual(station.received, [answer(f"q-{n}", "primary") for n in (1, 2, 3)])

    def test_reconnect_waits_its_backoff_then_flushes_in_order(self):
        """After a drop the link reconnects after initial_delay (less jitter), not before, and flushes in order."""
        harness = RelayHarness(
            self, secondary=True, reconnect={"initial_delay": 1, "max_delay": 4, "max_attempts": 100}
        )
        station = harness.connect_station("CP_Q")
        harness.secondary.connection.sendClose(3000, "central system restarting")
        harness.flush()
        frames = [heartbeat("q-1"), heartbeat("q-2"), heartbeat("q-3")]
        for frame in frames:
            station.send(frame)
        harness.flush()
        harness.advance(0.7)
        self.assertEqual(len(harness.secondary.connections), 1)
        harness.advance(0.4)
        first, second = harness.secondary.connections
        self.assertEqual(first.received, [])
        station.send(heartbeat("q-4"))
        harness.flush()
        self.assertEqual(second.received, [*frames, heartbeat("q-4")])

    def test_full_queue_drops_the_oldest(self):
        """Beyond buffer.max_messages, the oldest queued frames are dropped with a warning; the newest go out."""
        harness = RelayHarness(
            self,
            secondary=True,
            buffer={"max_messages": 2},
            reconnect={"initial_delay": 1, "max_delay": 1, "max_attempts": 100},
        )
        harness.secondary.state = DOWN
        station = harness.connect_station("CP_O")
        for number in range(1, 5):
            station.send(heartbeat(f"q-{number}"))
        harness.flush()
        harness.secondary.state = UP
        harness.advance(2)
        self.assertEqual(harness.secondary.connection.received, [heartbeat("q-3"), heartbeat("q-4")])
        self.assertTrue(harness.logged("queue for secondary is full (2 frames), dropping the oldest"))


class FailoverTests(SynchronousTestCase):
    """With failover on, the secondary answers while the primary is away."""

    def harness(self, failover: bool = True) -> RelayHarness:
        return RelayHarness(
            self,
            secondary=True,
            failover=failover,
            reconnect={"initial_delay": 1, "max_delay": 1, "max_attempts": 100},
        )

    def primary_goes_away(self, harness: RelayHarness) -> None:
        harness.primary.state = DOWN
        harness.primary.connection.sendClose(3000, "central system restarting")
        harness.flush()

    def test_secondary_answers_while_primary_is_away_then_primary_again(self):
        """Primary away: the secondary answers; primary back: it answers alone, and got the outage's frames."""
        harness = self.harness()
        station = harness.connect_station("CP_F")
        station.send(heartbeat("f-1"))
        harness.flush()
        self.primary_goes_away(harness)
        station.send(heartbeat("f-2"))
        harness.flush()
        self.assertTrue(harness.logged("station CP_F: primary away, the secondary answers (failover)"))
        harness.primary.state = UP
        harness.advance(1)
        self.assertEqual(harness.primary.connection.received, [heartbeat("f-2")])
        self.assertTrue(harness.logged("station CP_F: failover ended"))
        # Barrier: the answer to a later CALL comes after the primary's late answer to f-2 would have.
        station.send(heartbeat("f-3"))
        harness.flush()
        self.assertEqual(
            station.received, [answer("f-1", "primary"), answer("f-2", "secondary"), answer("f-3", "primary")]
        )

    def test_call_pending_when_primary_drops_gets_the_secondarys_answer(self):
        """A CALL the primary has not answered when it drops is answered with the secondary's (held) answer."""
        harness = self.harness()
        station = harness.connect_station("CP_F")
        harness.primary.answer_calls = False
        station.send('[2,"a-1","Authorize",{"idTag":"TAG"}]')
        harness.flush()
        self.assertEqual(harness.secondary.connection.sent, [answer("a-1", "secondary")])
        self.assertEqual(station.received, [])
        self.primary_goes_away(harness)
        self.assertEqual(station.received, [answer("a-1", "secondary")])

    def test_without_failover_the_secondary_never_answers(self):
        """With failover off, a CALL sent while the primary is away gets no answer from the secondary."""
        harness = self.harness(failover=False)
        station = harness.connect_station("CP_F")
        self.primary_goes_away(harness)
        station.send(heartbeat("n-1"))
        harness.flush()
        secondary = harness.secondary.connection
        self.assertEqual(secondary.sent, [answer("n-1", "secondary")])
        # Barrier: a CALL the secondary sends after its answer reaches the station.
        secondary.send('[2,"s-1","GetConfiguration",{}]')
        harness.flush()
        self.assertEqual(station.received, ['[2,"s-1","GetConfiguration",{}]'])


class KeepaliveTests(SynchronousTestCase):
    """Pings find peers that are gone without a word (their path is dead), on both sides."""

    def test_dead_station_is_dropped_within_interval_and_timeout(self):
        """A station that stops answering pings is dropped within interval + timeout, with its upstream link."""
        harness = RelayHarness(self, keepalive={"interval": 1, "timeout": 1})
        healthy = harness.connect_station("CP_ALIVE")
        dead = harness.connect_station("CP_DEAD")
        healthy_upstream, dead_upstream = harness.primary.connections
        harness.unplug(dead)
        harness.advance(1.5)
        self.assertFalse(dead_upstream.closed)
        harness.advance(1)
        self.assertEqual(dead_upstream.close_code, 1001)
        # The healthy station answered its pings and is still served.
        healthy.send(heartbeat("h-1"))
        harness.flush()
        self.assertEqual(healthy.received, [answer("h-1", "primary")])
        self.assertFalse(healthy_upstream.closed)

    def test_dead_upstream_is_dropped_in_time(self):
        """A central system that stops answering pings is dropped within interval + timeout; alone, the station gets 1013."""
        harness = RelayHarness(self, keepalive={"interval": 1, "timeout": 1})
        station = harness.connect_station("CP_SILENT")
        harness.primary.state = DOWN
        harness.unplug(harness.primary.connection)
        harness.advance(1.5)
        self.assertFalse(station.closed)
        harness.advance(1)
        self.assertEqual(station.close_code, 1013)
