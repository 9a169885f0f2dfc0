"""
The cluster service against a real redis-server: claims written with their TTL, a newer
claim on another instance closing the older connection, releases, refreshes, and
relaying on (with one warning) while Redis is away, claims written back when it returns.
"""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from ocppproxy.cluster.claims import parse_claim, station_key
from ocppproxy.cluster.service import ClusterService
from ocppproxy.config.model import ClusterConfig

from ..certs import make_ca_and_server_cert
from ..e2e import ProxyTestCase, async_test
from ..redisserver import RedisServer


class ClusterServiceTests(ProxyTestCase):
    timeout = 20

    async def redis(self, start: bool = True, **settings) -> RedisServer:
        server = RedisServer(**settings)
        self.addCleanup(server.stop)
        if start:
            await server.start()
        return server

    def instance(
        self, server: RedisServer, name: str, ttl: int = 30, reply_timeout: float = 5.0
    ) -> tuple[ClusterService, list]:
        """A started cluster service named C{name}; the list collects (session, instance) it asked to replace."""
        replaced: list = []
        service = ClusterService(
            ClusterConfig(redis_url=server.url, instance=name, ownership_ttl=ttl),
            reactor,
            lambda session, by: replaced.append((session, by)),
            reply_timeout,
        )
        service.startService()
        self.addCleanup(service.stopService)
        return service, replaced

    async def claim_of(self, server: RedisServer, station: str):
        value = await server.command("GET", station_key(station))
        return parse_claim(station, value) if value else None

    @async_test
    async def test_claim_is_stored_with_its_ttl(self):
        """A station connecting claims its key for ownership_ttl seconds, naming the instance and the serial."""
        server = await self.redis()
        service, _ = self.instance(server, "proxy-a", ttl=30)
        await self.until(lambda: service.redis_up)
        service.station_connected(SimpleNamespace(station_id="CP_1"))
        await self.until_claimed(server, "CP_1", "proxy-a")
        claim = await self.claim_of(server, "CP_1")
        self.assertEqual((claim.instance, claim.serial), ("proxy-a", 1))
        self.assertTrue(0 < int(await server.command("TTL", station_key("CP_1"))) <= 30)

    async def until_claimed(self, server: RedisServer, station: str, instance: str | None) -> None:
        loop = asyncio.get_event_loop()
        deadline = loop.time() + 5
        while True:
            claim = await self.claim_of(server, station)
            if (claim.instance if claim else None) == instance:
                return
            if loop.time() > deadline:
                raise AssertionError(f"{station} is claimed by {claim}, not {instance}")
            await asyncio.sleep(0.02)

    @async_test
    async def test_password_database_and_unix_socket(self):
        """redis://:password@host:port/db authenticates and selects the database; unix:///path works too."""
        for settings in ({"password": "s3cret", "database": 3}, {"unix_socket": True}):
            server = await self.redis(**settings)
            service, _ = self.instance(server, "proxy-a")
            await self.until(lambda service=service: service.redis_up)
            service.station_connected(SimpleNamespace(station_id="CP_1"))
            await self.until_claimed(server, "CP_1", "proxy-a")
        self.assertEqual(self.logged("s3cret"), [])

    @async_test
    async def test_rediss(self):
        """rediss:// speaks TLS and checks Redis's certificate against the trust store (here: SSL_CERT_FILE)."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        paths = make_ca_and_server_cert(directory)
        server = await self.redis(tls=paths)
        # OpenSSL reads it from the process environment (putenv), when a context is made.
        previous = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = paths["ca.pem"]
        self.addCleanup(
            lambda: os.environ.pop("SSL_CERT_FILE") if previous is None else os.environ.update(SSL_CERT_FILE=previous)
        )
        service, _ = self.instance(server, "proxy-a")
        await self.until(lambda: service.redis_up)
        service.station_connected(SimpleNamespace(station_id="CP_1"))
        await self.until_claimed(server, "CP_1", "proxy-a")

    @async_test
    async def test_rediss_with_an_unknown_ca_is_refused(self):
        """A Redis certificate nobody trusts: Redis counts as unreachable, said once with the reason."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        server = await self.redis(tls=make_ca_and_server_cert(directory))
        service, _ = self.instance(server, "proxy-a")
        await self.until(lambda: self.logged("is unreachable"), timeout=5)
        self.assertFalse(service.redis_up)
        (line,) = self.logged("is unreachable")
        self.assertIn("certificate verify failed", line)

    @async_test
    async def test_wrong_password_is_one_warning(self):
        """A refused password: Redis counts as unreachable, said once with Redis's reason, never the password."""
        server = await self.redis(password="right-one")
        server.password = "wrong-one"
        service, _ = self.instance(server, "proxy-a")
        await self.until(lambda: self.logged("is unreachable"), timeout=5)
        self.assertFalse(service.redis_up)
        (line,) = self.logged("is unreachable")
        self.assertIn("could not auth", line)
        self.assertEqual(self.logged("-one"), [])

    @async_test
    async def test_newer_connection_elsewhere_replaces(self):
        """The same station on instance B after A: A is asked to close its session, B keeps its own."""
        server = await self.redis()
        a, replaced_on_a = self.instance(server, "proxy-a")
        b, replaced_on_b = self.instance(server, "proxy-b")
        await self.until(lambda: a.redis_up and b.redis_up)
        on_a, on_b = SimpleNamespace(station_id="CP_1"), SimpleNamespace(station_id="CP_1")
        a.station_connected(on_a)
        await self.until_claimed(server, "CP_1", "proxy-a")
        b.station_connected(on_b)
        await self.until(lambda: replaced_on_a, timeout=5)
        self.assertEqual(replaced_on_a, [(on_a, "proxy-b")])
        await self.until_claimed(server, "CP_1", "proxy-b")
        # The replaced session ending leaves B's claim alone.
        a.station_ended(on_a)
        other = SimpleNamespace(station_id="CP_2")
        a.station_connected(other)
        await self.until_claimed(server, "CP_2", "proxy-a")
        await self.until_claimed(server, "CP_1", "proxy-b")
        self.assertEqual(replaced_on_b, [])

    @async_test
    async def test_ended_session_releases_its_claim(self):
        server = await self.redis()
        service, _ = self.instance(server, "proxy-a")
        await self.until(lambda: service.redis_up)
        session = SimpleNamespace(station_id="CP_1")
        service.station_connected(session)
        await self.until_claimed(server, "CP_1", "proxy-a")
        service.station_ended(session)
        await self.until_claimed(server, "CP_1", None)

    @async_test
    async def test_refresh_finds_a_newer_holder(self):
        """A newer claim found in the key by the periodic refresh (missed announcement) closes ours."""
        server = await self.redis()
        service, replaced = self.instance(server, "proxy-a", ttl=3)
        await self.until(lambda: service.redis_up)
        session = SimpleNamespace(station_id="CP_1")
        service.station_connected(session)
        await self.until_claimed(server, "CP_1", "proxy-a")
        ours = await self.claim_of(server, "CP_1")
        await server.command("SET", station_key("CP_1"), f"{ours.order + 1} proxy-b 9")
        await self.until(lambda: replaced, timeout=3)
        self.assertEqual(replaced, [(session, "proxy-b")])

    @async_test
    async def test_refresh_extends_and_restores_claims(self):
        """Claims are refreshed before they expire, and restored if they vanished."""
        server = await self.redis()
        service, _ = self.instance(server, "proxy-a", ttl=3)
        await self.until(lambda: service.redis_up)
        service.station_connected(SimpleNamespace(station_id="CP_1"))
        await self.until_claimed(server, "CP_1", "proxy-a")
        await server.command("DEL", station_key("CP_1"))
        await self.until_claimed(server, "CP_1", "proxy-a")
        # Its time to live runs down, and a refresh (every ttl/3) sets it back to 3 s.
        await self.until_ttl(server, "CP_1", lambda ttl: 0 < ttl <= 2)
        await self.until_ttl(server, "CP_1", lambda ttl: ttl == 3)

    async def until_ttl(self, server: RedisServer, station: str, condition) -> None:
        loop = asyncio.get_event_loop()
        deadline = loop.time() + 4
        while not condition(int(await server.command("TTL", station_key(station)))):
            if loop.time() > deadline:
                raise AssertionError("the claim's TTL never did that")
            await asyncio.sleep(0.05)

    @async_test
    async def test_redis_down_at_start_then_up(self):
        """Redis unreachable at start-up: one warning, claims kept locally and written back once Redis is up."""
        server = await self.redis(start=False)
        service, _ = self.instance(server, "proxy-a")
        await self.until(lambda: self.logged("is unreachable"), timeout=5)
        service.station_connected(SimpleNamespace(station_id="CP_1"))
        self.assertFalse(service.redis_up)
        await server.start()
        await self.until(lambda: service.redis_up, timeout=10)
        await self.until_claimed(server, "CP_1", "proxy-a")
        self.assertEqual(len(self.logged("is unreachable")), 1)

    @async_test
    async def test_redis_killed_and_restarted(self):
        """Redis killed: one warning for the outage; restarted: one line, and the claims are back in Redis."""
        server = await self.redis()
        service, _ = self.instance(server, "proxy-a")
        await self.until(lambda: service.redis_up)
        service.station_connected(SimpleNamespace(station_id="CP_1"))
        await self.until_claimed(server, "CP_1", "proxy-a")
        await server.kill()
        await self.until(lambda: not service.redis_up, timeout=5)
        service.station_connected(SimpleNamespace(station_id="CP_2"))
        await server.start()
        await self.until(lambda: service.redis_up, timeout=10)
        await self.until_claimed(server, "CP_1", "proxy-a")
        await self.until_claimed(server, "CP_2", "proxy-a")
        self.assertEqual(len(self.logged("is unreachable")), 1)
        self.assertEqual(len(self.logged("is reachable again")), 1)

    @async_test
    async def test_frozen_redis_is_an_outage(self):
        """A Redis that answers nothing (SIGSTOP) for reply_timeout: one warning; it goes on: claims written back."""
        server = await self.redis()
        service, _ = self.instance(server, "proxy-a", reply_timeout=0.5)
        await self.until(lambda: service.redis_up)
        server.freeze()
        service.station_connected(SimpleNamespace(station_id="CP_1"))
        await self.until(lambda: not service.redis_up, timeout=5)
        self.assertEqual(len(self.logged("is unreachable")), 1)
        server.thaw()
        await self.until(lambda: service.redis_up, timeout=10)
        await self.until_claimed(server, "CP_1", "proxy-a")

    @async_test
    async def test_many_commands_waiting_on_a_frozen_redis_make_one_warning(self):
        """
        200 stations connect while Redis answers nothing: when the first reply times out,
        txredisapi fails all 200 claims at once; the log has one warning, naming the timeout, and no line per claim.
        """
        server = await self.redis()
        service, _ = self.instance(server, "proxy-a", reply_timeout=0.5)
        await self.until(lambda: service.redis_up)
        server.freeze()
        self.addCleanup(server.thaw)
        for number in range(200):
            service.station_connected(SimpleNamespace(station_id=f"CP_{number}"))
        await self.until(lambda: not service.redis_up, timeout=5)
        await asyncio.sleep(0.1)
        self.assertEqual(
            [line for line in self.log_lines if "cluster:" in line and "connected to Redis" not in line][-2:],
            [
                "cluster: this is instance proxy-a",
                f"cluster: Redis at redis://127.0.0.1:{server.port} is unreachable (Not received Redis response in 0.5"
                " seconds); relaying goes on with local state",
            ],
        )

    @async_test
    async def test_stops_cleanly_while_redis_is_away(self):
        server = await self.redis(start=False)
        service, _ = self.instance(server, "proxy-a")
        await self.until(lambda: self.logged("is unreachable"), timeout=5)
        await Deferred.asFuture(service.stopService(), asyncio.get_event_loop())
        self.assertFalse(service.running)
