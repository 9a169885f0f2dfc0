"""
Every configuration key, declared once (a L{Setting}): its dotted name, its check (its
type, its validation and the words the reference uses for them), a one-line doc, whether
a reload (SIGHUP) applies it, and the model field it fills, whose default is the key's.

From here: the keys each section allows, in the order its unknown-key error lists them,
and the check of each value (the parsers, L{ocppproxy.config.parse} and the section
modules); which settings a reload applies and how a model field is named in the file
(L{ocppproxy.daemon.reload}); the reference page (L{ocppproxy.config.reference}); and the
keys C{etc/ocppproxy.yaml} must show (a test). Cross-key rules (a section's mandatory
keys, C{max_delay} not below C{initial_delay}, files resolved against the file's
directory) stay in the section's parser, and its key's doc says them.

A name in angle brackets stands for several keys: C{<upstream>} is C{primary} or
C{secondary}, C{<event>} one of L{EVENT_KEYS}, C{<header>} any HTTP header name, C{<name>}
an upstream's name under C{upstreams}. The keys under C{routes} are those of each entry
of its list.
"""

from __future__ import annotations

from typing import Any

from . import values
from .checks import Flag, Number, OneOf, Rule, Section, Text
from .events import EVENT_KEYS
from .model import (
    API_SCOPES,
    CLIENT_ID_CHECKS,
    ApiConfig,
    ApiToken,
    LOG_LEVELS,
    ClusterConfig,
    Config,
    ReconnectPolicy,
    RouteEntry,
    StationTLS,
    Upstream,
    UpstreamTLS,
)
from .schema_notify import NOTIFY
from .schema_outbox import OUTBOX
from .setting import LIVE, LIVE_WHILE_PRESENT, MANDATORY, RESTART, Setting, at

__all__ = ["BY_KEY", "LIVE", "LIVE_WHILE_PRESENT", "RESTART", "SCHEMA", "Setting", "check", "children", "setting_of"]

PLACEHOLDERS: dict[str, tuple[str, ...] | None] = {
    "<upstream>": ("primary", "secondary"),
    "<event>": EVENT_KEYS,
    "<header>": None,
    "<name>": None,
}
"""What a name in angle brackets stands for (None: any name)."""

_PATH = Text(text="path")
_TLS_PATH = Rule("path", values.path_text)
_UPSTREAM_URL = Rule("``ws://`` or ``wss://`` URL", values.websocket_url)
_ENDPOINT = Text(text="Twisted server endpoint string")
_CREDENTIALS = Rule("``pass``, ``drop`` or ``{username, password}``", values.upstream_mode)
_CREDENTIAL = Rule("string", values.credential)
_CALLS = Rule("``all``, ``none`` or a list of actions", values.call_policy)
_CLIENT_ID_CHECK = Rule(", ".join(f"``{mode}``" for mode in CLIENT_ID_CHECKS), values.check_client_id)

