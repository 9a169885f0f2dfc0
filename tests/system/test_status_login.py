"""
The status page behind C{status.require_token} (issue 26): without a token the page is
a login form, JSON endpoints answer 401; headless Chromium signs in through the form
and then sees the fleet; the cookie is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from types import SimpleNamespace

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from ocppproxy.status.tokens import TokenGate
from ocppproxy.config.model import ApiToken
from ocppproxy.core.api_auth import Tokens
from ocppproxy.status.service import StatusService

from ..e2e import async_test
from .test_status_screenshot import (
    BROWSER_TIMEOUT,
    _devtools_call,
    devtools_page,
    find_chromium,
    made_up_fleet,
)

TOKEN = "status-reader-5e1f"
OPERATOR = "status-operator-77aa"

FILL_AND_SUBMIT = """
(() => {
  const form = document.querySelector("form");
  if (!form) { return "no form"; }
  document.getElementById("token").value = %s;
  form.submit();
  return "submitted";
})()
"""

FLEET = """
(async () => {
  for (let i = 0; i < 150; i++) {
    if (document.body && document.body.dataset.renderedMs) { break; }
    await new Promise((done) => setTimeout(done, 20));
  }
  return {
    path: location.pathname,
    stations: document.querySelectorAll(".station").length,
    form: !!document.querySelector("form[action='/login']"),
    cookie: document.cookie,
    shown: (document.getElementById("shown") || {}).textContent,
  };
})()
"""


class StatusLoginTests(TestCase):
    timeout = BROWSER_TIMEOUT + 30

    async def serve(self) -> str:
        proxy, activity, names, alerts = made_up_fleet(30)
        tokens = Tokens(
            [
                ApiToken("viewer", hashlib.sha256(TOKEN.encode()).hexdigest(), "read"),
                ApiToken("ops", hashlib.sha256(OPERATOR.encode()).hexdigest(), "operate"),
            ]
        )
        service = StatusService(
            "tcp:port=0:interface=127.0.0.1",
            reactor,
            proxy,
            activity,
            SimpleNamespace(names=names, queues={}),
            alerts=alerts,
            token_gate=TokenGate(tokens, reactor),
        )
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.listening
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        return f"http://127.0.0.1:{port.getHost().port}"

    async def get(self, url: str, **kwargs):
        loop = asyncio.get_event_loop()
        response = await Deferred.asFuture(treq.request(kwargs.pop("method", "GET"), url, persistent=False, **kwargs), loop)
        body = await Deferred.asFuture(response.content(), loop)
        return response, body

    @async_test
    async def test_endpoints_need_a_read_token(self):
        """/, /stations, /alerts, /metrics: 401 without a token, 200 with a Bearer one; /health stays open."""
        base = await self.serve()
        for path in ("/stations", "/alerts", "/metrics"):
            response, _ = await self.get(base + path)
            self.assertEqual(response.code, 401, path)
            response, _ = await self.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
            self.assertEqual(response.code, 200, path)
            response, _ = await self.get(base + path, headers={"Authorization": "Bearer nope"})
            self.assertEqual(response.code, 401, path)
        response, body = await self.get(base + "/")
        self.assertEqual(response.code, 401)
        self.assertIn(b'action="/login"', body)
        response, _ = await self.get(base + "/health")
        self.assertNotEqual(response.code, 401)
        response, body = await self.get(base + "/login", method="POST", data={"token": "wrong"})
        self.assertEqual(response.code, 401)
        response, _ = await self.get(base + "/login", method="POST", data={"token": TOKEN}, allow_redirects=False)
        self.assertEqual(response.code, 303)
        (cookie,) = response.headers.getRawHeaders("set-cookie")
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=Strict", cookie)
        session = cookie.split(";")[0]
        response, _ = await self.get(base + "/stations", headers={"Cookie": session})
        self.assertEqual(response.code, 200)
        # The cookie authorises only GET.
        response, _ = await self.get(base + "/stations", method="POST", headers={"Cookie": session})
        self.assertEqual(response.code, 401)

    @async_test
    async def test_login_form_then_the_fleet_in_chromium(self):
        """Headless Chromium: the login form, the token typed and sent, then the fleet; the cookie is not readable."""
        chromium = find_chromium()
        base = await Deferred.asFuture(Deferred.fromCoroutine(self.serve()), asyncio.get_event_loop())
        async with devtools_page(chromium, self.directory, base + "/") as devtools:
            params = {"expression": FLEET, "awaitPromise": True, "returnByValue": True}
            before = (await _devtools_call(devtools, 3, "Runtime.evaluate", params))["result"]["result"]["value"]
            submit = {"expression": FILL_AND_SUBMIT % json.dumps(TOKEN), "returnByValue": True}
            sent = await _devtools_call(devtools, 4, "Runtime.evaluate", submit, until_event="Page.loadEventFired")
            after = (await _devtools_call(devtools, 5, "Runtime.evaluate", params))["result"]["result"]["value"]
        self.assertTrue(before["form"], before)
        self.assertEqual(before["stations"], 0)
        self.assertEqual(sent["result"]["result"]["value"], "submitted")
        self.assertFalse(after["form"], after)
        self.assertEqual(after["path"], "/")
        self.assertGreater(after["stations"], 0)
        self.assertEqual(after["cookie"], "")
