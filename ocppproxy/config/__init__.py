"""
The configuration: L{model} (the frozen settings types, L{model.ConfigError} and the
checks the parsers share), the section parsers (L{parse} for the top level,
L{notify_section}, L{security}, L{nodecompat} for the Node tool's file) and L{load}
(reading the file: C{load_config}).

May import: inside the package, only downwards (load -> nodecompat -> parse -> sections ->
model; model imports nothing of ours at run time). Outside it, only pure value types: the
core's L{ocppproxy.core.forwarded.Network} and L{ocppproxy.core.upstream_auth.UpstreamAuth},
and the notifier's event names and Apprise URL checks. This package re-exports only the
model: re-exporting the loader here would make every importer of the settings types (the
alert channels among them) load the parsers, which import those channels back.
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