_TOP = (
    Setting("listen", Text(text="Twisted server endpoint string"), field=at(Config, "listen"),
        doc="Where stations connect: ``tcp:``, ``ssl:`` (TLS) or ``systemd:`` (socket activation).",
    ),
    Setting("primary_url", _UPSTREAM_URL, field=at(Config, "primary_url"),
        shown="mandatory without ``upstreams``",
        doc="The primary central system (upstream ``primary``); the station id is appended (no query, fragment or "
        "``user:password@``).",
    ),
    Setting("secondary_url", _UPSTREAM_URL, field=at(Config, "secondary_url"),
        doc="An optional second central system (upstream ``secondary``, a mirror): it gets everything the stations "
        "send; its answers to their CALLs are not relayed.",
    ),
    Setting("log_level", OneOf(LOG_LEVELS), reload=LIVE, field=at(Config, "log_level"),
        doc="Level of the log; ``debug`` logs every relayed frame (credentials masked).",
    ),
    Setting("reconnect", Section(), field=at(Config, "reconnect"),
        doc="How an upstream link retries: exponential backoff, then giving up.",
    ),
    Setting("reconnect.initial_delay", Number(0.0), field=at(ReconnectPolicy, "initial_delay"),
        doc="Seconds before the first retry.",
    ),
    Setting("reconnect.factor", Number(1.0), field=at(ReconnectPolicy, "factor"),
        doc="Growth of the delay from one retry to the next.",
    ),
    Setting("reconnect.max_delay", Number(0.0), field=at(ReconnectPolicy, "max_delay"),
        doc="Longest delay between retries, in seconds; not below ``initial_delay``.",
    ),
    Setting("reconnect.max_attempts", Number(1, True), field=at(ReconnectPolicy, "max_attempts"),
        doc="Failed attempts in a row before an upstream is given up for the station's connection.",
    ),
    Setting("buffer", Section(),
        doc="Frames kept while an upstream (re)connects.",
    ),
    Setting("buffer.max_messages", Number(1, True), field=at(Config, "buffer_max_messages"),
        doc="Frames queued per station and upstream while that upstream is not connected; beyond, the oldest are "
        "dropped.",
    ),
    Setting("ca_file", _PATH, reload=LIVE, field=at(Config, "ca_file"),
        doc="PEM file of the CA(s) signing ``wss://`` upstreams' certificates (default: the system's), relative "
        "to the file.",
    ),
    Setting("client_names", _PATH, reload=LIVE, field=at(Config, "client_names"),
        doc="YAML or JSON mapping ``stationId: \"Human name\"`` for the alerts, relative to the file; a missing "
        "file is a warning.",
    ),
    Setting("notify", Section(), reload=LIVE, field=at(Config, "notify"),
        doc="Alerts; without the section (or with every event false) none are sent.",
    ),
)

_CONNECTIONS = (
    Setting("failover", Flag(), field=at(Config, "failover"),
        doc="Relay the secondary's answers to the stations while the primary is away.",
    ),
    Setting("default_subprotocol", Text(strip=True), field=at(Config, "default_subprotocol"),
        doc="The OCPP version assumed towards the upstreams for a station that offers no subprotocol.",
    ),
    Setting("handshake_timeout", Number(0.1, unit=" of seconds"), field=at(Config, "handshake_timeout"),
        doc="Seconds a station's handshake waits for the primary's before it is accepted anyway.",
    ),
    Setting("max_frame_size", Number(1024, True, " of bytes"), field=at(Config, "max_frame_size"),
        doc="Largest frame accepted from a station or an upstream; a larger one closes that connection with 1009.",
    ),
    Setting("keepalive", Section(),
        doc="WebSocket pings towards stations and upstreams.",
    ),
    Setting("keepalive.interval", Number(0.0, unit=" of seconds"), field=at(Config, "keepalive_interval"),
        doc="Seconds between pings: 0 (off) or at least 1.",
    ),
    Setting("keepalive.timeout", Number(1.0, unit=" of seconds"), field=at(Config, "keepalive_timeout"),
        doc="A peer that does not answer a ping within this many seconds is disconnected.",
    ),
    Setting("pending_call_timeout", Number(1.0, unit=" of seconds"), field=at(Config, "pending_call_timeout"),
        doc="Seconds after which an unanswered CALL is forgotten; one still waiting for the station is answered "
        "with a CALLERROR.",
    ),
    Setting("upstream_calls", Section(), field=at(Config, "upstream_calls"),
        doc="Which CALLs each upstream may send to the stations; the others get a SecurityError CALLERROR.",
    ),
    Setting("upstream_calls.<upstream>", _CALLS,
        default="all",
        doc="That upstream's allowed CALLs.",
    ),
    Setting("state_file", _PATH, field=at(Config, "state_file"),
        doc="JSON file keeping OCPP 1.6 transaction ids translated for the secondary across restarts; its "
        "directory must exist.",
    ),
    Setting("status", Section(),
        shown="none (off)",
        doc="Status over HTTP (page, ``/stations``, ``/metrics``); off without the section.",
    ),
    Setting("status.listen", Text(text="Twisted server endpoint string"), field=at(Config, "status_listen"),
        shown=MANDATORY,
        doc="Where the status is served (without ``require_token``, no authentication: keep it local).",
    ),
    Setting("status.require_token", Flag(), field=at(Config, "status_require_token"),
        doc="``/``, ``/stations``, ``/alerts`` and ``/metrics`` need a ``read`` token of ``api.tokens`` (Bearer "
        "header, or the page's login form and its cookie).",
    ),
    Setting("traffic_log", Section(),
        shown="none (off)",
        doc="Every OCPP frame as JSON lines, rotated at midnight UTC; off without the section.",
    ),
    Setting("traffic_log.directory", _PATH, field=at(Config, "traffic_log_directory"),
        shown=MANDATORY,
        doc="Existing directory of ``traffic.jsonl``, relative to the file.",
    ),
    Setting("traffic_log.max_pending", Number(1, True), field=at(Config, "traffic_log_max_pending"),
        doc="Lines waiting for the writer thread; beyond, new lines are dropped and counted.",
    ),
)

