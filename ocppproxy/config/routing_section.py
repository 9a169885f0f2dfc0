"""
The keys that say which central systems each station talks to: C{upstreams} (named
central systems), C{routes} or C{routes_file} (which stations go to which of them) and
C{migration_rate}, validated for L{ocppproxy.config.parse}.

Without C{upstreams} the legacy keys (C{primary_url}, C{secondary_url}, C{upstream_auth},
C{upstream_tls}, C{upstream_calls}, C{failover}) define the upstreams C{primary} and
C{secondary} and the one route C{*} (see L{ocppproxy.config.model.Config.named_upstreams});
a file that mixes both is refused. No error text quotes a value under C{auth}.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import yaml

from .model import ConfigError, RouteEntry, Upstream, describe, kind_of, refuse_unknown_keys
from .schema import BY_KEY, check, children
from .security import credentials, tls_files
from .values import upstream_name

LEGACY_KEYS = ("primary_url", "secondary_url", "upstream_auth", "upstream_tls", "upstream_calls", "failover")
"""The keys that define the upstreams of a file without C{upstreams}."""

_ROUTE_KEYS = children("routes")
_STATIONS, _PRIMARY, _MIRRORS, _FAILOVER = (BY_KEY[f"routes.{name}"] for name in ("stations", "primary", "mirrors", "failover"))
# PyYAML's C parser where it was built: a generated routes file may hold 50,000 routes.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def routing_config(top: Mapping[str, Any], base_dir: str) -> dict[str, Any]:
    """The L{Config} fields of C{upstreams}, C{routes}, C{routes_file} and C{migration_rate} in C{top}."""
    settings: dict[str, Any] = {}
    if "migration_rate" in top:
        settings["migration_rate"] = float(check("migration_rate", top["migration_rate"]))
    if top.get("upstreams") is None:
        for key in ("routes", "routes_file"):
            if top.get(key) is not None:
                raise ConfigError(key, "needs upstreams: a route names upstreams defined there")
        return settings
    mixed = [key for key in LEGACY_KEYS if key in top]
    if mixed:
        raise ConfigError(
            "upstreams",
            f"cannot be combined with {', '.join(mixed)}: those keys define the upstreams of a file without"
            " upstreams (name them under upstreams instead)",
        )
    upstreams = named_upstreams(top["upstreams"], base_dir)
    settings["upstreams"] = upstreams
    if top.get("routes_file") is not None:
        if top.get("routes") is not None:
            raise ConfigError("routes_file", "cannot be combined with routes: give the list in one place")
        path = os.path.abspath(os.path.join(base_dir, check("routes_file", top["routes_file"])))
        settings["routes_file"] = path
        settings["routes"] = route_entries("routes_file", read_routes_file(path), upstreams)
    elif top.get("routes") is not None:
        settings["routes"] = route_entries("routes", top["routes"], upstreams)
    else:
        raise ConfigError("routes", "is mandatory with upstreams (or routes_file): which stations go where")
    return settings


def named_upstreams(value: Any, base_dir: str) -> dict[str, Upstream]:
    """C{upstreams}: a mapping of names to their settings, C{url} mandatory in each."""
    if not isinstance(value, Mapping) or not value:
        raise ConfigError("upstreams", f"must be a mapping of names to central systems, got {kind_of(value)}")
    upstreams = {}
    for name, section in value.items():
        key = f"upstreams.{name}"
        upstream_name(key, name)
        if not isinstance(section, Mapping):
            raise ConfigError(key, f"must be a mapping with url, got {kind_of(section)}")
        refuse_unknown_keys(key, section, children(key))
        if section.get("url") is None:
            raise ConfigError(f"{key}.url", "is mandatory")
        url = check(f"{key}.url", section["url"])
        settings: dict[str, Any] = {}
        if section.get("auth") is not None:
            settings["auth"] = credentials(f"{key}.auth", section["auth"])
        if section.get("tls") is not None:
            settings["tls"] = tls_files(f"{key}.tls", section["tls"], base_dir, url, f"{key}.url")
        for part in ("calls", "receives", "station_id", "outbox"):
            if section.get(part) is not None:
                settings[part] = check(f"{key}.{part}", section[part])
        upstreams[name] = Upstream(url, **settings)
    return upstreams


def read_routes_file(path: str) -> Any:
    """
    The routes list of the file at C{path} (a list, or a mapping with C{routes}): YAML,
    or JSON for a C{.json} file; a L{ConfigError} if unreadable.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            if path.lower().endswith(".json"):
                # A generated table is read about a hundred times faster as JSON.
                document = json.load(stream)
            else:
                document = yaml.load(stream, Loader=_LOADER)  # noqa: S506 (a safe loader)
    except json.JSONDecodeError as error:
        raise ConfigError("routes_file", f"{path} is not valid JSON at line {error.lineno}") from None
    except OSError as error:
        raise ConfigError("routes_file", f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("routes_file", f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("routes_file", f"{path} is not valid YAML{where}") from None
    if isinstance(document, Mapping) and list(document) == ["routes"]:
        document = document["routes"]
    return document


def route_entries(key: str, value: Any, upstreams: Mapping[str, Upstream]) -> tuple[RouteEntry, ...]:
    """The routes list at C{key} (C{routes} or C{routes_file}), each naming only upstreams of C{upstreams}."""
    check("routes", value) if key == "routes" else _routes_list(value)
    known = ", ".join(upstreams)

    def upstream(where: str, name: Any) -> str:
        if name not in upstreams:
            raise ConfigError(where, f"names no upstream: {describe(name)} (upstreams: {known})")
        return name

    entries = []
    for index, entry in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(where, f"must be a mapping with stations and primary, got {kind_of(entry)}")
        refuse_unknown_keys(where, entry, _ROUTE_KEYS)
        for name in ("stations", "primary"):
            if entry.get(name) is None:
                raise ConfigError(f"{where}.{name}", "is mandatory")
        stations = _STATIONS.check(f"{where}.stations", entry["stations"])
        primary = upstream(f"{where}.primary", _PRIMARY.check(f"{where}.primary", entry["primary"]))
        mirrors: tuple[str, ...] = ()
        if entry.get("mirrors") is not None:
            mirrors = _MIRRORS.check(f"{where}.mirrors", entry["mirrors"])
            for number, name in enumerate(mirrors):
                upstream(f"{where}.mirrors[{number}]", name)
            if primary in mirrors:
                raise ConfigError(f"{where}.mirrors", f"holds {primary}, the route's primary")
        failover = None
        if entry.get("failover") is not None:
            failover = _FAILOVER.check(f"{where}.failover", entry["failover"])
            if failover not in mirrors:
                raise ConfigError(f"{where}.failover", f"must be one of the route's mirrors, got {describe(failover)}")
        entries.append(RouteEntry(stations, primary, mirrors, failover))
    return tuple(entries)


def _routes_list(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise ConfigError("routes_file", f"must hold a non-empty list of routes, got {kind_of(value)}")
