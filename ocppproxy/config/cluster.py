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

from .model import DEFAULT_OWNERSHIP_TTL, ClusterConfig, ConfigError, kind_of, refuse_unknown_keys
from .schema import check, children

CLUSTER_KEYS = children("cluster")


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
    redis_url = check("cluster.redis_url", value["redis_url"])
    instance = value.get("instance")
    if instance is None:
        port = listen_port(listen)
        instance = socket.gethostname() if port is None else f"{socket.gethostname()}:{port}"
    else:
        instance = check("cluster.instance", instance)
    ttl = check("cluster.ownership_ttl", value.get("ownership_ttl", DEFAULT_OWNERSHIP_TTL))
    return ClusterConfig(redis_url=redis_url, instance=instance, ownership_ttl=ttl)


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