_ROUTING = (
    Setting("upstreams", Section(), reload=LIVE_WHILE_PRESENT, field=at(Config, "upstreams"),
        shown="none (the legacy keys)",
        doc="The central systems by name, instead of ``primary_url`` / ``secondary_url`` and their keys (not "
        "with them); every key applies on reload, and the stations whose links change are re-linked.",
    ),
    Setting("upstreams.<name>", Section(), reload=LIVE_WHILE_PRESENT,
        doc="One central system; its name (letters, digits, ``_``, ``-``, ``.``) appears in logs, metrics, "
        "alerts and the state file.",
    ),
    Setting("upstreams.<name>.url", _UPSTREAM_URL, reload=LIVE_WHILE_PRESENT, field=at(Upstream, "url"),
        shown=MANDATORY,
        doc="Its URL; the station id (see ``station_id``) is appended.",
    ),
    Setting("upstreams.<name>.auth", _CREDENTIALS, reload=LIVE_WHILE_PRESENT, field=at(Upstream, "auth"),
        default="pass",
        doc="As ``upstream_auth.<upstream>``: ``{station_id}`` in ``username`` is the station's own id, "
        "not the rewritten one.",
    ),
    Setting("upstreams.<name>.auth.username", _CREDENTIAL, reload=LIVE_WHILE_PRESENT,
        doc="HTTP Basic user name, without ``:``.",
    ),
    Setting("upstreams.<name>.auth.password", _CREDENTIAL, reload=LIVE_WHILE_PRESENT,
        doc="HTTP Basic password; never logged.",
    ),
    Setting("upstreams.<name>.tls", Section(), reload=LIVE_WHILE_PRESENT, field=at(Upstream, "tls"),
        doc="As ``upstream_tls.<upstream>``, for a ``wss://`` URL only.",
    ),
    Setting("upstreams.<name>.tls.ca_file", _TLS_PATH, reload=LIVE_WHILE_PRESENT,
        doc="PEM CA(s) of its certificate, instead of the top-level ``ca_file``.",
    ),
    Setting("upstreams.<name>.tls.client_cert", _TLS_PATH, reload=LIVE_WHILE_PRESENT,
        doc="The client certificate the proxy presents; goes with ``client_key``.",
    ),
    Setting("upstreams.<name>.tls.client_key", _TLS_PATH, reload=LIVE_WHILE_PRESENT,
        doc="Its unencrypted key; goes with ``client_cert``.",
    ),
    Setting("upstreams.<name>.calls", _CALLS, reload=LIVE_WHILE_PRESENT, field=at(Upstream, "calls"),
        default="all",
        doc="CALLs it may send to the stations; the others get a SecurityError CALLERROR.",
    ),
    Setting("upstreams.<name>.receives", Rule("``all`` or a list of actions", values.receives),
        reload=LIVE_WHILE_PRESENT, field=at(Upstream, "receives"), default="all",
        doc="Station CALLs it gets (answers to its own CALLs always reach it); StopTransaction needs "
        "StartTransaction; with MeterValues alone it gets the station's transaction ids as they are.",
    ),
    Setting("upstreams.<name>.station_id", Rule("string holding ``{station_id}``", values.station_id_template),
        reload=LIVE_WHILE_PRESENT, field=at(Upstream, "station_id"),
        doc="The id appended to ``url``: ``{station_id}`` is the station's, e.g. ``FR*ABC*{station_id}``.",
    ),
    Setting("upstreams.<name>.outbox", Flag(), reload=LIVE_WHILE_PRESENT, field=at(Upstream, "outbox"),
        doc="Whether its frames, as a mirror, go through the durable outbox (with an ``outbox`` section); "
        "``false`` for a feed that may lose frames (e.g. analytics): it keeps the memory queue.",
    ),
    Setting("routes", Rule("list of routes", values.route_list), reload=LIVE_WHILE_PRESENT,
        field=at(Config, "routes"),
        shown="mandatory with ``upstreams``",
        doc="Which upstreams each station talks to; the first route whose ``stations`` admits its id wins; a "
        "station on no route is refused with HTTP 404.",
    ),
    Setting("routes.stations", Rule("list of station ids and patterns", values.stations),
        reload=LIVE_WHILE_PRESENT, field=at(RouteEntry, "stations"),
        shown=MANDATORY,
        doc="Exact ids, or shell-style patterns (with ``*``, ``?`` or ``[``; case-sensitive; also matching "
        "themselves).",
    ),
    Setting("routes.primary", Text(), reload=LIVE_WHILE_PRESENT, field=at(RouteEntry, "primary"),
        shown=MANDATORY,
        doc="The upstream whose answers reach the station.",
    ),
    Setting("routes.mirrors", Rule("list of upstream names", values.names), reload=LIVE_WHILE_PRESENT,
        field=at(RouteEntry, "mirrors"), default=[],
        doc="Upstreams that get copies of what the station sends (as their ``receives`` admits); not the "
        "primary.",
    ),
    Setting("routes.failover", Text(), reload=LIVE_WHILE_PRESENT, field=at(RouteEntry, "failover"),
        doc="The mirror whose answers reach the station while the primary is away.",
    ),
    Setting("routes_file", _PATH, reload=LIVE, field=at(Config, "routes_file"),
        doc="YAML (or, named ``.json``, JSON: much faster to read) file holding the ``routes`` list instead, for "
        "generated tables; relative to the file; read again by every reload.",
    ),
    Setting("migration_rate", Number(0.1, unit=" of stations per second"), reload=LIVE,
        field=at(Config, "migration_rate"),
        doc="Connected stations moved to a changed route (or re-linked) per second after a reload.",
    ),
)

