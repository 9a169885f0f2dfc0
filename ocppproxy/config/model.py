"""
The configuration's types and the checks every section parser shares. Depends on nothing
of ours at run time (the types of two fields come from L{ocppproxy.core}, for type
checkers only), so any module may import it: the parsers, the channels that are given
their settings, the edges that read a setting.

Every problem is a L{ConfigError} whose text names the key and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.forwarded import Network
    from ..core.upstream_auth import UpstreamAuth

LOG_LEVELS = ("error", "warn", "info", "debug")


class ConfigError(Exception):
    """A configuration problem; C{str()} is one line naming the key and the reason."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


# How the e-mail channel talks to its server (C{notify.email.smtp.tls}).
TLS_MODES = ("starttls", "ssl", "none")


@dataclass(frozen=True)
class ReconnectPolicy:
    """How an upstream link retries: exponential backoff, then giving up."""

    initial_delay: float = 5.0
    factor: float = 2.0
    max_delay: float = 60.0
    max_attempts: int = 10


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the SMTP server; C{tls} is starttls, ssl (implicit TLS) or none."""

    host: str
    port: int = 587
    tls: str = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float | None = None
    """The whole delivery attempt's deadline, if the file sets one; None: C{notify.delivery_timeout}."""
    ca_file: str | None = None


@dataclass(frozen=True)
class EmailSettings:
    """The e-mail channel: sender, recipients and server."""

    sender: str
    recipients: tuple[str, ...]
    smtp: SmtpSettings


@dataclass(frozen=True)
class PushoverSettings:
    """The Pushover channel; the token and user key are secrets (never logged, not in repr)."""

    user_key: str = field(repr=False)
    app_token: str = field(repr=False)
    api_url: str = "https://api.pushover.net/1/messages.json"
    priority: int = 0


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook channel: a JSON POST to C{url}; header values (often tokens) are never logged."""

    url: str = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    timeout: float | None = None
    """The whole delivery attempt's deadline, if the file sets one; None: C{notify.delivery_timeout}."""


@dataclass(frozen=True)
class AppriseSettings:
    """The Apprise channel: one delivery per URL (URLs carry tokens: never logged whole)."""

    urls: tuple[str, ...] = field(repr=False)
    timeout: float | None = None
    """One notification's deadline, if the file sets one; None: C{notify.delivery_timeout}."""


@dataclass(frozen=True)
class NotifyConfig:
    """
    The notifier's settings. A channel that is present but misconfigured is None here
    and listed in C{channel_problems} as (channel, reason) for one start-up warning.
    """

    events: frozenset[str] = frozenset()
    log: bool = False
    email: EmailSettings | None = None
    pushover: PushoverSettings | None = None
    webhook: WebhookSettings | None = None
    apprise: AppriseSettings | None = None
    channel_problems: tuple[tuple[str, str], ...] = ()
    flap_window: float = 30.0
    upstream_down_after: float = 120.0
    queue_limit: int = 100
    max_attempts: int = 5
    retry_delay: float = 10.0
    flush_timeout: float = 5.0
    delivery_timeout: float = 30.0
    summary_window: float = 10.0
    burst_limit: int = 5

    def attempt_deadline(self, channel: str) -> float:
        """
        Seconds one delivery attempt on C{channel} (C{email}, C{pushover}, C{webhook},
        C{apprise[0]}, ...) may take, from connecting to the last byte of the answer:
        the channel's own C{timeout} where the file sets one, else C{delivery_timeout}.
        """
        own = None
        if channel == "email" and self.email is not None:
            own = self.email.smtp.timeout
        elif channel == "webhook" and self.webhook is not None:
            own = self.webhook.timeout
        elif channel.startswith("apprise[") and self.apprise is not None:
            own = self.apprise.timeout
        return self.delivery_timeout if own is None else own


# station_tls.check_client_id: what a client certificate for another station id gets.
CLIENT_ID_CHECKS = ("refuse", "warn", "off")


