"""
The daemon's configuration: a YAML file turned into one frozen, validated L{Config}.

Every problem is reported as a L{ConfigError} whose text names the key and the reason,
so that start-up can stop with one clear line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

import yaml

LOG_LEVELS = ("error", "warn", "info", "debug")


class ConfigError(Exception):
    """A configuration problem; C{str()} is one line naming the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class ReconnectPolicy:
    """How an upstream link retries: exponential backoff, then giving up."""

    initial_delay: float = 5.0
    factor: float = 2.0
    max_delay: float = 60.0
    max_attempts: int = 10


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server; C{tls} is starttls, ssl (implicit TLS) or none."""

    host: str
    port: int = 587
    tls: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    ca_file: str | None = None


@dataclass(frozen=True)
class EmailSettings:
    """The e-mail channel: sender, recipients and server."""

    sender: str
    recipients: tuple[str, ...]
    smtp: SmtpSettings


@dataclass(frozen=True)
class PushoverSettings:
    """The Pushover channel; the token and user key are secrets (never logged, not in repr)."""

    user_key: str = field(repr=False)
    app_token: str = field(repr=False)
    api_url: str = "https://api.pushover.net/1/messages.json"
    priority: int = 0


@dataclass(frozen=True)
class NotifyConfig:
    """
    The notifier's settings. A channel that is present but misconfigured is None here
    and listed in C{channel_problems} as (channel, reason) for one start-up warning.
    """

    events: frozenset[str] = frozenset()
    log: bool = False
    email: EmailSettings | None = None
    pushover: PushoverSettings | None = None
    channel_problems: tuple[tuple[str, str], ...] = ()
    flap_window: float = 30.0
    upstream_down_after: float = 120.0
    queue_limit: int = 100
    max_attempts: int = 5
    retry_delay: float = 10.0
    flush_timeout: float = 5.0


@dataclass(frozen=True)
class Config:
    """Everything the daemon needs to start, validated."""

    primary_url: str
    secondary_url: str | None = None
    listen: str = "tcp:port=9000:interface=0.0.0.0:backlog=1024"
    log_level: str = "info"
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    buffer_max_messages: int = 1000
    ca_file: str | None = None
    client_names: str | None = None
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def upstream_urls(self) -> dict[str, str]:
        """The configured upstreams by name, primary first."""
        urls = {"primary": self.primary_url}
        if self.secondary_url:
            urls["secondary"] = self.secondary_url
        return urls


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty string, got {_describe(value)}")
    return value


def _number(key: str, value: Any, minimum: float, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(key, f"must be {kind}, got {_describe(value)}")
    if value < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {value}")
    return value


def _websocket_url(key: str, value: Any) -> str:
    url = _string(key, value)
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ConfigError(key, f"must be a ws:// or wss:// URL, got {_describe(url)}")
    if not parts.hostname:
        raise ConfigError(key, f"has no host name: {_describe(url)}")
    if parts.query or parts.fragment:
        raise ConfigError(key, "must not have a query or fragment: the station id is appended")
    return url


def _mapping(key: str, value: Any, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping, got {_describe(value)}")
    for name in value:
        if name not in allowed:
            prefix = f"{key}." if key else ""
            raise ConfigError(
                f"{prefix}{name}", f"unknown key (expected one of: {', '.join(allowed)})"
            )
    return value


_TOP_KEYS = ("listen", "primary_url", "secondary_url", "log_level", "reconnect", "buffer", "ca_file")


def config_from_mapping(raw: Any, base_dir: str = ".") -> Config:
    """Validate a parsed YAML document; relative paths are taken from C{base_dir}."""
    if raw is None:
        raw = {}
    top = _mapping("", raw, _TOP_KEYS)
    if "primary_url" not in top:
        raise ConfigError("primary_url", "is mandatory")
    kwargs: dict[str, Any] = {"primary_url": _websocket_url("primary_url", top["primary_url"])}
    if top.get("secondary_url") is not None:
        kwargs["secondary_url"] = _websocket_url("secondary_url", top["secondary_url"])
    if "listen" in top:
        kwargs["listen"] = _string("listen", top["listen"])
    if "log_level" in top:
        level = top["log_level"]
        if level not in LOG_LEVELS:
            raise ConfigError("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {_describe(level)}")
        kwargs["log_level"] = level
    if top.get("ca_file") is not None:
        path = os.path.join(base_dir, _string("ca_file", top["ca_file"]))
        if not os.path.isfile(path):
            raise ConfigError("ca_file", f"no such file: {path}")
        kwargs["ca_file"] = path
    kwargs["reconnect"] = _reconnect(top.get("reconnect"))
    buffer = _mapping("buffer", top.get("buffer"), ("max_messages",))
    if "max_messages" in buffer:
        kwargs["buffer_max_messages"] = _number("buffer.max_messages", buffer["max_messages"], 1, True)
    return Config(**kwargs)


def _reconnect(value: Any) -> ReconnectPolicy:
    section = _mapping("reconnect", value, ("initial_delay", "factor", "max_delay", "max_attempts"))
    defaults = ReconnectPolicy()
    policy = ReconnectPolicy(
        initial_delay=_number("reconnect.initial_delay", section.get("initial_delay", defaults.initial_delay), 0.0),
        factor=_number("reconnect.factor", section.get("factor", defaults.factor), 1.0),
        max_delay=_number("reconnect.max_delay", section.get("max_delay", defaults.max_delay), 0.0),
        max_attempts=_number("reconnect.max_attempts", section.get("max_attempts", defaults.max_attempts), 1, True),
    )
    if policy.max_delay < policy.initial_delay:
        raise ConfigError("reconnect.max_delay", "must not be smaller than reconnect.initial_delay")
    return policy


def load_config(path: str) -> Config:
    """Read and validate the YAML file at C{path}; raises L{ConfigError}."""
    try:
        with open(path, encoding="utf-8") as stream:
            raw = yaml.safe_load(stream)
    except OSError as error:
        raise ConfigError("", f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("", f"{path} is not valid YAML{where}") from None
    return config_from_mapping(raw, os.path.dirname(os.path.abspath(path)))
