"""
The configuration's top level: a mapping (read by L{ocppproxy.config.load}, or translated
from the Node tool's file) turned into one frozen, validated L{Config}.

Every problem is reported as a L{ConfigError} whose text names the key and the reason,
so that start-up can stop with one clear line. The one exception is an alert channel
that is present but misconfigured: it is switched off and its problem recorded in
L{NotifyConfig.channel_problems}, and the daemon still starts. The notify section is
parsed in L{ocppproxy.config.notify_section}, the keys that secure the upstreams in
L{ocppproxy.config.security}.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from . import security
from .cluster import cluster_config
from .model import (
    LOG_LEVELS,
    Config,
    ConfigError,
    ReconnectPolicy,
    StationTLS,
    describe,
    require_mapping,
    require_number,
    require_string,
)
from .notify_section import notify_config


def _websocket_url(key: str, value: Any) -> str:
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
    "redact",
)


# (minimum, whole number): a write buffer below Twisted's own 64 KiB would cost reads;
# the other limits are whole numbers of at least 1.
_LIMIT_BOUNDS = {"max_write_buffer": (65536, True), "stall_timeout": (0.1, False), "max_frames_per_second": (0.1, False)}
_LIMIT_KEYS = (
    "max_stations",
    "max_handshakes",
    "max_handshakes_per_address",
    "max_write_buffer",
    "stall_timeout",
    "max_frames_per_second",
    "frame_burst",
    "max_connects_per_minute",
)


def config_from_mapping(raw: Any, base_dir: str = ".") -> Config:
    """Validate a parsed YAML document; relative paths are taken from C{base_dir}."""
    if raw is None:
        raw = {}
    top = require_mapping("", raw, TOP_KEYS)
    if "primary_url" not in top:
        raise ConfigError("primary_url", "is mandatory")
    kwargs: dict[str, Any] = {"primary_url": _websocket_url("primary_url", top["primary_url"])}
    if top.get("secondary_url") is not None:
        kwargs["secondary_url"] = _websocket_url("secondary_url", top["secondary_url"])
    if "listen" in top:
        kwargs["listen"] = require_string("listen", top["listen"])
    if "log_level" in top:
        level = top["log_level"]
        if level not in LOG_LEVELS:
            raise ConfigError("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {describe(level)}")
        kwargs["log_level"] = level
    if top.get("ca_file") is not None:
        path = os.path.join(base_dir, require_string("ca_file", top["ca_file"]))
        if not os.path.isfile(path):
            raise ConfigError("ca_file", f"no such file: {path}")
        kwargs["ca_file"] = path
    kwargs["reconnect"] = _reconnect(top.get("reconnect"))
    buffer = require_mapping("buffer", top.get("buffer"), ("max_messages",))
    if "max_messages" in buffer:
        kwargs["buffer_max_messages"] = require_number("buffer.max_messages", buffer["max_messages"], 1, True)
    if top.get("client_names") is not None:
        # A missing names file is not fatal: the notifier warns and uses the raw ids.
        names_file = require_string("client_names", top["client_names"])
        kwargs["client_names"] = os.path.abspath(os.path.join(base_dir, names_file))
    kwargs["notify"] = notify_config(top.get("notify"), base_dir)
    if "default_subprotocol" in top:
        kwargs["default_subprotocol"] = require_string("default_subprotocol", top["default_subprotocol"]).strip()
    if "handshake_timeout" in top:
        kwargs["handshake_timeout"] = require_number("handshake_timeout", top["handshake_timeout"], 0.1)
    if "max_frame_size" in top:
        kwargs["max_frame_size"] = require_number("max_frame_size", top["max_frame_size"], 1024, True)
    if "pending_call_timeout" in top:
        kwargs["pending_call_timeout"] = require_number("pending_call_timeout", top["pending_call_timeout"], 1.0)
    keepalive = require_mapping("keepalive", top.get("keepalive"), ("interval", "timeout"))
    # Autobahn's timers run in 0.2 s buckets: shorter keepalive times are not reliable.
    if "interval" in keepalive:
        kwargs["keepalive_interval"] = require_number("keepalive.interval", keepalive["interval"], 0.0)
        if 0 < kwargs["keepalive_interval"] < 1:
            raise ConfigError("keepalive.interval", "must be 0 (off) or at least 1 second")
    if "timeout" in keepalive:
        kwargs["keepalive_timeout"] = require_number("keepalive.timeout", keepalive["timeout"], 1.0)
    if top.get("state_file") is not None:
        path = os.path.abspath(os.path.join(base_dir, require_string("state_file", top["state_file"])))
        if not os.path.isdir(os.path.dirname(path)):
            raise ConfigError("state_file", f"directory {os.path.dirname(path)} does not exist")
        kwargs["state_file"] = path
    kwargs.update(_status(top.get("status")))
    kwargs.update(_traffic_log(top.get("traffic_log"), base_dir))
    if top.get("station_tls") is not None:
        kwargs["station_tls"] = _station_tls(top["station_tls"], base_dir, kwargs.get("listen", Config.listen))
    limits = require_mapping("limits", top.get("limits"), _LIMIT_KEYS)
    for name in limits:
        kwargs[name] = require_number(f"limits.{name}", limits[name], *_LIMIT_BOUNDS.get(name, (1, True)))
    policies = require_mapping("upstream_calls", top.get("upstream_calls"), ("primary", "secondary"))
    kwargs["upstream_calls"] = {name: _call_policy(f"upstream_calls.{name}", value) for name, value in policies.items()}
    if "failover" in top:
        if not isinstance(top["failover"], bool):
            raise ConfigError("failover", f"must be true or false, got {describe(top['failover'])}")
        kwargs["failover"] = top["failover"]
    kwargs.update(_upstream_security(top, base_dir, kwargs))
    kwargs["cluster"] = cluster_config(top.get("cluster"), kwargs.get("listen", Config.listen))
    kwargs["redact"] = _redact(top.get("redact"))
    return Config(**kwargs)


def _upstream_security(top: Mapping[str, Any], base_dir: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Credentials, certificates and trusted proxies towards the upstreams: see L{ocppproxy.config.security}."""
    urls = {"primary": settings["primary_url"], "secondary": settings.get("secondary_url")}
    return {
        "upstream_auth": security.upstream_auth(top.get("upstream_auth")),
        "upstream_tls": security.upstream_tls(top.get("upstream_tls"), base_dir, urls),
        "trusted_proxies": security.trusted_proxies(top.get("trusted_proxies")),
    }


