"""
The configuration's top level: a mapping (read by L{ocppproxy.config.load}, or translated
from the Node tool's file) turned into one frozen, validated L{Config}.

Every problem is reported as a L{ConfigError} whose text names the key and the reason,
so that start-up can stop with one clear line. The one exception is an alert channel
that is present but misconfigured: it is switched off and its problem recorded in
L{NotifyConfig.channel_problems}, and the daemon still starts. The notify section is
parsed in L{ocppproxy.config.notify_section}, the keys that secure the upstreams in
L{ocppproxy.config.security}. Which keys each section allows, and the check of each value,
come from the schema (L{ocppproxy.config.schema}); what is left here is how keys combine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from . import security
from .api_section import api_config, require_token
from .cluster import cluster_config
from .model import Config, ConfigError, OutboxConfig, ReconnectPolicy, StationTLS, require_mapping
from .notify_section import notify_config
from .routing_section import routing_config
from .schema import check, children

TOP_KEYS = children("")
"""The top level's keys (declared in L{ocppproxy.config.schema})."""


def config_from_mapping(raw: Any, base_dir: str = ".") -> Config:
    """Validate a parsed YAML document; relative paths are taken from C{base_dir}."""
    if raw is None:
        raw = {}
    top = require_mapping("", raw, TOP_KEYS)
    kwargs: dict[str, Any] = routing_config(top, base_dir)
    if "upstreams" not in kwargs:
        if "primary_url" not in top:
            raise ConfigError("primary_url", "is mandatory (or name the central systems under upstreams)")
        kwargs["primary_url"] = check("primary_url", top["primary_url"])
    if top.get("secondary_url") is not None:
        kwargs["secondary_url"] = check("secondary_url", top["secondary_url"])
    for key in ("listen", "log_level"):
        if key in top:
            kwargs[key] = check(key, top[key])
    if top.get("ca_file") is not None:
        path = os.path.join(base_dir, check("ca_file", top["ca_file"]))
        if not os.path.isfile(path):
            raise ConfigError("ca_file", f"no such file: {path}")
        kwargs["ca_file"] = path
    kwargs["reconnect"] = _reconnect(top.get("reconnect"))
    buffer = _section("buffer", top)
    if "max_messages" in buffer:
        kwargs["buffer_max_messages"] = check("buffer.max_messages", buffer["max_messages"])
    if top.get("client_names") is not None:
        # A missing names file is not fatal: the notifier warns and uses the raw ids.
        names_file = check("client_names", top["client_names"])
        kwargs["client_names"] = os.path.abspath(os.path.join(base_dir, names_file))
    kwargs["notify"] = notify_config(top.get("notify"), base_dir)
    for key in ("default_subprotocol", "handshake_timeout", "max_frame_size", "pending_call_timeout"):
        if key in top:
            kwargs[key] = check(key, top[key])
    keepalive = _section("keepalive", top)
    # Autobahn's timers run in 0.2 s buckets: shorter keepalive times are not reliable.
    if "interval" in keepalive:
        kwargs["keepalive_interval"] = check("keepalive.interval", keepalive["interval"])
        if 0 < kwargs["keepalive_interval"] < 1:
            raise ConfigError("keepalive.interval", "must be 0 (off) or at least 1 second")
    if "timeout" in keepalive:
        kwargs["keepalive_timeout"] = check("keepalive.timeout", keepalive["timeout"])
    if top.get("state_file") is not None:
        path = os.path.abspath(os.path.join(base_dir, check("state_file", top["state_file"])))
        if not os.path.isdir(os.path.dirname(path)):
            raise ConfigError("state_file", f"directory {os.path.dirname(path)} does not exist")
        kwargs["state_file"] = path
    kwargs.update(_status(top.get("status")))
    kwargs["api"] = api_config(top.get("api"))
    kwargs["status_require_token"] = require_token(top.get("status"), kwargs["api"])
    kwargs.update(_traffic_log(top.get("traffic_log"), base_dir))
    if top.get("station_tls") is not None:
        kwargs["station_tls"] = _station_tls(top["station_tls"], base_dir, kwargs.get("listen", Config.listen))
    limits = _section("limits", top)
    for name in limits:
        kwargs[name] = check(f"limits.{name}", limits[name])
    policies = _section("upstream_calls", top)
    kwargs["upstream_calls"] = {name: check(f"upstream_calls.{name}", value) for name, value in policies.items()}
    if "failover" in top:
        kwargs["failover"] = check("failover", top["failover"])
    kwargs.update(_upstream_security(top, base_dir, kwargs))
    kwargs["cluster"] = cluster_config(top.get("cluster"), kwargs.get("listen", Config.listen))
    kwargs["redact"] = check("redact", top.get("redact"))
    kwargs["outbox"] = _outbox(top.get("outbox"), base_dir, kwargs["cluster"] is not None)
    return Config(**kwargs)