_SECURITY = (
    Setting("upstream_auth", Section(), field=at(Config, "upstream_auth"),
        doc="The ``Authorization`` each upstream gets in its handshake.",
    ),
    Setting("upstream_auth.<upstream>", _CREDENTIALS,
        default="pass",
        doc="The station's header unchanged (``pass``), none (``drop``), or HTTP Basic credentials "
        "(``{station_id}`` in ``username`` is the station's id).",
    ),
    Setting("upstream_auth.<upstream>.username", _CREDENTIAL,
        doc="HTTP Basic user name, without ``:``; ``{station_id}`` stands for the station's id.",
    ),
    Setting("upstream_auth.<upstream>.password", _CREDENTIAL,
        doc="HTTP Basic password; never logged.",
    ),
    Setting("upstream_tls", Section(), reload=LIVE, field=at(Config, "upstream_tls"),
        doc="TLS towards a ``wss://`` upstream, per upstream; files read again by a reload.",
    ),
    Setting("upstream_tls.<upstream>", Section(), reload=LIVE,
        doc="That upstream's CA and client certificate.",
    ),
    Setting("upstream_tls.<upstream>.ca_file", _TLS_PATH, reload=LIVE, field=at(UpstreamTLS, "ca_file"),
        doc="PEM CA(s) of its certificate, instead of the top-level ``ca_file``.",
    ),
    Setting("upstream_tls.<upstream>.client_cert", _TLS_PATH, reload=LIVE, field=at(UpstreamTLS, "client_cert"),
        doc="The client certificate the proxy presents; goes with ``client_key``.",
    ),
    Setting("upstream_tls.<upstream>.client_key", _TLS_PATH, reload=LIVE, field=at(UpstreamTLS, "client_key"),
        doc="Its unencrypted key; goes with ``client_cert``.",
    ),
    Setting("trusted_proxies", Rule("list of IP addresses and CIDR networks", values.trusted_proxies),
        field=at(Config, "trusted_proxies"), default=[],
        doc="Reverse proxies whose ``X-Forwarded-For`` is believed; also exempt from "
        "``limits.max_handshakes_per_address``.",
    ),
)

