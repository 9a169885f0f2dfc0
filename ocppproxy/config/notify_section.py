"""
The C{notify} section of the configuration: events, channels and delivery settings.

Nothing here quotes a value in its error or problem text: any value under notify may be
a password, a token or a user key put in the wrong place, and channel problems reach the
log. Texts name the key and the kind of value instead. A channel that is present but
wrong is switched off (recorded in C{NotifyConfig.channel_problems}), not fatal.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from email.utils import getaddresses
from typing import Any
from urllib.parse import urlsplit

from ..notify.apprise_channel import EXTRA as APPRISE_EXTRA
from ..notify.apprise_channel import apprise_missing, unsupported_urls
from ..notify.keys import EVENT_KEYS
from .model import (
    TLS_MODES,
    AppriseSettings,
    ConfigError,
    EmailSettings,
    NotifyConfig,
    PushoverSettings,
    SmtpSettings,
    WebhookSettings,
    kind_of,
    refuse_unknown_keys,
    require_mapping,
)

_NOTIFY_KEYS = (
    "events",
    "log",
    "email",
    "pushover",
    "webhook",
    "apprise",
    "flap_window",
    "upstream_down_after",
    "queue_limit",
    "max_attempts",
    "retry_delay",
    "flush_timeout",
    "delivery_timeout",
    "summary_window",
    "burst_limit",
)
_EMAIL_KEYS = ("from", "to", "smtp")
_SMTP_KEYS = ("host", "port", "tls", "username", "password", "timeout", "ca_file")
_PUSHOVER_KEYS = ("user_key", "app_token", "api_url", "priority")
_WEBHOOK_KEYS = ("url", "headers", "timeout")
_APPRISE_KEYS = ("urls", "timeout")
# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
SMTP_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
PUSHOVER_API_URL = PushoverSettings.api_url


_NOTIFY_NUMBERS = (
    # key, minimum, whole number, minimum excluded
    ("flap_window", 0, False, False),
    ("upstream_down_after", 0, False, True),
    ("queue_limit", 1, True, False),
    ("max_attempts", 1, True, False),
    ("retry_delay", 0, False, False),
    ("flush_timeout", 0, False, False),
    ("delivery_timeout", 0, False, True),
    ("summary_window", 0, False, False),
    ("burst_limit", 0, True, False),
)


def notify_config(value: Any, base_dir: str) -> NotifyConfig:
    """The validated C{notify} section (None: no alerts)."""
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError("notify", f"must be a mapping, got {kind_of(value)}")
    section = require_mapping("notify", value, _NOTIFY_KEYS)
    kwargs: dict[str, Any] = {"events": _events(section.get("events"))}
    if section.get("log") is not None:
        kwargs["log"] = _flag("notify.log", section["log"])
    for key, minimum, integer, excluded in _NOTIFY_NUMBERS:
        if section.get(key) is not None:
            kwargs[key] = _setting(f"notify.{key}", section[key], minimum, integer, excluded)
    if section.get("apprise") is not None and apprise_missing():
        # Not a channel problem: the operator asked for it and the install lacks it.
        raise ConfigError("notify.apprise", f"needs the apprise library: pip install '{APPRISE_EXTRA}'")
    problems = []
    channels = (("email", _email), ("pushover", _pushover), ("webhook", _webhook), ("apprise", _apprise))
    for channel, parse in channels:
        if section.get(channel) is None:
            continue
        try:
            kwargs[channel] = parse(section[channel], base_dir)
        except ConfigError as problem:
            problems.append((channel, str(problem)))
    kwargs["channel_problems"] = tuple(problems)
    return NotifyConfig(**kwargs)


def _setting(key: str, value: Any, minimum: float, integer: bool, excluded: bool) -> Any:
    kinds = (int,) if integer else (int, float)
    kind = "a whole number" if integer else "a number of seconds"
    bound = f"above {minimum}" if excluded else f"from {minimum} up"
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(key, f"must be {kind} {bound}, got {kind_of(value)}")
    if value < minimum or (excluded and value == minimum):
        raise ConfigError(key, f"must be {kind} {bound}")
    return value if integer else float(value)


def _events(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, Mapping):
        raise ConfigError("notify.events", f"must be a mapping of event keys to true or false, got {kind_of(value)}")
    enabled = set()
    for key, on in value.items():
        if key not in EVENT_KEYS:
            raise ConfigError(f"notify.events.{key}", _unknown_event(str(key)))
        if _flag(f"notify.events.{key}", on):
            enabled.add(key)
    return frozenset(enabled)


def _unknown_event(key: str) -> str:
    close = difflib.get_close_matches(key, EVENT_KEYS, n=1)
    if close:
        return f"unknown event (did you mean {close[0]}?)"
    return f"unknown event (expected one of: {', '.join(EVENT_KEYS)})"


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"must be true or false, got {kind_of(value)}")
    return value


# Alert channels: a problem here switches the channel off instead of stopping start-up.


def _section(key: str, value: Any, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping, got {kind_of(value)}")
    refuse_unknown_keys(key, value, allowed)
    return value


def _required(key: str, section: Mapping[str, Any], name: str) -> Any:
    if section.get(name) is None:
        raise ConfigError(f"{key}.{name}", "is mandatory")
    return section[name]


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty string, got {kind_of(value)}")
    return value


def _whole(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be a whole number from {low} to {high}, got {kind_of(value)}")
    if not low <= value <= high:
        raise ConfigError(key, f"must be from {low} to {high}")
    return value


def _address(key: str, value: Any) -> str:
    text = _text(key, value)
    addresses = [address for _, address in getaddresses([text])]
    if not addresses or any("@" not in address for address in addresses):
        raise ConfigError(key, "is not an e-mail address (user@domain or Name <user@domain>)")
    return text


def _email(value: Any, base_dir: str) -> EmailSettings:
    section = _section("notify.email", value, _EMAIL_KEYS)
    sender = _address("notify.email.from", _required("notify.email", section, "from"))
    to = _required("notify.email", section, "to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, (list, tuple)) or not to:
        raise ConfigError("notify.email.to", f"must be an address or a list of addresses, got {kind_of(to)}")
    recipients = tuple(_address(f"notify.email.to[{index}]", address) for index, address in enumerate(to))
    return EmailSettings(sender, recipients, _smtp(_required("notify.email", section, "smtp"), base_dir))


def _smtp(value: Any, base_dir: str) -> SmtpSettings:
    key = "notify.email.smtp"
    section = _section(key, value, _SMTP_KEYS)
    host = _text(f"{key}.host", _required(key, section, "host"))
    tls = section.get("tls", "starttls")
    if tls not in TLS_MODES:
        raise ConfigError(f"{key}.tls", f"must be one of {', '.join(TLS_MODES)}")
    port = SMTP_DEFAULT_PORTS[tls]
    if section.get("port") is not None:
        port = _whole(f"{key}.port", section["port"], 1, 65535)
    credentials = {}
    for name in ("username", "password"):
        if section.get(name) is not None:
            credentials[name] = _text(f"{key}.{name}", section[name])
    if len(credentials) == 1:
        missing = "password" if "username" in credentials else "username"
        raise ConfigError(f"{key}.{missing}", f"is mandatory when {key}.{next(iter(credentials))} is set")
    timeout = _timeout(key, section)
    ca_file = None
    if section.get("ca_file") is not None:
        ca_file = os.path.abspath(os.path.join(base_dir, _text(f"{key}.ca_file", section["ca_file"])))
        if not os.path.isfile(ca_file):
            raise ConfigError(f"{key}.ca_file", f"no such file: {ca_file}")
    return SmtpSettings(host=host, port=port, tls=tls, timeout=timeout, ca_file=ca_file, **credentials)


def _pushover(value: Any, base_dir: str) -> PushoverSettings:
    key = "notify.pushover"
    section = _section(key, value, _PUSHOVER_KEYS)
    user_key = _text(f"{key}.user_key", _required(key, section, "user_key"))
    app_token = _text(f"{key}.app_token", _required(key, section, "app_token"))
    api_url = PUSHOVER_API_URL
    if section.get("api_url") is not None:
        api_url = _http_url(f"{key}.api_url", section["api_url"])
    if api_url == PUSHOVER_API_URL:
        # Pushover's own keys are 30 letters and digits; catching a placeholder here
        # beats a refusal at every alert. Relays (another api_url) may differ.
        for name, secret in (("user_key", user_key), ("app_token", app_token)):
            if len(secret) != 30 or not (secret.isascii() and secret.isalnum()):
                raise ConfigError(f"{key}.{name}", "is not a Pushover key (30 letters and digits)")
    priority = PushoverSettings.priority
    if section.get("priority") is not None:
        priority = _whole(f"{key}.priority", section["priority"], -2, 2)
    return PushoverSettings(user_key=user_key, app_token=app_token, api_url=api_url, priority=priority)


def _http_url(key: str, value: Any) -> str:
    url = _text(key, value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, "must be an http:// or https:// URL")
    return url


def _timeout(key: str, section: Mapping[str, Any]) -> float | None:
    """A channel's own C{timeout}; None where the file sets none (C{notify.delivery_timeout} applies)."""
    if section.get("timeout") is None:
        return None
    return _setting(f"{key}.timeout", section["timeout"], 0, False, True)


