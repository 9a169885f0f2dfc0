"""
The checks of single values that are more than a type and a bound: URLs, addresses,
credentials, call policies, event names. The schema (L{ocppproxy.config.schema}) names
them for each key; the section parsers call them through it.

Under C{notify}, C{cluster} and C{upstream_auth} no text quotes a value: any of them may
be a password, a token or a key put in the wrong place. Texts name the kind instead.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from email.utils import getaddresses
from typing import Any
from urllib.parse import urlsplit

from ..core.forwarded import Network
from ..core.upstream_auth import DROP, PASS, UpstreamAuth
from .events import EVENT_KEYS
from .model import CLIENT_ID_CHECKS, ConfigError, describe, kind_of, require_string

REDIS_SCHEMES = ("redis", "rediss", "unix")
# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def websocket_url(key: str, value: Any) -> str:
    """An upstream's ws:// or wss:// URL: a host, no credentials, no query or fragment."""
    url = require_string(key, value)
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Checked first and never quoted: the URL holds a password, and it would be logged with every attempt.
        raise ConfigError(key, "must not hold credentials (user:password@host): use upstream_auth")
    if parts.scheme not in ("ws", "wss"):
        raise ConfigError(key, f"must be a ws:// or wss:// URL, got {describe(url)}")
    if not parts.hostname:
        raise ConfigError(key, f"has no host name: {describe(url)}")
    if parts.query or parts.fragment:
        raise ConfigError(key, "must not have a query or fragment: the station id is appended")
    return url


def call_policy(key: str, value: Any) -> frozenset | None:
    """C{all} (None: every action), C{none} (empty), or a list of OCPP action names."""
    if value == "all":
        return None
    if value == "none":
        return frozenset()
    if isinstance(value, list) and all(isinstance(action, str) and action for action in value):
        return frozenset(value)
    raise ConfigError(key, f"must be all, none or a list of OCPP actions, got {describe(value)}")


_UPSTREAM_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# Frames to the station are addressed to this name (ocppproxy.core.effects.STATION).
RESERVED_NAMES = ("station",)


def upstream_name(key: str, value: Any) -> str:
    """The name of an upstream: letters, digits, C{_}, C{-} and C{.} (it is a metrics label and a log word)."""
    if not isinstance(value, str) or not _UPSTREAM_NAME.fullmatch(value):
        raise ConfigError(key, f"must be a name of letters, digits, _, - and ., got {describe(value)}")
    if value in RESERVED_NAMES:
        raise ConfigError(key, f"{value!r} is reserved: choose another name")
    return value


def receives(key: str, value: Any) -> frozenset | None:
    """
    C{all} (None) or a non-empty list of OCPP actions; StopTransaction only with
    StartTransaction (its transaction id would name a start the upstream never saw).
    """
    if value == "all":
        return None
    if not isinstance(value, list) or not value or not all(isinstance(action, str) and action for action in value):
        raise ConfigError(key, f"must be all or a non-empty list of OCPP actions, got {describe(value)}")
    actions = frozenset(value)
    if "StopTransaction" in actions and "StartTransaction" not in actions:
        raise ConfigError(key, "holds StopTransaction without StartTransaction: the upstream would get stops of "
                          "transactions it never saw start")
    return actions


def station_id_template(key: str, value: Any) -> str:
    """The id appended to an upstream's URL: a string holding C{{station_id}}, safe in a URL path."""
    text = require_string(key, value)
    if "{station_id}" not in text:
        raise ConfigError(key, f"must hold {{station_id}} (every station would get the same id), got {describe(text)}")
    if any(character in text for character in "/?#") or any(ord(character) < 33 for character in text):
        raise ConfigError(key, "must not hold /, ?, #, spaces or control characters")
    return text


def route_list(key: str, value: Any) -> list:
    """C{routes}: a non-empty list of mappings (each entry is checked by the routes parser)."""
    if not isinstance(value, list) or not value:
        raise ConfigError(key, f"must be a non-empty list of routes (stations, primary, mirrors), got {kind_of(value)}")
    return value


def stations(key: str, value: Any) -> tuple[str, ...]:
    """A route's C{stations}: a non-empty list of station ids and patterns (strings: quote numbers)."""
    if not isinstance(value, list) or not value:
        raise ConfigError(key, f"must be a non-empty list of station ids or patterns, got {describe(value)}")
    for index, entry in enumerate(value):
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"{key}[{index}]", f"must be a station id or pattern (quote numbers), got {describe(entry)}")
    return tuple(value)


def names(key: str, value: Any) -> tuple[str, ...]:
    """A list of upstream names, each once."""
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of upstream names, got {describe(value)}")
    checked = tuple(upstream_name(f"{key}[{index}]", name) for index, name in enumerate(value))
    if len(set(checked)) != len(checked):
        raise ConfigError(key, "names an upstream twice")
    return checked


def redact(key: str, value: Any) -> tuple[str, ...]:
    """The extra keys to mask where frames are shown: a list of key names (empty or absent: none)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of payload key names, got {describe(value)}")
    for index, name in enumerate(value):
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{key}[{index}]", f"must be a non-empty key name, got {describe(name)}")
    return tuple(dict.fromkeys(value))


def redis_url(key: str, value: Any) -> str:
    """C{cluster.redis_url}: redis://, rediss:// or unix:///path (never quoted: it may hold a password)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a redis://, rediss:// or unix:// URL, got {kind_of(value)}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(key, "is not a valid URL (check the port)") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ConfigError(key, "must be a redis://, rediss:// or unix:///path URL")
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise ConfigError(key, "a unix:// URL needs an absolute socket path (unix:///run/redis/redis.sock)")
        return value
    if not parts.hostname:
        raise ConfigError(key, "has no host name")
    if port == 0:
        raise ConfigError(key, "port must not be 0")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ConfigError(key, "the path must be a database number (redis://host:6379/0)")
    return value


