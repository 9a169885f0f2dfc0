"""
The webhook channel: one alert, one JSON POST to a configured URL, through treq.

Header values (an C{Authorization} token, an API key) and the URL's path and query
(where many services put their token) are secrets: logs and error messages name the
webhook by scheme, host and port only.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import treq
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from ..config.model import WebhookSettings
from .alert import Alert, DeliveryError
from .httpbody import read_body

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def alert_body(alert: Alert) -> bytes:
    """
    The JSON document posted for C{alert}: station (null for a summary of several),
    name (the human name, or null), kind (the event key), time (the proxy's, ISO 8601
    UTC), subject, text and details.
    """
    document = {
        "station": alert.station_id or None,
        "name": alert.name,
        "kind": alert.key,
        "time": alert.time,
        "subject": alert.subject,
        "text": alert.text,
        "details": dict(alert.details),
    }
    # Details are plain values; default=str keeps an unforeseen one from losing the alert.
    return json.dumps(document, ensure_ascii=False, default=str).encode("utf-8")


def webhook_origin(url: str) -> str:
    """C{scheme://host[:port]} of C{url}: what the log may say about a webhook."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


class WebhookChannel:
    """
    Sends alerts as JSON POSTs.

    C{http} is anything with treq's API (the C{treq} module, an L{treq.client.HTTPClient},
    L{treq.testing.StubTreq}). The time an attempt may take is the delivery queue's
    deadline: cancelling the Deferred of L{send} drops the connection.
    """

    def __init__(self, settings: WebhookSettings, http: Any = treq) -> None:
        self._settings = settings
        self._http = http
        self._origin = webhook_origin(settings.url)
        self._headers = {"Content-Type": "application/json; charset=utf-8", **dict(settings.headers)}

    def send(self, alert: Alert) -> Deferred[None]:
        """
        Post C{alert}; the Deferred fires with None on any 2xx answer, or fails with a
        L{DeliveryError}: transient for connection problems, HTTP 5xx, 408 and 429,
        permanent for other answers. At most L{BODY_LIMIT<ocppproxy.notify.httpbody.BODY_LIMIT>}
        bytes of the answer are read.
        """
        posting = self._http.post(self._settings.url, data=alert_body(alert), headers=self._headers, unbuffered=True)
        posting.addCallback(self._read)
        posting.addErrback(self._unreachable)
        return posting

    def _unreachable(self, failure: Failure) -> Failure:
        if failure.check(CancelledError, DeliveryError):
            return failure
        raise DeliveryError(
            self._scrub(f"cannot reach the webhook at {self._origin}: {failure.getErrorMessage()}"), transient=True
        )

    def _read(self, response: Any) -> Deferred[None]:
        # Read the body even on success, so that the connection can be reused.
        reading = read_body(response)
        reading.addCallback(self._check, response.code)
        return reading

    def _check(self, body: bytes, code: int) -> None:
        if 200 <= code < 300:
            return
        # One line for the log, whatever the server sent.
        detail = _CONTROL.sub(" ", body[:200].decode("utf-8", "replace")).strip() or "no details"
        transient = code in (408, 429) or code >= 500
        raise DeliveryError(
            self._scrub(f"the webhook at {self._origin} refused the alert (HTTP {code}): {detail}"),
            transient=transient,
        )

    def _scrub(self, text: str) -> str:
        """Remove the secrets from text that comes from elsewhere (the server, the network stack)."""
        for secret in (self._settings.url, *(value for _, value in self._settings.headers)):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text
