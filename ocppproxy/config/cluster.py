"""
The optional C{cluster} section, validated into a L{ClusterConfig}: where Redis is
(C{redis_url}), this instance's name (C{instance}) and how long a station claim lives
without a refresh (C{ownership_ttl}).

No error text quotes C{redis_url}: it may hold a password.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .model import DEFAULT_OWNERSHIP_TTL, ClusterConfig, ConfigError, kind_of, refuse_unknown_keys

CLUSTER_KEYS = ("redis_url", "instance", "ownership_ttl")
REDIS_SCHEMES = ("redis", "rediss", "unix")


def cluster_config(value: Any, listen: str) -> ClusterConfig | None:
    """
    C{cluster}: None without the section. C{redis_url} is mandatory; C{instance}
    defaults to C{<hostname>:<port>}, the port taken from C{listen} (the host name alone
    when C{listen} names none, as with C{systemd:}).
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError("cluster", f"must be a mapping, got {kind_of(value)}")
    refuse_unknown_keys("cluster", value, CLUSTER_KEYS)
    if value.get("redis_url") is None:
        raise ConfigError("cluster.redis_url", "is mandatory in a cluster section")
    redis_url = _redis_url(value["redis_url"])
    instance = value.get("instance")
    if instance is None:
        port = listen_port(listen)
        instance = socket.gethostname() if port is None else f"{socket.gethostname()}:{port}"
    elif not isinstance(instance, str) or not instance.strip():
        raise ConfigError("cluster.instance", f"must be a non-empty string, got {kind_of(instance)}")
    elif any(ord(character) < 33 or ord(character) == 127 for character in instance):
        raise ConfigError("cluster.instance", "must not contain spaces or control characters")
    ttl = value.get("ownership_ttl", DEFAULT_OWNERSHIP_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise ConfigError("cluster.ownership_ttl", f"must be a whole number of seconds, got {kind_of(ttl)}")
    if ttl < 3:
        # Claims are refreshed every third of it, at most once a second.
        raise ConfigError("cluster.ownership_ttl", f"must be at least 3, got {ttl}")
    return ClusterConfig(redis_url=redis_url, instance=instance, ownership_ttl=ttl)


def _redis_url(value: Any) -> str:
    key = "cluster.redis_url"
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


def listen_port(listen: str) -> int | None:
    """The TCP port a C{tcp:}, C{tcp6:} or C{ssl:} endpoint string names, or None."""
    fields = listen.split(":")
    if fields[0] not in ("tcp", "tcp6", "ssl"):
        return None
    for item in fields[1:]:
        name, equals, setting = item.partition("=")
        if equals and name == "port" and setting.isdigit():
            return int(setting)
        if not equals and item.isdigit():
            return int(item)
    return None