def _station_tls(value: Any, base_dir: str, listen: str) -> StationTLS:
    """The station_tls section: certificate and private_key mandatory, files relative to C{base_dir}."""
    section = require_mapping("station_tls", value, ("certificate", "private_key", "client_ca_file", "check_client_id"))
    if listen.startswith("ssl:"):
        raise ConfigError("station_tls", "cannot be combined with an ssl: listen endpoint (use tcp: or systemd:)")
    paths = {}
    for name in ("certificate", "private_key", "client_ca_file"):
        if section.get(name) is None:
            if name != "client_ca_file":
                raise ConfigError(f"station_tls.{name}", "is mandatory in a station_tls section")
            continue
        path = os.path.abspath(os.path.join(base_dir, require_string(f"station_tls.{name}", section[name])))
        if not os.path.isfile(path):
            raise ConfigError(f"station_tls.{name}", f"no such file: {path}")
        paths[name] = path
    return StationTLS(**paths, check_client_id=security.check_client_id(section.get("check_client_id", "warn")))


def _status(value: Any) -> dict[str, Any]:
    """The status page: off without a C{status} section, which then needs C{listen}."""
    if value is None:
        return {}
    section = require_mapping("status", value, ("listen",))
    if "listen" not in section:
        raise ConfigError("status.listen", "is mandatory in a status section")
    return {"status_listen": require_string("status.listen", section["listen"])}


def _traffic_log(value: Any, base_dir: str) -> dict[str, Any]:
    """The traffic log: off without a C{traffic_log} section, which then needs an existing C{directory}."""
    if value is None:
        return {}
    section = require_mapping("traffic_log", value, ("directory", "max_pending"))
    if "directory" not in section:
        raise ConfigError("traffic_log.directory", "is mandatory in a traffic_log section")
    directory = os.path.abspath(os.path.join(base_dir, require_string("traffic_log.directory", section["directory"])))
    if not os.path.isdir(directory):
        raise ConfigError("traffic_log.directory", f"no such directory: {directory}")
    settings: dict[str, Any] = {"traffic_log_directory": directory}
    if "max_pending" in section:
        settings["traffic_log_max_pending"] = require_number("traffic_log.max_pending", section["max_pending"], 1, True)
    return settings


def _redact(value: Any) -> tuple[str, ...]:
    """The extra keys to mask where frames are shown: a list of key names (empty or absent: none)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError("redact", f"must be a list of payload key names, got {describe(value)}")
    for index, key in enumerate(value):
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"redact[{index}]", f"must be a non-empty key name, got {describe(key)}")
    return tuple(dict.fromkeys(value))


def _call_policy(key: str, value: Any) -> frozenset | None:
    """C{all} (None: every action), C{none} (empty), or a list of OCPP action names."""
    if value == "all":
        return None
    if value == "none":
        return frozenset()
    if isinstance(value, list) and all(isinstance(action, str) and action for action in value):
        return frozenset(value)
    raise ConfigError(key, f"must be all, none or a list of OCPP actions, got {describe(value)}")


def _reconnect(value: Any) -> ReconnectPolicy:
    section = require_mapping("reconnect", value, ("initial_delay", "factor", "max_delay", "max_attempts"))
    defaults = ReconnectPolicy()

    def setting(name: str, minimum: float, integer: bool = False):
        return require_number(f"reconnect.{name}", section.get(name, getattr(defaults, name)), minimum, integer)

    policy = ReconnectPolicy(
        initial_delay=setting("initial_delay", 0.0),
        factor=setting("factor", 1.0),
        max_delay=setting("max_delay", 0.0),
        max_attempts=setting("max_attempts", 1, True),
    )
    if policy.max_delay < policy.initial_delay:
        raise ConfigError("reconnect.max_delay", "must not be smaller than reconnect.initial_delay")
    return policy
