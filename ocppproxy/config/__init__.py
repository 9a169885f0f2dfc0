"""
The configuration: L{model} (the frozen settings types, L{model.ConfigError} and the
checks the parsers share), L{schema} (every key declared once: its check, doc, default
and reload rule, from L{checks}, L{values}, L{events} and L{apprise_urls}), the section
parsers (L{parse} for the top level, L{notify_section}, L{security}, L{cluster},
L{nodecompat} for the Node tool's file), L{load} (reading the file: C{load_config}),
L{reference} (the reference page, from the schema) and L{convert} (the Node tool's file
as YAML).

May import: inside the package, only downwards (load -> nodecompat -> parse -> sections ->
schema -> checks and values -> model; model imports nothing of ours at run time). Outside
it, only the core's pure value types (L{ocppproxy.core.forwarded.Network},
L{ocppproxy.core.upstream_auth.UpstreamAuth}): nothing above (tests/unit/test_layers.py). The
notifier takes its event keys and Apprise URL checks from here. This package re-exports
only the model, so that importing the settings types loads no parser.
"""

from .model import (
    AppriseSettings,
    Config,
    ConfigError,
    EmailSettings,
    NotifyConfig,
    PushoverSettings,
    ReconnectPolicy,
    SmtpSettings,
    StationTLS,
    UpstreamTLS,
    WebhookSettings,
)

__all__ = [
    "AppriseSettings",
    "Config",
    "ConfigError",
    "EmailSettings",
    "NotifyConfig",
    "PushoverSettings",
    "ReconnectPolicy",
    "SmtpSettings",
    "StationTLS",
    "UpstreamTLS",
    "WebhookSettings",
]
