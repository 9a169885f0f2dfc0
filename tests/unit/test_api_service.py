"""The API's HTTP face in memory (a real Site over a StringTransport): bounds and cluster mode's 503."""

from __future__ import annotations

import hashlib
import json

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.api.audit import AuditTrail
from ocppproxy.api.history import EventFeed, FrameTrace
from ocppproxy.api.service import ApiService
from ocppproxy.config.model import ApiToken, ClusterConfig
from ocppproxy.core.api_auth import Tokens
from ocppproxy.core.frame_history import FrameHistory
from ocppproxy.core.redact import Redactor
from ocppproxy.relay.registry import StationSessions

TOKEN = "op-token"


class ApiServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        clock = Clock()
        self.api = ApiService(
            "tcp:0",
            clock,
            Tokens([ApiToken("ops", hashlib.sha256(TOKEN.encode()).hexdigest(), "operate")]),
            StationSessions(),
            FrameTrace(FrameHistory(10), clock, Redactor()),
            EventFeed(clock),
            AuditTrail(clock),
            Redactor(),
            40.0,
            lambda query: None,
            lambda station_id: None,
            cluster=ClusterConfig("redis://127.0.0.1:1/0", "proxy-a"),
        )

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
        channel = self.api.site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
        channel.dataReceived(head.encode() + body)
        raw = transport.value()
        status = int(raw.split(b" ", 2)[1])
        content = raw.partition(b"\r\n\r\n")[2]
        # Chunked: the JSON is inside the first chunk.
        content = content.partition(b"\r\n")[2].rpartition(b"\r\n0\r\n")[0] if b"chunked" in raw.lower() else content
        channel.connectionLost(None)
        return status, json.loads(content)

    def test_call_for_a_station_elsewhere_while_redis_is_away(self):
        """Cluster mode: a station not held here gets 503 while Redis is away (another instance may hold it)."""
        body = b'{"action": "Reset", "payload": {"type": "Soft"}}'
        self.assertEqual(self.request("POST", "/api/stations/CP_9/call", body)[0], 503)
        self.assertEqual(self.request("POST", "/api/stations/CP_9/disconnect")[0], 503)

    def test_body_over_64_kib(self):
        """A body over 64 KiB: 413, and no more than 64 KiB and a byte of it is kept."""
        status, document = self.request("POST", "/api/stations/CP_9/call", b"x" * 200_000)
        self.assertEqual(status, 413, document)

    def test_bad_station_id(self):
        """A station id outside the rules: 400 naming the rule."""
        status, document = self.request("GET", "/api/stations/CP%23X")
        self.assertEqual(status, 400)
        self.assertIn("characters", document["error"])

    def test_ten_requests_in_flight_per_token(self):
        """Ten open event streams of one token: the eleventh request gets 429; one closed frees a place."""
        channels = []
        for _ in range(10):
            channel = self.api.site.buildProtocol(None)
            transport = StringTransport()
            channel.makeConnection(transport)
            channel.dataReceived(f"GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
            self.assertIn(b"text/event-stream", transport.value())
            channels.append(channel)
        self.assertEqual(self.request("GET", "/api/stations/CP_9/frames")[0], 429)
        channels.pop().connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.request("GET", "/api/stations/CP_9/frames")[0], 503)
        for channel in channels:
            channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.api.site.resource._in_flight.count("ops"), 0)


class RemoteFollowTests(SynchronousTestCase):
    """Cluster mode: follow streams of other instances' readers are bounded by a lease and by Redis keeping up."""

    def setUp(self) -> None:
        from ocppproxy.api.cluster_calls import ClusterCalls

        self.clock = Clock()
        self.trace = FrameTrace(FrameHistory(10), self.clock, Redactor())
        self.calls = ClusterCalls(
            ClusterConfig("redis://127.0.0.1:1/0", "proxy-a"),
            self.clock,
            None,
            self.trace,
        )
        follow = {"kind": "follow", "stream": "s1", "reply_to": "proxy-b", "station": "CP_1", "after": None}
        self.calls._message(json.dumps(follow))

    def test_dropped_without_renewal(self):
        """A remote follower not renewed within the lease is dropped; a renewed one is kept."""
        self.assertEqual(self.trace.followers(), 1)
        self.clock.advance(60)
        self.calls._message(json.dumps({"kind": "keep", "stream": "s1"}))
        self.clock.advance(60)
        self.calls._leases()
        self.assertEqual(self.trace.followers(), 1)
        self.clock.advance(31)
        self.calls._leases()
        self.assertEqual(self.trace.followers(), 0)

    def test_dropped_while_redis_is_away(self):
        """A frame for a remote follower while Redis is away drops it: nothing piles up."""
        self.trace.frame_crossed("CP_1", "from_station", None, b'[2,"1","Heartbeat",{}]')
        self.assertEqual(self.trace.followers(), 0)

    def test_unfollow(self):
        """The reader's instance says it left: dropped."""
        self.calls._message(json.dumps({"kind": "unfollow", "stream": "s1"}))
        self.assertEqual(self.trace.followers(), 0)
