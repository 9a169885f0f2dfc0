"""
The optional C{api} section (the control-plane API and its tokens) and
C{status.require_token}, validated for L{ocppproxy.config.parse}. No error text quotes
a token's digest.
"""

from __future__ import annotations

from typing import Any

from .model import ApiConfig, ApiToken, ConfigError, require_mapping
from .schema import check, children

_TOKEN_KEYS = children("api.tokens")


def api_config(value: Any) -> ApiConfig | None:
    """C{api}: None without the section; each token needs C{name} and C{sha256}, names unique."""
    if value is None:
        return None
    section = require_mapping("api", value, children("api"))
    listen = check("api.listen", section["listen"]) if section.get("listen") is not None else None
    tokens = tuple(_token(entry) for entry in check("api.tokens", section.get("tokens", [])))
    names = [token.name for token in tokens]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("api.tokens.name", f"{name!r} names two tokens")
    history = check("api.history", section.get("history", ApiConfig.history))
    return ApiConfig(listen, tokens, history)


def _token(entry: Any) -> ApiToken:
    section = require_mapping("api.tokens", entry, _TOKEN_KEYS)
    for name in ("name", "sha256"):
        if name not in section:
            raise ConfigError(f"api.tokens.{name}", "is mandatory in each token")
    actions = section.get("actions", "all")
    return ApiToken(
        check("api.tokens.name", section["name"]),
        check("api.tokens.sha256", section["sha256"]),
        check("api.tokens.scope", section.get("scope", ApiToken.scope)),
        check("api.tokens.actions", actions),
    )


def require_token(status: Any, api: ApiConfig | None) -> bool:
    """C{status.require_token}: true needs at least one read or operate token in C{api.tokens}."""
    if not isinstance(status, dict) or "require_token" not in status:
        return False
    required = check("status.require_token", status["require_token"])
    if required and (api is None or not api.tokens):
        raise ConfigError("status.require_token", "needs at least one token under api.tokens")
    return required