def instance_name(key: str, value: Any) -> str:
    """C{cluster.instance}: a non-empty name without spaces or control characters."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty string, got {kind_of(value)}")
    if any(ord(character) < 33 or ord(character) == 127 for character in value):
        raise ConfigError(key, "must not contain spaces or control characters")
    return value


def ownership_ttl(key: str, value: Any) -> int:
    """C{cluster.ownership_ttl}: whole seconds, at least 3 (refreshed every third of it, at most once a second)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be a whole number of seconds, got {kind_of(value)}")
    if value < 3:
        raise ConfigError(key, f"must be at least 3, got {value}")
    return value


def upstream_mode(key: str, value: Any) -> UpstreamAuth | Mapping[str, Any]:
    """
    C{upstream_auth.<upstream>}: C{pass} or C{drop} (their L{UpstreamAuth}), or the
    mapping of credentials, whose keys the section's parser checks (never quoted).
    """
    if value in (PASS, DROP):
        return UpstreamAuth(mode=value)
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be pass, drop or a mapping with username and password, got {kind_of(value)}")
    return value


def credential(key: str, value: Any) -> str:
    """A user name or password sent in HTTP Basic: a non-empty string without control characters (never quoted)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty string, got {kind_of(value)}")
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise ConfigError(key, "must not contain control characters")
    return value


def path_text(key: str, value: Any) -> str:
    """A file or directory name (existence is checked where it is resolved against the file's directory)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a path, got {kind_of(value)}")
    return value


def trusted_proxies(key: str, value: Any) -> tuple[Network, ...]:
    """C{trusted_proxies}: a list of IP addresses and CIDR networks."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(key, f"must be a list of IP addresses or networks, got {kind_of(value)}")
    networks = []
    for index, entry in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(entry, str):
            raise ConfigError(where, f"must be an IP address or network such as 10.0.0.0/8, got {kind_of(entry)}")
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
        except ValueError as error:
            raise ConfigError(where, str(error)) from None
    return tuple(networks)


def check_client_id(key: str, value: Any) -> str:
    """C{station_tls.check_client_id}: refuse, warn or off (YAML reads a bare C{off} as false: that is off too)."""
    if value is False:
        return "off"
    if not isinstance(value, str) or value not in CLIENT_ID_CHECKS:
        raise ConfigError(key, f"must be one of {', '.join(CLIENT_ID_CHECKS)}, got {describe(value)}")
    return value


def secret_text(key: str, value: Any) -> str:
    """A non-empty string, named by its kind when wrong (it may be a secret)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty string, got {kind_of(value)}")
    return value


def address(key: str, value: Any) -> str:
    """An e-mail address: C{user@domain} or C{Name <user@domain>}."""
    text = secret_text(key, value)
    addresses = [found for _, found in getaddresses([text])]
    if not addresses or any("@" not in found for found in addresses):
        raise ConfigError(key, "is not an e-mail address (user@domain or Name <user@domain>)")
    return text


def http_url(key: str, value: Any) -> str:
    """An http:// or https:// URL with a host."""
    url = secret_text(key, value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, "must be an http:// or https:// URL")
    return url


def events(key: str, value: Any) -> frozenset[str]:
    """C{notify.events}: a mapping of event keys (L{EVENT_KEYS}) to true or false; the enabled ones."""
    if value is None:
        return frozenset()
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping of event keys to true or false, got {kind_of(value)}")
    enabled = set()
    for name, on in value.items():
        if name not in EVENT_KEYS:
            raise ConfigError(f"{key}.{name}", _unknown_event(str(name)))
        if not isinstance(on, bool):
            raise ConfigError(f"{key}.{name}", f"must be true or false, got {kind_of(on)}")
        if on:
            enabled.add(name)
    return frozenset(enabled)


def _unknown_event(name: str) -> str:
    close = difflib.get_close_matches(name, EVENT_KEYS, n=1)
    if close:
        return f"unknown event (did you mean {close[0]}?)"
    return f"unknown event (expected one of: {', '.join(EVENT_KEYS)})"


def headers(key: str, value: Any) -> tuple[tuple[str, str], ...]:
    """C{notify.webhook.headers}: HTTP header names to one-line values (never quoted)."""
    value = value or {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping of header names to values, got {kind_of(value)}")
    pairs = []
    for name, header_value in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(key, "has a name that is not an HTTP header name")
        text = secret_text(f"{key}.{name}", header_value)
        if any(character in text for character in "\r\n\0"):
            raise ConfigError(f"{key}.{name}", "must be one line")
        pairs.append((name, text))
    return tuple(pairs)


def one_or_more(what: str, each) -> Any:
    """A check for one value or a non-empty list of them (C{what} names them), each checked by C{each}."""

    def check(key: str, value: Any) -> tuple[Any, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(key, f"must be {what}, got {kind_of(value)}")
        return tuple(each(f"{key}[{index}]", item) for index, item in enumerate(value))

    return check


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def sha256_hex(key: str, value: Any) -> str:
    """A SHA-256 digest as 64 hex digits (lower-cased); a wrong value is named by its kind, never quoted."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ConfigError(key, f"must be the 64 hex digits of a SHA-256, got {kind_of(value)}")
    return value.lower()


def token_list(key: str, value: Any) -> list:
    """A list of token mappings (each checked by L{ocppproxy.config.api_section})."""
    if not isinstance(value, list) or not all(isinstance(each, dict) for each in value):
        raise ConfigError(key, f"must be a list of mappings, got {kind_of(value)}")
    return value
