"""
What the proxy shows of a frame: the frame with the credentials it carries (and the keys
the operator names in C{redact}) replaced by L{MASK}. The frame relayed is never touched:
these functions only build the text that a log line, the traffic log or an alert quotes.
Pure: no I/O, no reactor.

Masked by default, wherever they occur in a frame (a CALL, an answer, an error's
details), names compared without regard to case:

  - OCPP 1.6: the C{value} next to C{"key": "AuthorizationKey"} (ChangeConfiguration,
    a GetConfiguration answer);
  - OCPP 2.0.1 / 2.1: the C{attributeValue}, C{actualValue}, C{value} and each
    C{variableAttribute}'s C{value} next to a C{variable} named C{BasicAuthPassword}
    (SetVariables, GetVariables' answer, NotifyReport, NotifyEvent);
  - OCPP 2.0.1 / 2.1 SetNetworkProfile: C{apn.apnPassword}, C{vpn.password}, C{vpn.key};
  - any key named C{AuthorizationKey}, C{BasicAuthPassword} or C{apnPassword};
  - a string that quotes one of these names (or a C{redact} key) inside a longer text,
    such as an error description echoing a frame.

A frame that is not JSON cannot be masked: if it mentions any of these names (even
through a C{\\uXXXX} escape) nothing of it is shown but its length.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from .ocppj import shorten

MASK = "***"

# Keys masked wherever they occur, and the names whose mention makes a frame worth a look.
_SECRET_KEYS = frozenset(("authorizationkey", "basicauthpassword", "apnpassword"))
_AUTHORIZATION_KEY = "authorizationkey"
_BASIC_AUTH_PASSWORD = "basicauthpassword"
_VARIABLE_VALUES = ("attributeValue", "actualValue", "value")
_VPN_SECRETS = frozenset(("password", "key"))
_QUOTED = ("AuthorizationKey", "BasicAuthPassword", "apnPassword")
_MENTIONED = (*_QUOTED, "vpn")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _names_any(names: tuple[str, ...], text: str) -> bool:
    """Whether C{text} holds any of C{names} (lower case), regardless of case, escapes decoded."""
    lowered = text.lower()
    for name in names:
        if name in lowered:
            return True
    return "\\u" in text and _names_any(names, _unescape(text))


def _unescape(text: str) -> str:
    """C{text} with its JSON C{\\uXXXX} escapes decoded (only to look for names in it)."""
    return _ESCAPE.sub(lambda found: chr(int(found.group(1), 16)), text)


class Redactor:
    """
    Masks secrets in frames shown to people: the defaults above plus C{keys} (the
    configuration's C{redact}: key names, case-sensitive, masked wherever they occur in a
    payload, an object or a list replaced whole).

    Use it only where a frame is shown: a frame that mentions none of the names is
    returned as it is after a search for each name; one that does is parsed.
    """

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self.keys = frozenset(keys)
        self._mentioned = tuple({name.lower() for name in (*_MENTIONED, *self.keys)})
        self._quoted = tuple({name.lower() for name in (*_QUOTED, *self.keys)})
        self._names = frozenset((*_SECRET_KEYS, *(key.lower() for key in self.keys)))

    def mentions(self, text: str) -> bool:
        """Whether C{text} names a masked key, even through C{\\uXXXX} escapes (may say yes for nothing)."""
        return _names_any(self._mentioned, text)

    def text(self, payload: bytes | str) -> str:
        """
        The frame as it may be shown: verbatim when nothing in it is masked, else its JSON
        with the masked values replaced (compact, non-ASCII kept); a frame that is not
        JSON and mentions a masked name is replaced by a note of its length.
        """
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        if not self.mentions(text):
            return text
        try:
            value = json.loads(text)
        except ValueError:
            return f"(not JSON, {len(text)} characters, not shown: it mentions a masked key)"
        except RecursionError:
            return f"(nested too deep, {len(text)} characters, not shown: it mentions a masked key)"
        masked = self.value(value)
        if masked is value:
            return text
        return json.dumps(masked, ensure_ascii=False, separators=(",", ":"))

    def shorten(self, payload: bytes | str, limit: int = 120) -> str:
        """L{text}, cut to C{limit} characters for a log line."""
        return shorten(self.text(payload), limit)

    def value(self, value: Any) -> Any:
        """
        A decoded JSON value with the secrets masked: C{value} itself when nothing is
        masked, else a copy; a value nested too deep to walk is masked whole.
        """
        try:
            return self._mask(value, None)
        except RecursionError:
            return MASK

    def _mask(self, value: Any, parent: str | None) -> Any:
        if isinstance(value, dict):
            return self._mask_object(value, parent)
        if isinstance(value, list):
            masked = [self._mask(item, parent) for item in value]
            return value if all(new is old for new, old in zip(masked, value, strict=True)) else masked
        if isinstance(value, str) and self._quotes_name(value):
            return MASK
        return value

    def _quotes_name(self, text: str) -> bool:
        """Whether a string holds a masked key's name inside a longer text (an echoed frame), not just the name."""
        if not _names_any(self._quoted, text):
            return False
        return _unescape(text).strip().strip('"').lower() not in self._names

    def _mask_object(self, value: dict, parent: str | None) -> dict:
        secret_fields = self._secret_fields(value)
        in_vpn = parent is not None and parent.lower() == "vpn"
        masked: dict | None = None
        for key, item in value.items():
            if (
                key in self.keys
                or key in secret_fields
                or key.lower() in _SECRET_KEYS
                or (in_vpn and key.lower() in _VPN_SECRETS)
            ):
                new = MASK
            elif key == "variableAttribute" and secret_fields is _VARIABLE_VALUES:
                new = _mask_attribute_values(item)
            else:
                new = self._mask(item, key)
            if new is not item:
                if masked is None:
                    masked = dict(value)
                masked[key] = new
        return value if masked is None else masked

    @staticmethod
    def _secret_fields(value: dict) -> tuple[str, ...]:
        """The fields of an object that hold a password: next to its 1.6 key name or its 2.x variable."""
        key = value.get("key")
        if isinstance(key, str) and key.lower() == _AUTHORIZATION_KEY:
            return ("value",)
        variable = value.get("variable")
        if isinstance(variable, dict):
            name = variable.get("name")
            if isinstance(name, str) and name.lower() == _BASIC_AUTH_PASSWORD:
                return _VARIABLE_VALUES
        return ()


def _mask_attribute_values(attributes: Any) -> Any:
    """A 2.x C{variableAttribute} list with each attribute's C{value} masked (anything else: whole)."""
    if not isinstance(attributes, list):
        return MASK
    return [
        {**attribute, "value": MASK} if isinstance(attribute, dict) and "value" in attribute else attribute
        for attribute in attributes
    ]