_LIMITS = (
    Setting("limits", Section(),
        doc="Bounds on what connecting peers can make the proxy hold, per instance.",
    ),
    Setting("limits.max_stations", Number(1, True), field=at(Config, "max_stations"),
        doc="Stations connected at once; one more (a new id) is refused with HTTP 503.",
    ),
    Setting("limits.max_handshakes", Number(1, True), field=at(Config, "max_handshakes"),
        doc="Unfinished handshakes (TLS included); one more sheds the oldest whose request has not arrived.",
    ),
    Setting("limits.max_handshakes_per_address", Number(1, True), field=at(Config, "max_handshakes_per_address"),
        doc="Unfinished handshakes from one IPv4 address or IPv6 /64 (``trusted_proxies`` exempt); one more is "
        "closed.",
    ),
    Setting("limits.max_write_buffer", Number(65536, True, " of bytes"), field=at(Config, "max_write_buffer"),
        doc="Bytes held unsent for one connection before the proxy pauses what feeds it.",
    ),
    Setting("limits.stall_timeout", Number(0.1, unit=" of seconds"), field=at(Config, "stall_timeout"),
        doc="Seconds a connection over ``max_write_buffer`` may take to drain before it is closed or reconnected.",
    ),
    Setting("limits.max_frames_per_second", Number(0.1), field=at(Config, "max_frames_per_second"),
        doc="Frames per second one station may send on average; over it, it is not read from until its rate is back.",
    ),
    Setting("limits.frame_burst", Number(1, True), field=at(Config, "frame_burst"),
        doc="Frames a station may send at once above ``max_frames_per_second``.",
    ),
    Setting("limits.max_connects_per_minute", Number(1, True), field=at(Config, "max_connects_per_minute"),
        doc="Connections of one station id its primary accepted within a minute; one more gets HTTP 429.",
    ),
    Setting("station_tls", Section(), reload=LIVE_WHILE_PRESENT, field=at(Config, "station_tls"),
        shown="none (off)",
        doc="TLS towards the stations on a ``tcp:`` or ``systemd:`` endpoint (not ``ssl:``); off without the section.",
    ),
    Setting("station_tls.certificate", _PATH, reload=LIVE_WHILE_PRESENT, field=at(StationTLS, "certificate"),
        shown=MANDATORY,
        doc="The proxy's PEM certificate (its chain may follow), relative to the file.",
    ),
    Setting("station_tls.private_key", _PATH, reload=LIVE_WHILE_PRESENT, field=at(StationTLS, "private_key"),
        shown=MANDATORY,
        doc="Its PEM key, relative to the file.",
    ),
    Setting("station_tls.client_ca_file", _PATH, reload=LIVE_WHILE_PRESENT, field=at(StationTLS, "client_ca_file"),
        doc="PEM CA(s) whose client certificates stations must present (security profile 3).",
    ),
    Setting("station_tls.check_client_id", _CLIENT_ID_CHECK,
        reload=LIVE_WHILE_PRESENT, field=at(StationTLS, "check_client_id"),
        doc="A client certificate naming another station id: refused with HTTP 403, accepted with a warning, or "
        "not looked at.",
    ),
    Setting("cluster", Section(), field=at(Config, "cluster"),
        shown="none (off)",
        doc="Several instances sharing one Redis; off without the section.",
    ),
    Setting("cluster.redis_url", Rule("``redis://``, ``rediss://`` or ``unix:///path`` URL", values.redis_url),
        field=at(ClusterConfig, "redis_url"),
        shown=MANDATORY,
        doc="The Redis the instances share; never logged whole.",
    ),
    Setting("cluster.instance", Rule("string, no spaces", values.instance_name), field=at(ClusterConfig, "instance"),
        shown="``<hostname>:<port of listen>``",
        doc="This instance's name, unique in the cluster (with ``systemd:``, the host name alone: set it).",
    ),
    Setting("cluster.ownership_ttl", Rule("whole number of seconds ≥ 3", values.ownership_ttl),
        field=at(ClusterConfig, "ownership_ttl"),
        doc="Seconds a claim on a station lives in Redis without a refresh (refreshed every third of it).",
    ),
    Setting("redact", Rule("list of payload key names", values.redact), field=at(Config, "redact"), default=[],
        doc="Keys whose values are masked wherever a frame is shown, beyond the credentials always masked.",
    ),
)

