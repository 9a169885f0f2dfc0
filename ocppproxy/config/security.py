"""
The configuration keys that secure the way to the central systems: C{upstream_auth},
C{upstream_tls} and C{trusted_proxies}, and the station certificates' identity check
(C{station_tls.check_client_id}), validated for L{ocppproxy.config.parse}.

No error text quotes a value under C{upstream_auth}: any of them may be a password.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from ..core.forwarded import Network
from ..core.upstream_auth import BASIC, DROP, PASS, UpstreamAuth
from .model import CLIENT_ID_CHECKS, ConfigError, UpstreamTLS, describe, kind_of, refuse_unknown_keys

UPSTREAM_NAMES = ("primary", "secondary")
_CREDENTIAL_KEYS = ("username", "password")
_TLS_KEYS = ("ca_file", "client_cert", "client_key")


def _per_upstream(key: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping with primary and/or secondary, got {kind_of(value)}")
    refuse_unknown_keys(key, value, UPSTREAM_NAMES)
    return value


def upstream_auth(value: Any) -> dict[str, UpstreamAuth]:
    """C{upstream_auth}: per upstream, C{pass}, C{drop} or C{{username, password}}."""
    return {
        name: _auth(f"upstream_auth.{name}", setting) for name, setting in _per_upstream("upstream_auth", value).items()
    }


def _auth(key: str, value: Any) -> UpstreamAuth:
    if value in (PASS, DROP):
        return UpstreamAuth(mode=value)
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be pass, drop or a mapping with username and password, got {kind_of(value)}")
    refuse_unknown_keys(key, value, _CREDENTIAL_KEYS)
    credentials = {}
    for name in _CREDENTIAL_KEYS:
        setting = value.get(name)
        if setting is None:
            raise ConfigError(f"{key}.{name}", "is mandatory")
        if not isinstance(setting, str) or not setting:
            raise ConfigError(f"{key}.{name}", f"must be a non-empty string, got {kind_of(setting)}")
        if any(ord(character) < 32 or ord(character) == 127 for character in setting):
            raise ConfigError(f"{key}.{name}", "must not contain control characters")
        credentials[name] = setting
    if ":" in credentials["username"]:
        raise ConfigError(f"{key}.username", "must not contain ':' (HTTP Basic separates user and password with it)")
    return UpstreamAuth(mode=BASIC, **credentials)


def upstream_tls(value: Any, base_dir: str, urls: Mapping[str, str | None]) -> dict[str, UpstreamTLS]:
    """
    C{upstream_tls}: per upstream, C{ca_file}, C{client_cert} and C{client_key}, paths
    relative to C{base_dir} that must exist. Only for a wss:// upstream (C{urls} by name).
    """
    settings = {}
    for name, section in _per_upstream("upstream_tls", value).items():
        key = f"upstream_tls.{name}"
        if not isinstance(section, Mapping):
            raise ConfigError(key, f"must be a mapping, got {kind_of(section)}")
        refuse_unknown_keys(key, section, _TLS_KEYS)
        url = urls.get(name)
        if not url or not url.startswith("wss:"):
            raise ConfigError(key, f"is set, but {name}_url is not a wss:// URL")
        paths = {
            part: _existing_file(f"{key}.{part}", section[part], base_dir)
            for part in _TLS_KEYS
            if section.get(part) is not None
        }
        if ("client_cert" in paths) != ("client_key" in paths):
            missing = "client_key" if "client_cert" in paths else "client_cert"
            present = "client_cert" if missing == "client_key" else "client_key"
            raise ConfigError(f"{key}.{missing}", f"is mandatory when {key}.{present} is set")
        settings[name] = UpstreamTLS(**paths)
    return settings


def _existing_file(key: str, value: Any, base_dir: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a path, got {kind_of(value)}")
    path = os.path.abspath(os.path.join(base_dir, value))
    if not os.path.isfile(path):
        raise ConfigError(key, f"no such file: {path}")
    return path


def trusted_proxies(value: Any) -> tuple[Network, ...]:
    """C{trusted_proxies}: a list of IP addresses and CIDR networks."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError("trusted_proxies", f"must be a list of IP addresses or networks, got {kind_of(value)}")
    networks = []
    for index, entry in enumerate(value):
        key = f"trusted_proxies[{index}]"
        if not isinstance(entry, str):
            raise ConfigError(key, f"must be an IP address or network such as 10.0.0.0/8, got {kind_of(entry)}")
        try:
            networks.append(ipaddress.ip_network(entry.strip()))
        except ValueError as error:
            raise ConfigError(key, str(error)) from None
    return tuple(networks)


def check_client_id(value: Any) -> str:
    """C{station_tls.check_client_id}: refuse, warn or off (YAML reads a bare C{off} as false: that is off too)."""
    if value is False:
        return "off"
    if not isinstance(value, str) or value not in CLIENT_ID_CHECKS:
        raise ConfigError(
            "station_tls.check_client_id", f"must be one of {', '.join(CLIENT_ID_CHECKS)}, got {describe(value)}"
        )
    return value