def _webhook(value: Any, base_dir: str) -> WebhookSettings:
    key = "notify.webhook"
    section = _section(key, value, _WEBHOOK_KEYS)
    url = _http_url(f"{key}.url", _required(key, section, "url"))
    headers = section.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise ConfigError(f"{key}.headers", f"must be a mapping of header names to values, got {kind_of(headers)}")
    pairs = []
    for name, header_value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"{key}.headers", "has a name that is not an HTTP header name")
        text = _text(f"{key}.headers.{name}", header_value)
        if any(character in text for character in "\r\n\0"):
            raise ConfigError(f"{key}.headers.{name}", "must be one line")
        pairs.append((name, text))
    return WebhookSettings(url=url, headers=tuple(pairs), timeout=_timeout(key, section))


def _apprise(value: Any, base_dir: str) -> AppriseSettings:
    key = "notify.apprise"
    section = _section(key, value, _APPRISE_KEYS)
    urls = _required(key, section, "urls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, (list, tuple)) or not urls:
        raise ConfigError(f"{key}.urls", f"must be an Apprise URL or a list of them, got {kind_of(urls)}")
    urls = tuple(_text(f"{key}.urls[{index}]", url) for index, url in enumerate(urls))
    refused = unsupported_urls(urls)
    if refused:
        raise ConfigError(f"{key}.urls[{refused[0]}]", "is not a URL Apprise accepts (unknown scheme or missing part)")
    return AppriseSettings(urls=urls, timeout=_timeout(key, section))