_API = (
    Setting("api", Section(), field=at(Config, "api"),
        shown="none (off)",
        doc="The control-plane API (stations, CALLs, frame history, events) and its tokens; off without the section.",
    ),
    Setting("api.listen", _ENDPOINT, field=at(ApiConfig, "listen"),
        shown="none (tokens only)",
        doc="Where the API is served (``ssl:`` works); without it the tokens only protect the status page.",
    ),
    Setting("api.tokens", Rule("list of tokens", values.token_list), field=at(ApiConfig, "tokens"), default=[],
        doc="Who may use the API (and, with ``status.require_token``, the status page).",
    ),
    Setting("api.tokens.name", Rule("string, no spaces", values.instance_name), field=at(ApiToken, "name"),
        shown=MANDATORY,
        doc="The token's name, in the audit log; unique.",
    ),
    Setting("api.tokens.sha256", Rule("64 hex digits", values.sha256_hex), field=at(ApiToken, "sha256"),
        shown=MANDATORY,
        doc="The hex SHA-256 of the token (``printf %s TOKEN | sha256sum``), never the token itself.",
    ),
    Setting("api.tokens.scope", OneOf(API_SCOPES), field=at(ApiToken, "scope"),
        doc="``read`` (look) or ``operate`` (also send CALLs and disconnect stations).",
    ),
    Setting("api.tokens.actions", Rule("list of actions", values.call_policy), field=at(ApiToken, "actions"),
        default="all",
        doc="The actions an ``operate`` token may send; others get 403.",
    ),
    Setting("api.history", Number(0, True, " of frames"), field=at(ApiConfig, "history"),
        doc="Frames kept per station for ``/api/stations/{id}/frames`` (0: none), kept an hour after it left.",
    ),
)

SCHEMA: tuple[Setting, ...] = _TOP + NOTIFY + _CONNECTIONS + _ROUTING + _SECURITY + _LIMITS + _API + OUTBOX
"""Every key, in the order the reference lists them and each section's unknown-key error names them."""

BY_KEY: dict[str, Setting] = {setting.key: setting for setting in SCHEMA}


def children(section: str) -> tuple[str, ...]:
    """The names C{section} (C{""}: the top level) allows, placeholders expanded, in declaration order."""
    declared = setting_of(section).key if section else ""
    names: list[str] = []
    for setting in SCHEMA:
        if setting.parent == declared:
            names.extend(PLACEHOLDERS.get(setting.name, (setting.name,)) or ())
    return tuple(names)


def setting_of(key: str) -> Setting:
    """The declaration of a key as the file names it (C{upstream_tls.primary.ca_file}); a L{KeyError} if none."""
    if key in BY_KEY:
        return BY_KEY[key]
    parts = key.split(".")
    for index, part in enumerate(parts):
        for placeholder, names in PLACEHOLDERS.items():
            general = ".".join([*parts[:index], placeholder, *parts[index + 1 :]])
            if (names is None or part in names) and general in BY_KEY:
                return BY_KEY[general]
    raise KeyError(key)


def check(key: str, value: Any) -> Any:
    """C{value} checked for C{key} as the file names it; a L{ConfigError} naming C{key} if wrong."""
    return setting_of(key).check(key, value)


def config_fields() -> dict[str, Setting]:
    """The setting each field of L{Config} comes from, by field name."""
    return {setting.field[1]: setting for setting in SCHEMA if setting.field is not None and setting.field[0] is Config}
