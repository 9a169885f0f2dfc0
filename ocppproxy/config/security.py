"""
The configuration keys that secure the way to the central systems: C{upstream_auth},
C{upstream_tls} and C{trusted_proxies}, validated for L{ocppproxy.config.parse}.

No error text quotes a value under C{upstream_auth}: any of them may be a password.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..core.forwarded import Network
from ..core.upstream_auth import BASIC, UpstreamAuth
from .model import ConfigError, UpstreamTLS, kind_of, refuse_unknown_keys
from .schema import check, children

UPSTREAM_NAMES = children("upstream_auth")


def _per_upstream(key: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping with primary and/or secondary, got {kind_of(value)}")
    refuse_unknown_keys(key, value, UPSTREAM_NAMES)
    return value


def upstream_auth(value: Any) -> dict[str, UpstreamAuth]:
    """C{upstream_auth}: per upstream, C{pass}, C{drop} or C{{username, password}}."""
    return {name: _auth(f"upstream_auth.{name}", setting) for name, setting in _per_upstream("upstream_auth", value).items()}


def credentials(key: str, value: Any) -> UpstreamAuth:
    """One upstream's credentials at C{key}: C{pass}, C{drop} or C{{username, password}}."""
    return _auth(key, value)


def _auth(key: str, value: Any) -> UpstreamAuth:
    mode = check(key, value)
    if isinstance(mode, UpstreamAuth):
        return mode
    refuse_unknown_keys(key, mode, children(key))
    credentials = {}
    for name in children(key):
        if mode.get(name) is None:
            raise ConfigError(f"{key}.{name}", "is mandatory")
        credentials[name] = check(f"{key}.{name}", mode[name])
    if ":" in credentials["username"]:
        raise ConfigError(f"{key}.username", "must not contain ':' (HTTP Basic separates user and password with it)")
    return UpstreamAuth(mode=BASIC, **credentials)


def upstream_tls(value: Any, base_dir: str, urls: Mapping[str, str | None]) -> dict[str, UpstreamTLS]:
    """
    C{upstream_tls}: per upstream, C{ca_file}, C{client_cert} and C{client_key}, paths
    relative to C{base_dir} that must exist. Only for a wss:// upstream (C{urls} by name).
    """
    return {
        name: tls_files(f"upstream_tls.{name}", section, base_dir, urls.get(name), f"{name}_url")
        for name, section in _per_upstream("upstream_tls", value).items()
    }


def tls_files(key: str, section: Any, base_dir: str, url: str | None, url_key: str) -> UpstreamTLS:
    """
    One upstream's TLS section at C{key}: C{ca_file}, C{client_cert} and C{client_key},
    paths relative to C{base_dir} that must exist; only for a wss:// C{url} (named C{url_key}).
    """
    if not isinstance(section, Mapping):
        raise ConfigError(key, f"must be a mapping, got {kind_of(section)}")
    refuse_unknown_keys(key, section, children(key))
    if not url or not url.startswith("wss:"):
        raise ConfigError(key, f"is set, but {url_key} is not a wss:// URL")
    paths = {
        part: _existing_file(f"{key}.{part}", section[part], base_dir)
        for part in children(key)
        if section.get(part) is not None
    }
    if ("client_cert" in paths) != ("client_key" in paths):
        missing = "client_key" if "client_cert" in paths else "client_cert"
        present = "client_cert" if missing == "client_key" else "client_key"
        raise ConfigError(f"{key}.{missing}", f"is mandatory when {key}.{present} is set")
    return UpstreamTLS(**paths)


def _existing_file(key: str, value: Any, base_dir: str) -> str:
    path = os.path.abspath(os.path.join(base_dir, check(key, value)))
    if not os.path.isfile(path):
        raise ConfigError(key, f"no such file: {path}")
    return path


def trusted_proxies(value: Any) -> tuple[Network, ...]:
    """C{trusted_proxies}: a list of IP addresses and CIDR networks."""
    return check("trusted_proxies", value)