@dataclass(frozen=True)
class StationTLS:
    """
    TLS towards the stations on a tcp: or systemd: listen endpoint (absolute paths):
    the proxy's certificate (and chain) and key, the CA(s) whose client certificates
    stations must present, if any, and what to do with a client certificate issued for
    another station id (one of L{CLIENT_ID_CHECKS}).
    """

    certificate: str
    private_key: str
    client_ca_file: str | None = None
    check_client_id: str = "warn"
    """A client certificate that names another station: C{refuse} (HTTP 403), C{warn} (accepted), C{off}."""


DEFAULT_OWNERSHIP_TTL = 30


@dataclass(frozen=True)
class ClusterConfig:
    """Cluster mode: Redis's URL (never logged whole), this instance's unique name, the claim lifetime in seconds."""

    redis_url: str = field(repr=False)
    instance: str
    ownership_ttl: int = DEFAULT_OWNERSHIP_TTL


API_SCOPES = ("read", "operate")


@dataclass(frozen=True)
class ApiToken:
    """One token of C{api.tokens}: its name (in the audit log), the SHA-256 of the token, its scope, its actions."""

    name: str
    sha256: str = field(repr=False)
    scope: str = "read"
    actions: frozenset | None = None
    """The actions an C{operate} token may send (None: all)."""


@dataclass(frozen=True)
class ApiConfig:
    """The control-plane API: where it listens (None: only the tokens, for the status page), its tokens, history."""

    listen: str | None = None
    tokens: tuple[ApiToken, ...] = ()
    history: int = 200


@dataclass(frozen=True)
class OutboxConfig:
    """
    The durable outbox of the mirrors: the directory of its embedded store (SQLite), the
    bytes it may hold in all (beyond, the oldest entries go first) and the seconds an entry
    may wait before it is dropped.
    """

    directory: str
    max_bytes: int = 1024 * 1024 * 1024
    max_age: float = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Config:
    """Everything the daemon needs to start, validated."""

    primary_url: str | None = None
    secondary_url: str | None = None
    listen: str = "tcp:port=9000:interface=0.0.0.0:backlog=1024"
    log_level: str = "info"
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    buffer_max_messages: int = 1000
    ca_file: str | None = None
    client_names: str | None = None
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    failover: bool = False
    default_subprotocol: str = "ocpp1.6"
    handshake_timeout: float = 10.0
    max_frame_size: int = 1024 * 1024
    keepalive_interval: float = 30.0
    keepalive_timeout: float = 10.0
    pending_call_timeout: float = 40.0
    upstream_calls: Mapping[str, frozenset | None] = field(default_factory=dict)
    state_file: str | None = None
    status_listen: str | None = None
    status_require_token: bool = False
    api: ApiConfig | None = None
    traffic_log_directory: str | None = None
    traffic_log_max_pending: int = 10000
    upstream_auth: Mapping[str, UpstreamAuth] = field(default_factory=dict)
    upstream_tls: Mapping[str, UpstreamTLS] = field(default_factory=dict)
    trusted_proxies: tuple[Network, ...] = ()
    max_stations: int = 10000
    max_handshakes: int = 1000
    max_handshakes_per_address: int = 20
    max_write_buffer: int = 1024 * 1024
    stall_timeout: float = 60.0
    max_frames_per_second: float = 50
    frame_burst: int = 100
    max_connects_per_minute: int = 20
    station_tls: StationTLS | None = None
    cluster: ClusterConfig | None = None
    redact: tuple[str, ...] = ()
    """Payload keys whose values are masked wherever a frame is shown, beyond the credentials always masked."""
    upstreams: Mapping[str, Upstream] | None = None
    """The named central systems of C{upstreams:}; None: the legacy keys define them (see L{named_upstreams})."""
    routes: tuple[RouteEntry, ...] | None = None
    """The routes of C{routes:} or C{routes_file:}, in order; None with the legacy keys (see L{route_entries})."""
    routes_file: str | None = None
    migration_rate: float = 50.0
    outbox: OutboxConfig | None = None
    """The durable outbox of the mirrors; None: memory queues only (C{buffer.max_messages})."""

    @cached_property
    def named_upstreams(self) -> dict[str, Upstream]:
        """
        Every upstream by name: those of C{upstreams:}, or the legacy keys' C{primary}
        (and C{secondary}) with their C{upstream_auth}, C{upstream_tls} and C{upstream_calls}.
        """
        if self.upstreams is not None:
            return dict(self.upstreams)
        urls = {"primary": self.primary_url}
        if self.secondary_url:
            urls["secondary"] = self.secondary_url
        return {
            name: Upstream(
                url,
                auth=self.upstream_auth.get(name),
                tls=self.upstream_tls.get(name, UpstreamTLS()),
                calls=self.upstream_calls.get(name),
            )
            for name, url in urls.items()
            if url
        }

    @cached_property
    def route_entries(self) -> tuple[RouteEntry, ...]:
        """The routes in order: those configured, or the legacy keys' one route C{*} (C{secondary} a mirror)."""
        if self.routes is not None:
            return self.routes
        mirrors = ("secondary",) if self.secondary_url else ()
        failover = "secondary" if self.failover and mirrors else None
        return (RouteEntry(("*",), "primary", mirrors, failover),)

    def upstream_urls(self) -> dict[str, str]:
        """The configured upstreams' URLs by name (with the legacy keys: primary first)."""
        return {name: upstream.url for name, upstream in self.named_upstreams.items()}


