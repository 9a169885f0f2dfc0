"""
Connection limits of the proxy service on the synchronous harness (tests/harness.py):
too many stations, endless or trickling handshakes, floods of silent connections from
one or more addresses, a trusted load balancer, a strange Host. The handshake timeouts
run on the harness's clock, so no test waits for them.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.wire.limits import MAX_HANDSHAKE_BYTES

from ..harness import PRIMARY_PORT, RelayHarness

REQUEST_HEAD = b"GET /%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
HANDSHAKE_REST = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
)
BOOT = '[2,"b-1","BootNotification",{"chargePointModel":"M","chargePointVendor":"V"}]'
PRIMARYS_ANSWER = '[3,"b-1",{"answeredBy":"primary"}]'


class StationLimitTests(SynchronousTestCase):
    """limits.max_stations, and what a station's handshake may not do."""

    def test_station_beyond_max_stations_refused_with_503(self):
        """With max_stations connected, a new station is refused with 503 and one warning; a reconnecting one is not."""
        harness = RelayHarness(self, limits={"max_stations": 2})
        harness.connect_station("CP_L1")
        harness.connect_station("CP_L2")
        for station_id in ("CP_L3", "CP_L4"):
            self.assertEqual(harness.connect_station(station_id).refused_status, 503)
        self.assertEqual(len(harness.logged("(limits.max_stations): refused station CP_L3 with 503")), 1)
        self.assertEqual(harness.logged("CP_L4 with 503"), [])
        again = harness.connect_station("CP_L1")
        again.send(BOOT)
        harness.flush()
        self.assertEqual(again.received, [PRIMARYS_ANSWER])
        paths = sorted(connection.request.path for connection in harness.primary.connections)
        self.assertEqual(paths, ["/ocpp/CP_L1", "/ocpp/CP_L1", "/ocpp/CP_L2"])

    def test_endless_request_head_cut_at_16_kib(self):
        """Header bytes without the blank line are answered with 431 and closed once over 16 KiB."""
        harness = RelayHarness(self)
        client = harness.connect_raw(REQUEST_HEAD % b"CP_SLOW" + b"X-Padding: ")
        for _ in range(MAX_HANDSHAKE_BYTES // 1024 + 1):
            client.transport.write(b"a" * 1024)
            harness.flush()
        self.assertEqual(client.status, 431)
        self.assertTrue(client.lost)
        self.assertTrue(harness.logged(f"its handshake request is over {MAX_HANDSHAKE_BYTES} bytes"))
        self.assertEqual(harness.primary.attempts, 0)

    def test_trickling_request_closed_by_handshake_timeout(self):
        """A request sent a byte at a time, never finished, is closed handshake_timeout + 5 s after connecting."""
        harness = RelayHarness(self, handshake_timeout=0.1)
        client = harness.connect_raw(REQUEST_HEAD % b"CP_TRICKLE")
        for _ in range(50):
            client.transport.write(b"a")
            harness.advance(0.2)
            if client.lost:
                break
        self.assertTrue(client.lost)
        # Autobahn's timers round their due time down to a whole second: up to 1 s early.
        self.assertGreater(harness.clock.seconds(), 4)
        self.assertLessEqual(harness.clock.seconds(), 5.2)
        self.assertEqual(harness.proxy.limits.handshakes, 0)

    def test_host_and_origin_change_nothing_upstream(self):
        """A strange Host and Origin reach neither the upstream URL nor the upstream's headers."""
        harness = RelayHarness(self)
        client = harness.connect_raw(
            b"GET /CP_HOST HTTP/1.1\r\nHost: evil.example:666\r\nOrigin: http://evil.example/other/\r\n"
            + HANDSHAKE_REST
        )
        self.assertEqual(client.status, 101)
        connection = harness.primary.connection
        self.assertEqual(connection.request.path, "/ocpp/CP_HOST")
        self.assertEqual(connection.headers()["host"], f"127.0.0.1:{PRIMARY_PORT}")
        self.assertNotIn("evil", repr(connection.headers()))


class HandshakeFloodTests(SynchronousTestCase):
    """limits.max_handshakes and max_handshakes_per_address against connections that never finish a handshake."""

    def test_flood_of_silent_connections_shed_oldest_first(self):
        """
        300 connections that send nothing, max_handshakes 50: each one beyond 50 sheds the
        oldest, so the first 250 are closed at once and the last 50 by the handshake
        timeout (handshake_timeout + 5 s); a connected station relays throughout.
        """
        harness = RelayHarness(
            self, handshake_timeout=0.1, limits={"max_handshakes": 50, "max_handshakes_per_address": 1000}
        )
        station = harness.connect_station("CP_BUSY")
        peers = [harness.connect_raw() for _ in range(300)]
        limits = harness.proxy.limits
        self.assertEqual([peer.lost for peer in peers], [True] * 250 + [False] * 50)
        self.assertEqual((limits.handshakes, limits.shed), (50, 250))
        station.send(BOOT)
        harness.flush()
        self.assertEqual(station.received, [PRIMARYS_ANSWER])
        harness.advance(3.5, step=0.5)
        self.assertEqual(sum(peer.lost for peer in peers), 250)
        harness.advance(2, step=0.5)
        self.assertEqual(sum(peer.lost for peer in peers), 300)
        self.assertEqual(limits.handshakes, 0)
        self.assertEqual(len(harness.logged("(limits.max_handshakes): closed the oldest unfinished one")), 1)

    def test_floods_from_two_addresses_cannot_lock_a_station_out(self):
        """
        Idle connections from 127.0.0.2 and 127.0.0.3, more than max_handshakes in all:
        each address holds at most max_handshakes_per_address slots (its excess is closed
        at once and the log names it), the oldest are shed for newer ones, and a station
        from 127.0.0.1 connects and gets its BootNotification answered by the primary
        while the flood still holds every slot it can.
        """
        harness = RelayHarness(self, limits={"max_handshakes": 30, "max_handshakes_per_address": 20})
        limits = harness.proxy.limits
        flood = {source: [harness.connect_raw(host=source) for _ in range(25)] for source in ("127.0.0.2", "127.0.0.3")}
        self.assertEqual((limits.handshakes, limits.shed, limits.refused["max_handshakes_per_address"]), (30, 10, 10))
        # 127.0.0.2: its first 10 shed by 127.0.0.3's, its last 5 refused; 127.0.0.3: its last 5 refused.
        self.assertEqual([peer.lost for peer in flood["127.0.0.2"]], [True] * 10 + [False] * 10 + [True] * 5)
        self.assertEqual([peer.lost for peer in flood["127.0.0.3"]], [False] * 20 + [True] * 5)
        for source in ("127.0.0.2", "127.0.0.3"):
            self.assertEqual(len(harness.logged(f"from {source} (limits.max_handshakes_per_address)")), 1)
        self.assertEqual(len(harness.logged("closed the oldest unfinished one, from tcp4:127.0.0.2:")), 1)
        station = harness.connect_station("CP_GOOD")
        station.send(BOOT)
        harness.flush()
        # No time has passed: the flood's own slots are freed by the handshake timeout only.
        self.assertEqual(station.received, [PRIMARYS_ANSWER])
        self.assertEqual((limits.shed, limits.handshakes), (11, 29))

    def test_trusted_proxy_exempt_from_the_per_address_limit(self):
        """
        A trusted proxy's address carries every station behind it: more handshakes than
        max_handshakes_per_address from it are held, and a station through it still boots;
        from another address the excess is closed at once.
        """
        harness = RelayHarness(self, trusted_proxies=["127.0.0.4"], limits={"max_handshakes_per_address": 5})
        limits = harness.proxy.limits
        behind = [harness.connect_raw(host="127.0.0.4") for _ in range(12)]
        other = [harness.connect_raw(host="127.0.0.5") for _ in range(7)]
        self.assertEqual((limits.handshakes, limits.refused["max_handshakes_per_address"]), (17, 2))
        self.assertEqual([peer.lost for peer in behind + other], [False] * 17 + [True] * 2)
        self.assertEqual(harness.logged("from 127.0.0.4 (limits"), [])
        self.assertEqual(len(harness.logged("from 127.0.0.5 (limits.max_handshakes_per_address)")), 1)
        station = harness.connect_station("CP_BEHIND_LB", host="127.0.0.4")
        station.send(BOOT)
        harness.flush()
        self.assertEqual(station.received, [PRIMARYS_ANSWER])


class ConnectRateTests(SynchronousTestCase):
    """limits.max_connects_per_minute on the synchronous harness."""

    def test_over_the_limit_429_with_retry_after_and_the_open_connection_stays(self):
        """
        After 3 accepted connections within a minute the 4th is refused with 429 and
        Retry-After, before any upstream attempt; the station's open connection stays.
        """
        harness = RelayHarness(self, limits={"max_connects_per_minute": 3})
        for _ in range(3):
            live = harness.connect_station("CP_FLAP")
            harness.advance(10, step=1)
        self.assertTrue(live.opened)
        attempts = harness.primary.attempts
        refused = harness.connect_station("CP_FLAP")
        self.assertEqual(refused.refused_status, 429)
        self.assertIn(b"Retry-After: 30\r\n", refused.http_response_data)
        self.assertEqual(harness.primary.attempts, attempts)
        self.assertFalse(live.closed)
        live.send(BOOT)
        harness.flush()
        self.assertEqual(live.received, [PRIMARYS_ANSWER])
        self.assertEqual(harness.proxy.limits.refused["max_connects_per_minute"], 1)
        self.assertEqual(len(harness.logged("(limits.max_connects_per_minute)")), 1)
        harness.connect_station("CP_FLAP")
        self.assertEqual(len(harness.logged("(limits.max_connects_per_minute)")), 1)
        self.assertEqual(harness.connect_station("CP_OTHER").refused_status, None)
        harness.advance(31, step=1)
        self.assertTrue(harness.connect_station("CP_FLAP").opened)

    def test_refused_by_the_primary_does_not_count(self):
        """Connections the primary refuses (someone who merely knows the id) do not lock the station out."""
        harness = RelayHarness(self, limits={"max_connects_per_minute": 2})
        harness.primary.refuse_status = 401
        for _ in range(5):
            self.assertEqual(harness.connect_station("CP_KNOWN").refused_status, 401)
        harness.primary.refuse_status = None
        self.assertTrue(harness.connect_station("CP_KNOWN").opened)
        self.assertEqual(harness.proxy.limits.refused["max_connects_per_minute"], 0)
