"""C{/health}: 200 while the proxy accepts stations, 503 before and from the start of shutdown."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import treq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from ocppproxy.status.health import HealthResource

from ..e2e import ProxyTestCase, async_test


class HealthResourceTests(SynchronousTestCase):
    def render(self, accepting: bool) -> DummyRequest:
        request = DummyRequest([b""])
        body = HealthResource(SimpleNamespace(accepting=accepting)).render_GET(request)
        request.write(body)
        return request

    def test_accepting_is_ok(self) -> None:
        request = self.render(True)
        self.assertIn(request.responseCode, (None, 200))  # None: the default, 200
        self.assertEqual(b"".join(request.written), b"ok\n")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"cache-control"), [b"no-store"])

    def test_not_accepting_is_503(self) -> None:
        request = self.render(False)
        self.assertEqual(request.responseCode, 503)
        self.assertEqual(b"".join(request.written), b"not accepting stations\n")


class HealthEndToEndTests(ProxyTestCase):
    async def health(self) -> tuple[int, bytes]:
        loop = asyncio.get_event_loop()
        if not hasattr(self, "status_port"):
            listening = self.services.getServiceNamed("status").listening
            self.status_port = (await Deferred.asFuture(listening, loop)).getHost().port
        url = f"http://127.0.0.1:{self.status_port}/health"
        response = await Deferred.asFuture(treq.get(url, persistent=False), loop)
        return response.code, await Deferred.asFuture(response.content(), loop)

    @async_test
    async def test_healthy_while_listening_unhealthy_once_stopping(self):
        """The real service tree: /health is 200 while stations are accepted, 503 once the proxy stops."""
        status = {"listen": "tcp:port=0:interface=127.0.0.1"}
        await self.start_services(primary_url="ws://127.0.0.1:9/ocpp/", status=status)
        self.assertEqual(await self.health(), (200, b"ok\n"))
        await Deferred.asFuture(self.proxy.stopService(), asyncio.get_event_loop())
        self.assertEqual(await self.health(), (503, b"not accepting stations\n"))
        # Stopping again (the service tree does, after a proxy stopped on its own) is harmless.
        await Deferred.asFuture(self.proxy.stopService(), asyncio.get_event_loop())