@dataclass(frozen=True)
class UpstreamTLS:
    """One wss:// upstream's TLS settings: its CA (instead of the top-level one) and the proxy's client certificate."""

    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


@dataclass(frozen=True)
class Upstream:
    """
    One named central system: its URL (the station id, rewritten by C{station_id}, is
    appended), the credentials its handshake carries (None: the station's own, C{pass}),
    its TLS files, the CALLs it may send (None: all) and the station CALLs it gets
    (C{receives}, None: all).
    """

    url: str
    auth: UpstreamAuth | None = None
    tls: UpstreamTLS = field(default_factory=lambda: UpstreamTLS())
    calls: frozenset | None = None
    receives: frozenset | None = None
    station_id: str = "{station_id}"
    outbox: bool = True
    """Whether its frames go through the durable outbox when it is a mirror (with an C{outbox} section)."""

    @property
    def connection(self) -> tuple:
        """What a link to it is opened with: a change re-links the stations using it."""
        return (self.url, self.auth, self.tls, self.station_id)

    def address_for(self, station_id: str) -> str:
        """The URL a link for C{station_id} connects to: C{url}, then the id as C{station_id} rewrites it."""
        return self.url + self.station_id.replace("{station_id}", station_id)


@dataclass(frozen=True)
class RouteEntry:
    """One route: the station ids and patterns it holds, its primary, its mirrors, the optional failover mirror."""

    stations: tuple[str, ...]
    primary: str
    mirrors: tuple[str, ...] = ()
    failover: str | None = None


def describe(value: Any) -> str:
    """C{value} as an error message quotes it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def require_string(key: str, value: Any) -> str:
    """C{value} if it is a non-empty string; otherwise a L{ConfigError} naming C{key}."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, f"must be a non-empty string, got {describe(value)}")
    return value


def require_number(key: str, value: Any, minimum: float, integer: bool = False) -> Any:
    """C{value} if it is a number (a whole one if C{integer}) of at least C{minimum}; otherwise a L{ConfigError}."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(key, f"must be {kind}, got {describe(value)}")
    if value < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {value}")
    return value


def require_mapping(key: str, value: Any, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    """The section at C{key}: empty if absent; a L{ConfigError} if not a mapping or if a key is not in C{allowed}."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping, got {describe(value)}")
    refuse_unknown_keys(key, value, allowed)
    return value


def refuse_unknown_keys(key: str, section: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """A L{ConfigError} naming the first key of C{section} (the one at C{key}; "" is the top) not in C{allowed}."""
    for name in section:
        if name not in allowed:
            prefix = f"{key}." if key else ""
            raise ConfigError(f"{prefix}{name}", f"unknown key (expected one of: {', '.join(allowed)})")


def kind_of(value: Any) -> str:
    """What C{value} is, in words ("a string", "a list"), for errors that must not quote a value (a secret)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"