def _section(key: str, parent: Mapping[str, Any]) -> Mapping[str, Any]:
    """The section C{key} of C{parent} (empty if absent) holding only the keys the schema declares in it."""
    return require_mapping(key, parent.get(key.rpartition(".")[2]), children(key))


def _upstream_security(top: Mapping[str, Any], base_dir: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Credentials, certificates and trusted proxies towards the upstreams: see L{ocppproxy.config.security}."""
    urls = {"primary": settings.get("primary_url"), "secondary": settings.get("secondary_url")}
    return {
        "upstream_auth": security.upstream_auth(top.get("upstream_auth")),
        "upstream_tls": security.upstream_tls(top.get("upstream_tls"), base_dir, urls),
        "trusted_proxies": security.trusted_proxies(top.get("trusted_proxies")),
    }


def _station_tls(value: Any, base_dir: str, listen: str) -> StationTLS:
    """The station_tls section: certificate and private_key mandatory, files relative to C{base_dir}."""
    section = require_mapping("station_tls", value, children("station_tls"))
    if listen.startswith("ssl:"):
        raise ConfigError("station_tls", "cannot be combined with an ssl: listen endpoint (use tcp: or systemd:)")
    paths = {}
    for name in ("certificate", "private_key", "client_ca_file"):
        if section.get(name) is None:
            if name != "client_ca_file":
                raise ConfigError(f"station_tls.{name}", "is mandatory in a station_tls section")
            continue
        path = os.path.abspath(os.path.join(base_dir, check(f"station_tls.{name}", section[name])))
        if not os.path.isfile(path):
            raise ConfigError(f"station_tls.{name}", f"no such file: {path}")
        paths[name] = path
    check_client_id = check("station_tls.check_client_id", section.get("check_client_id", StationTLS.check_client_id))
    return StationTLS(**paths, check_client_id=check_client_id)


def _status(value: Any) -> dict[str, Any]:
    """The status page: off without a C{status} section, which then needs C{listen}."""
    if value is None:
        return {}
    section = require_mapping("status", value, children("status"))
    if "listen" not in section:
        raise ConfigError("status.listen", "is mandatory in a status section")
    return {"status_listen": check("status.listen", section["listen"])}


def _traffic_log(value: Any, base_dir: str) -> dict[str, Any]:
    """The traffic log: off without a C{traffic_log} section, which then needs an existing C{directory}."""
    if value is None:
        return {}
    section = require_mapping("traffic_log", value, children("traffic_log"))
    if "directory" not in section:
        raise ConfigError("traffic_log.directory", "is mandatory in a traffic_log section")
    directory = os.path.abspath(os.path.join(base_dir, check("traffic_log.directory", section["directory"])))
    if not os.path.isdir(directory):
        raise ConfigError("traffic_log.directory", f"no such directory: {directory}")
    settings: dict[str, Any] = {"traffic_log_directory": directory}
    if "max_pending" in section:
        settings["traffic_log_max_pending"] = check("traffic_log.max_pending", section["max_pending"])
    return settings


def _outbox(value: Any, base_dir: str, cluster: bool = False) -> OutboxConfig | None:
    """
    The durable outbox: off without an C{outbox} section, which then needs an existing
    C{directory} (in C{cluster} mode too: the entries go there while Redis is away).
    """
    if value is None:
        return None
    section = require_mapping("outbox", value, children("outbox"))
    if section.get("directory") is None:
        if cluster:
            raise ConfigError("outbox.directory", "is mandatory in cluster mode too (entries go there while Redis is away)")
        raise ConfigError("outbox.directory", "is mandatory in an outbox section")
    directory = os.path.abspath(os.path.join(base_dir, check("outbox.directory", section["directory"])))
    if not os.path.isdir(directory):
        raise ConfigError("outbox.directory", f"no such directory: {directory}")
    settings: dict[str, Any] = {"directory": directory}
    for name in ("max_bytes", "max_age"):
        if name in section:
            settings[name] = check(f"outbox.{name}", section[name])
    return OutboxConfig(**settings)


def _reconnect(value: Any) -> ReconnectPolicy:
    section = require_mapping("reconnect", value, children("reconnect"))
    defaults = ReconnectPolicy()
    settings = {name: section.get(name, getattr(defaults, name)) for name in children("reconnect")}
    policy = ReconnectPolicy(**{name: check(f"reconnect.{name}", value) for name, value in settings.items()})
    if policy.max_delay < policy.initial_delay:
        raise ConfigError("reconnect.max_delay", "must not be smaller than reconnect.initial_delay")
    return policy
