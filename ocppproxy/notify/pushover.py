"""
The Pushover channel: one alert, one form POST to the messages API, through treq.

The application token and user key travel only in the request body; they are kept
out of every log line and error message.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from ..config.model import PushoverSettings
from .alert import Alert, DeliveryError
from .httpbody import read_body

TITLE_LIMIT = 250
MESSAGE_LIMIT = 1024

# Emergency priority (2) is refused by the API without a retry interval and an expiry.
_EMERGENCY = {"retry": "60", "expire": "3600"}


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


class PushoverChannel:
    """
    Sends alerts as Pushover notifications.

    C{http} is anything with treq's API (the C{treq} module, an L{treq.client.HTTPClient},
    L{treq.testing.StubTreq}). The time an attempt may take is the delivery queue's
    deadline: cancelling the Deferred of L{send} drops the connection.
    """

    def __init__(self, settings: PushoverSettings, http: Any = treq) -> None:
        self._settings = settings
        self._http = http

    def send(self, alert: Alert) -> Deferred[None]:
        """
        Post C{alert}; the Deferred fires with None once the API accepted it, or fails
        with a L{DeliveryError}: transient for connection problems, HTTP 5xx and 429,
        permanent for other refusals (with the API's C{errors} in the message). At most
        L{BODY_LIMIT<ocppproxy.notify.httpbody.BODY_LIMIT>} bytes of the answer are read.
        """
        posting = self._http.post(self._settings.api_url, data=self._fields(alert), unbuffered=True)
        posting.addCallback(self._read)
        posting.addErrback(self._unreachable)
        return posting

    def _fields(self, alert: Alert) -> dict[str, str]:
        settings = self._settings
        fields = {
            "token": settings.app_token,
            "user": settings.user_key,
            "title": _truncate(alert.subject, TITLE_LIMIT),
            "message": _truncate(alert.text, MESSAGE_LIMIT),
            "priority": str(settings.priority),
        }
        if settings.priority == 2:
            fields.update(_EMERGENCY)
        return fields

    def _unreachable(self, failure: Failure) -> Failure:
        if failure.check(CancelledError, DeliveryError):
            return failure
        raise DeliveryError(
            self._scrub(f"cannot reach the Pushover API at {self._settings.api_url}: {failure.getErrorMessage()}"),
            transient=True,
        )

    def _read(self, response: Any) -> Deferred[None]:
        reading = read_body(response)
        reading.addCallback(self._check, response.code)
        return reading

    def _check(self, body: bytes, code: int) -> None:
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            reply = {}
        if code == 200 and reply.get("status") == 1:
            return
        errors = reply.get("errors")
        detail = "; ".join(str(error) for error in errors) if isinstance(errors, list) and errors else "no details"
        transient = code == 429 or code >= 500
        what = f"HTTP {code}" if code != 200 else f"status {reply.get('status')!r}"
        raise DeliveryError(self._scrub(f"Pushover API refused the alert ({what}): {detail}"), transient=transient)

    def _scrub(self, text: str) -> str:
        """Remove the secrets from text that comes from elsewhere (the API, the network stack)."""
        for secret in (self._settings.app_token, self._settings.user_key):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text
