"""
The daemon's configuration: a YAML file (or the Node tool's C{config.json}, see
L{ocppproxy.nodecompat}) turned into one frozen, validated L{Config}.

Every problem is reported as a L{ConfigError} whose text names the key and the reason,
so that start-up can stop with one clear line. The one exception is an alert channel
that is present but misconfigured: it is switched off and its problem recorded in
L{NotifyConfig.channel_problems}, and the daemon still starts. The notify section is
parsed in L{ocppproxy.config_notify}.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

if TYPE_CHECKING:
    from .config_cluster import ClusterConfig
    from .config_security import UpstreamTLS
    from .forwarded import Network
    from .upstream_auth import UpstreamAuth

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
class WebhookSettings:
    """The webhook channel: a JSON POST to C{url}; header values (often tokens) are never logged."""

    url: str = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    timeout: float = 30.0


@dataclass(frozen=True)
class AppriseSettings:
    """The Apprise channel: one delivery per URL (URLs carry tokens: never logged whole)."""

    urls: tuple[str, ...] = field(repr=False)
    timeout: float = 30.0


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
    webhook: WebhookSettings | None = None
    apprise: AppriseSettings | None = None
    channel_problems: tuple[tuple[str, str], ...] = ()
    flap_window: float = 30.0
    upstream_down_after: float = 120.0
    queue_limit: int = 100
    max_attempts: int = 5
    retry_delay: float = 10.0
    flush_timeout: float = 5.0
    summary_window: float = 10.0
    burst_limit: int = 5


@dataclass(frozen=True)
class StationTLS:
    """
    TLS towards the stations on a tcp: or systemd: listen endpoint (absolute paths):
    the proxy's certificate (and chain) and key, and the CA(s) whose client
    certificates stations must present, if any.
    """

    certificate: str
    private_key: str
    client_ca_file: str | None = None


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
    failover: bool = False
    default_subprotocol: str = "ocpp1.6"
    handshake_timeout: float = 10.0
    max_frame_size: int = 1024 * 1024
    keepalive_interval: float = 30.0
    keepalive_timeout: float = 10.0
    pending_call_timeout: float = 40.0
    upstream_calls: Mapping[str, frozenset | None] = field(default_factory=dict)
    state_file: str | None = None
    status_listen: str | None = None
    traffic_log_directory: str | None = None
    traffic_log_max_pending: int = 10000
    upstream_auth: Mapping[str, UpstreamAuth] = field(default_factory=dict)
    upstream_tls: Mapping[str, UpstreamTLS] = field(default_factory=dict)
    trusted_proxies: tuple[Network, ...] = ()
    max_stations: int = 10000
    max_handshakes: int = 200
    station_tls: StationTLS | None = None
    cluster: ClusterConfig | None = None

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
    if "@" in parts.netloc:
        # Checked first and never quoted: the URL holds a password, and it would be logged with every attempt.
        raise ConfigError(key, "must not hold credentials (user:password@host): use upstream_auth")
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
    refuse_unknown_keys(key, value, allowed)
    return value


def refuse_unknown_keys(key: str, section: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """A L{ConfigError} naming the first key of C{section} (the one at C{key}; "" is the top) not in C{allowed}."""
    for name in section:
        if name not in allowed:
            prefix = f"{key}." if key else ""
            raise ConfigError(f"{prefix}{name}", f"unknown key (expected one of: {', '.join(allowed)})")


TOP_KEYS = (
    "listen",
    "primary_url",
    "secondary_url",
    "log_level",
    "reconnect",
    "buffer",
    "ca_file",
    "client_names",
    "notify",
    "failover",
    "default_subprotocol",
    "handshake_timeout",
    "max_frame_size",
    "keepalive",
    "pending_call_timeout",
    "upstream_calls",
    "state_file",
    "status",
    "traffic_log",
    "upstream_auth",
    "upstream_tls",
    "trusted_proxies",
    "limits",
    "station_tls",
    "cluster",
)


def config_from_mapping(raw: Any, base_dir: str = ".") -> Config:
    """Validate a parsed YAML document; relative paths are taken from C{base_dir}."""
    if raw is None:
        raw = {}
    top = _mapping("", raw, TOP_KEYS)
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
    if top.get("client_names") is not None:
        # A missing names file is not fatal: the notifier warns and uses the raw ids.
        kwargs["client_names"] = os.path.abspath(os.path.join(base_dir, _string("client_names", top["client_names"])))
    kwargs["notify"] = _notify_section(top.get("notify"), base_dir)
    if "default_subprotocol" in top:
        kwargs["default_subprotocol"] = _string("default_subprotocol", top["default_subprotocol"]).strip()
    if "handshake_timeout" in top:
        kwargs["handshake_timeout"] = _number("handshake_timeout", top["handshake_timeout"], 0.1)
    if "max_frame_size" in top:
        kwargs["max_frame_size"] = _number("max_frame_size", top["max_frame_size"], 1024, True)
    if "pending_call_timeout" in top:
        kwargs["pending_call_timeout"] = _number("pending_call_timeout", top["pending_call_timeout"], 1.0)
    keepalive = _mapping("keepalive", top.get("keepalive"), ("interval", "timeout"))
    # Autobahn's timers run in 0.2 s buckets: shorter keepalive times are not reliable.
    if "interval" in keepalive:
        kwargs["keepalive_interval"] = _number("keepalive.interval", keepalive["interval"], 0.0)
        if 0 < kwargs["keepalive_interval"] < 1:
            raise ConfigError("keepalive.interval", "must be 0 (off) or at least 1 second")
    if "timeout" in keepalive:
        kwargs["keepalive_timeout"] = _number("keepalive.timeout", keepalive["timeout"], 1.0)
    if top.get("state_file") is not None:
        path = os.path.abspath(os.path.join(base_dir, _string("state_file", top["state_file"])))
        if not os.path.isdir(os.path.dirname(path)):
            raise ConfigError("state_file", f"directory {os.path.dirname(path)} does not exist")
        kwargs["state_file"] = path
    kwargs.update(_status(top.get("status")))
    kwargs.update(_traffic_log(top.get("traffic_log"), base_dir))
    if top.get("station_tls") is not None:
        kwargs["station_tls"] = _station_tls(top["station_tls"], base_dir, kwargs.get("listen", Config.listen))
    limits = _mapping("limits", top.get("limits"), ("max_stations", "max_handshakes"))
    for name in limits:
        kwargs[name] = _number(f"limits.{name}", limits[name], 1, True)
    policies = _mapping("upstream_calls", top.get("upstream_calls"), ("primary", "secondary"))
    kwargs["upstream_calls"] = {name: _call_policy(f"upstream_calls.{name}", value) for name, value in policies.items()}
    if "failover" in top:
        if not isinstance(top["failover"], bool):
            raise ConfigError("failover", f"must be true or false, got {_describe(top['failover'])}")
        kwargs["failover"] = top["failover"]
    kwargs.update(_upstream_security(top, base_dir, kwargs))
    kwargs["cluster"] = _cluster_section(top.get("cluster"), kwargs.get("listen", Config.listen))
    return Config(**kwargs)


def _cluster_section(value: Any, listen: str) -> ClusterConfig | None:
    """The cluster section: see L{ocppproxy.config_cluster} (imported here: it uses this module's helpers)."""
    from .config_cluster import cluster_config

    return cluster_config(value, listen)


def _notify_section(value: Any, base_dir: str) -> NotifyConfig:
    """The notify section: see L{ocppproxy.config_notify} (imported here: it uses this module's types)."""
    from .config_notify import notify_config

    return notify_config(value, base_dir)


def _upstream_security(top: Mapping[str, Any], base_dir: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Credentials, certificates and trusted proxies towards the upstreams: see L{ocppproxy.config_security}."""
    from . import config_security

    urls = {"primary": settings["primary_url"], "secondary": settings.get("secondary_url")}
    return {
        "upstream_auth": config_security.upstream_auth(top.get("upstream_auth")),
        "upstream_tls": config_security.upstream_tls(top.get("upstream_tls"), base_dir, urls),
        "trusted_proxies": config_security.trusted_proxies(top.get("trusted_proxies")),
    }


def _station_tls(value: Any, base_dir: str, listen: str) -> StationTLS:
    """The station_tls section: certificate and private_key mandatory, files relative to C{base_dir}."""
    section = _mapping("station_tls", value, ("certificate", "private_key", "client_ca_file"))
    if listen.startswith("ssl:"):
        raise ConfigError("station_tls", "cannot be combined with an ssl: listen endpoint (use tcp: or systemd:)")
    paths = {}
    for name in ("certificate", "private_key", "client_ca_file"):
        if section.get(name) is None:
            if name != "client_ca_file":
                raise ConfigError(f"station_tls.{name}", "is mandatory in a station_tls section")
            continue
        path = os.path.abspath(os.path.join(base_dir, _string(f"station_tls.{name}", section[name])))
        if not os.path.isfile(path):
            raise ConfigError(f"station_tls.{name}", f"no such file: {path}")
        paths[name] = path
    return StationTLS(**paths)


def _status(value: Any) -> dict[str, Any]:
    """The status page: off without a C{status} section, which then needs C{listen}."""
    if value is None:
        return {}
    section = _mapping("status", value, ("listen",))
    if "listen" not in section:
        raise ConfigError("status.listen", "is mandatory in a status section")
    return {"status_listen": _string("status.listen", section["listen"])}


def _traffic_log(value: Any, base_dir: str) -> dict[str, Any]:
    """The traffic log: off without a C{traffic_log} section, which then needs an existing C{directory}."""
    if value is None:
        return {}
    section = _mapping("traffic_log", value, ("directory", "max_pending"))
    if "directory" not in section:
        raise ConfigError("traffic_log.directory", "is mandatory in a traffic_log section")
    directory = os.path.abspath(os.path.join(base_dir, _string("traffic_log.directory", section["directory"])))
    if not os.path.isdir(directory):
        raise ConfigError("traffic_log.directory", f"no such directory: {directory}")
    settings: dict[str, Any] = {"traffic_log_directory": directory}
    if "max_pending" in section:
        settings["traffic_log_max_pending"] = _number("traffic_log.max_pending", section["max_pending"], 1, True)
    return settings


def _call_policy(key: str, value: Any) -> frozenset | None:
    """C{all} (None: every action), C{none} (empty), or a list of OCPP action names."""
    if value == "all":
        return None
    if value == "none":
        return frozenset()
    if isinstance(value, list) and all(isinstance(action, str) and action for action in value):
        return frozenset(value)
    raise ConfigError(key, f"must be all, none or a list of OCPP actions, got {_describe(value)}")


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


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def load_config(path: str) -> Config:
    """
    Read and validate the configuration file at C{path}; raises L{ConfigError}.

    A C{.json} file is read as JSON, anything else as YAML. The Node tool's
    C{config.json} (see L{ocppproxy.nodecompat.is_node_config}) is translated first.
    """
    from . import nodecompat

    raw = _read_json(path) if path.lower().endswith(".json") else _read_yaml(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    if nodecompat.is_node_config(raw, path):
        return nodecompat.config_from_node(raw, base_dir)
    return config_from_mapping(raw, base_dir)


def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as stream:
            return yaml.safe_load(stream)
    except OSError as error:
        raise ConfigError("", f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("", f"{path} is not valid YAML{where}") from None


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as stream:
            return json.load(stream)
    except OSError as error:
        raise ConfigError("", f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ConfigError("", f"{path} is not valid JSON at line {error.lineno}, column {error.colno}") from None
