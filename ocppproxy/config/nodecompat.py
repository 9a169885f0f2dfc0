"""
The Node tool's configuration (OCPP-Proxy-Alert's C{config.json}), read unchanged.

L{translate_node_config} turns it into ocppproxy's own shape (what the YAML file holds)
and L{config_from_node} validates that with L{config_from_mapping}, so both formats obey
the same rules; problems are then reported under the Node tool's key names. The Node
tool's C{clientIdToHuman.json} beside the file names the stations.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import formataddr
from typing import Any

from .events import EVENT_KEYS
from .model import Config, ConfigError
from .parse import TOP_KEYS, config_from_mapping

NODE_TOP_KEYS = ("logLevel", "primaryUrl", "secondaryUrl", "proxy", "notify")
NODE_NAMES_FILE = "clientIdToHuman.json"

# winston's npm levels; ours has nothing between info and debug.
WINSTON_LEVELS = {
    "error": "error",
    "warn": "warn",
    "info": "info",
    "http": "debug",
    "verbose": "debug",
    "debug": "debug",
    "silly": "debug",
}


def node_event_name(key: str) -> str:
    """The Node tool's camelCase name of an event key: C{con_status_suspended_evse} -> C{conStatusSuspendedEVSE}."""
    first, *rest = key.split("_")
    return first + "".join(part.upper() if part in ("ev", "evse") else part.capitalize() for part in rest)


# Every event has a camelCase name, the Node tool's 18 and ours beyond them.
NODE_EVENTS = {node_event_name(key): key for key in EVENT_KEYS}

# Settings the Node tool lacks, accepted in its style so that a config.json can use them.
NODE_NOTIFY_SETTINGS = {
    "log": "log",
    "flapWindow": "flap_window",
    "upstreamDownAfter": "upstream_down_after",
    "queueLimit": "queue_limit",
    "maxAttempts": "max_attempts",
    "retryDelay": "retry_delay",
    "flushTimeout": "flush_timeout",
    "summaryWindow": "summary_window",
    "burstLimit": "burst_limit",
}


@dataclass(frozen=True)
class SmtpService:
    """A Nodemailer well-known service; C{secure} None means "as Nodemailer decides from the port"."""

    host: str
    port: int
    secure: bool | None = None
    aliases: tuple[str, ...] = ()


# From Nodemailer's lib/well-known/services.json, plus OVH and Orange, which it lacks.
WELL_KNOWN_SERVICES = {
    "1und1": SmtpService("smtp.1und1.de", 465, True),
    "AOL": SmtpService("smtp.aol.com", 587, aliases=("aol.com",)),
    "FastMail": SmtpService("smtp.fastmail.com", 465, True, ("fastmail.fm",)),
    "GandiMail": SmtpService("mail.gandi.net", 587, aliases=("Gandi", "Gandi Mail")),
    "Gmail": SmtpService("smtp.gmail.com", 465, True, ("Google Mail", "gmail.com", "googlemail.com")),
    "GMX": SmtpService("mail.gmx.com", 587, aliases=("gmx.com", "gmx.net", "gmx.de")),
    "Hotmail": SmtpService(
        "smtp-mail.outlook.com", 587, aliases=("Outlook", "Outlook.com", "Hotmail.com", "hotmail.com", "outlook.com")
    ),
    "iCloud": SmtpService("smtp.mail.me.com", 587, aliases=("Me", "Mac", "me.com", "mac.com")),
    "Mail.ru": SmtpService("smtp.mail.ru", 465, True),
    "Mailgun": SmtpService("smtp.mailgun.org", 465, True),
    "Mailjet": SmtpService("in.mailjet.com", 587),
    "Mandrill": SmtpService("smtp.mandrillapp.com", 587),
    "Orange": SmtpService("smtp.orange.fr", 465, True, ("orange.fr", "wanadoo.fr")),
    "Outlook365": SmtpService("smtp.office365.com", 587, False),
    "OVH": SmtpService("ssl0.ovh.net", 465, True),
    "Postmark": SmtpService("smtp.postmarkapp.com", 2525, aliases=("PostmarkApp",)),
    "Proton": SmtpService("smtp.protonmail.ch", 587, aliases=("ProtonMail", "proton.me", "protonmail.com")),
    "SendGrid": SmtpService("smtp.sendgrid.net", 587),
    "SendinBlue": SmtpService("smtp-relay.brevo.com", 587, aliases=("Brevo",)),
    "SES": SmtpService("email-smtp.us-east-1.amazonaws.com", 465, True, ("SES-US-EAST-1",)),
    "SES-EU-WEST-1": SmtpService("email-smtp.eu-west-1.amazonaws.com", 465, True),
    "SES-US-WEST-2": SmtpService("email-smtp.us-west-2.amazonaws.com", 465, True),
    "Sparkpost": SmtpService("smtp.sparkpostmail.com", 587, False, ("SparkPost Mail", "sparkpost.com")),
    "Yahoo": SmtpService("smtp.mail.yahoo.com", 465, True, ("yahoo.com",)),
    "Yandex": SmtpService("smtp.yandex.ru", 465, True, ("yandex.ru",)),
    "Zoho": SmtpService("smtp.zoho.com", 465, True),
}


def _service_key(name: str) -> str:
    # As Nodemailer: an e-mail address stands for its domain; case and spaces do not count.
    return re.sub(r"[^a-zA-Z0-9.-]", "", name.split("@")[-1]).lower()


_SERVICES_BY_KEY = {
    _service_key(name): service
    for canonical, service in WELL_KNOWN_SERVICES.items()
    for name in (canonical, *service.aliases)
}


def well_known_service(name: str) -> SmtpService | None:
    """The SMTP server behind a Nodemailer C{service} name (any case), or None if unknown."""
    return _SERVICES_BY_KEY.get(_service_key(name))


_NODE_ONLY_KEYS = tuple(key for key in NODE_TOP_KEYS if key not in TOP_KEYS)
_OUR_ONLY_KEYS = tuple(key for key in TOP_KEYS if key not in NODE_TOP_KEYS)


def is_node_config(raw: Any, path: str | None = None) -> bool:
    """
    True if C{raw} (a parsed file) is the Node tool's config: it has the Node tool's
    top-level keys and none of ours, or, read from a C{.json} C{path}, none of ours.
    """
    if not isinstance(raw, Mapping) or any(key in raw for key in _OUR_ONLY_KEYS):
        return False
    return any(key in raw for key in _NODE_ONLY_KEYS) or (path or "").lower().endswith(".json")


def translate_node_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """
    The Node tool's C{config.json} content in ocppproxy's shape, for L{config_from_mapping}.

    Raises L{ConfigError} (naming the Node key) for what has no translation at all. An
    e-mail transporter that cannot be translated (a non-SMTP transport, an unknown
    service) is left out; L{config_from_node} reports it as a channel problem.
    """
    return _translate(raw).mapping


def config_from_node(raw: Any, base_dir: str = ".") -> Config:
    """
    Validate the Node tool's C{config.json} content; C{base_dir} is the file's directory,
    where C{clientIdToHuman.json} is used if present. Errors and channel problems name
    the Node tool's keys.
    """
    translation = _translate(raw)
    mapping = dict(translation.mapping)
    if os.path.isfile(os.path.join(base_dir, NODE_NAMES_FILE)):
        mapping["client_names"] = NODE_NAMES_FILE
    try:
        config = config_from_mapping(mapping, base_dir)
    except ConfigError as error:
        raise ConfigError(translation.node_key(error.key), error.reason) from None
    problems = translation.channel_problems + [
        (channel, translation.node_text(text)) for channel, text in config.notify.channel_problems
    ]
    return replace(config, notify=replace(config.notify, channel_problems=tuple(problems)))


class _Untranslatable(Exception):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")


@dataclass
class _Translation:
    """Our mapping, and for each of our keys the Node key it came from."""

    mapping: dict[str, Any] = field(default_factory=dict)
    node_keys: dict[str, str] = field(default_factory=dict)
    channel_problems: list[tuple[str, str]] = field(default_factory=list)

    def node_key(self, key: str) -> str:
        """C{key} (ours, possibly below a translated one) in the Node tool's terms."""
        for ours in sorted(self.node_keys, key=len, reverse=True):
            if key == ours or key.startswith((ours + ".", ours + "[")):
                return self.node_keys[ours] + key[len(ours) :]
        return key

    def node_text(self, text: str) -> str:
        """A C{"key: reason"} text with its keys (the reason may name some) in the Node tool's terms."""
        return re.sub(r"notify\.[\w.]+", lambda match: self.node_key(match.group(0)), text)


def _translate(raw: Any) -> _Translation:
    if not isinstance(raw, Mapping):
        raise ConfigError("", "the Node tool's config.json must hold a JSON object")
    for key in raw:
        if key not in NODE_TOP_KEYS:
            raise ConfigError(
                str(key),
                f"unknown key in the Node tool's config.json (expected one of: {', '.join(NODE_TOP_KEYS)}); "
                "ocppproxy's own keys go in a YAML file",
            )
    translation = _Translation()
    _log_level(translation, raw.get("logLevel"))
    _upstreams(translation, raw)
    _listen(translation, raw.get("proxy"))
    if raw.get("notify") is not None:
        _notify(translation, raw["notify"])
    return translation


def _log_level(translation: _Translation, level: Any) -> None:
    if not level:
        return
    if not isinstance(level, str) or level.lower() not in WINSTON_LEVELS:
        raise ConfigError("logLevel", f"must be one of {', '.join(WINSTON_LEVELS)}")
    translation.mapping["log_level"] = WINSTON_LEVELS[level.lower()]
    translation.node_keys["log_level"] = "logLevel"


def _upstreams(translation: _Translation, raw: Mapping[str, Any]) -> None:
    if not raw.get("primaryUrl"):
        raise ConfigError("primaryUrl", "is mandatory")
    for node, ours in (("primaryUrl", "primary_url"), ("secondaryUrl", "secondary_url")):
        url = raw.get(node)
        if not url:
            continue
        if isinstance(url, str) and url[:8].lower().startswith(("http://", "https://")):
            # The Node tool's WebSocket client takes http(s):// for ws(s)://.
            scheme, rest = url.split("://", 1)
            url = f"{'wss' if scheme.lower() == 'https' else 'ws'}://{rest}"
        translation.mapping[ours] = url
        translation.node_keys[ours] = node


def _listen(translation: _Translation, proxy: Any) -> None:
    if proxy is None:
        return
    if not isinstance(proxy, Mapping):
        raise ConfigError("proxy", "must be an object with host and port")
    for key in proxy:
        if key not in ("host", "port"):
            raise ConfigError(f"proxy.{key}", "unknown key (expected one of: host, port)")
    host = proxy.get("host") or "0.0.0.0"
    if not isinstance(host, str):
        raise ConfigError("proxy.host", "must be a host name or address")
    port = _port(proxy.get("port", 9000))
    if port is None or not 0 <= port <= 65535:
        raise ConfigError("proxy.port", "must be a port number from 0 to 65535")
    interface = host.strip().removeprefix("[").removesuffix("]")
    translation.mapping["listen"] = f"tcp:port={port}:interface={_endpoint_escape(interface)}:backlog=1024"
    translation.node_keys["listen"] = "proxy"


def _port(value: Any) -> Any:
    """A port given as a number or as a numeric string (both work in Node), else None."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _endpoint_escape(text: str) -> str:
    """Escape a value for a Twisted endpoint string: IPv6 C{::} becomes C{\\:\\:}."""
    return re.sub(r"([\\:=])", r"\\\1", text)


def _notify(translation: _Translation, notify: Any) -> None:
    if not isinstance(notify, Mapping):
        raise ConfigError("notify", "must be an object of events and channels")
    ours: dict[str, Any] = {}
    events: dict[str, Any] = {}
    for key, value in notify.items():
        if key in NODE_EVENTS:
            events[NODE_EVENTS[key]] = value
            translation.node_keys[f"notify.events.{NODE_EVENTS[key]}"] = f"notify.{key}"
        elif key in NODE_NOTIFY_SETTINGS:
            ours[NODE_NOTIFY_SETTINGS[key]] = value
            translation.node_keys[f"notify.{NODE_NOTIFY_SETTINGS[key]}"] = f"notify.{key}"
        elif key == "email":
            if value is not None:
                _email(translation, ours, value)
        elif key == "pushover":
            if value is not None:
                ours["pushover"] = _pushover(translation, value)
        else:
            raise ConfigError(f"notify.{key}", _unknown_node_key(str(key)))
    translation.node_keys["notify.events"] = "notify"
    ours["events"] = events
    translation.mapping["notify"] = ours


def _unknown_node_key(key: str) -> str:
    known = [*NODE_EVENTS, *NODE_NOTIFY_SETTINGS, "email", "pushover"]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"expected one of: {', '.join(known)}"
    return f"not a Node tool event, setting or channel ({hint})"


def _email(translation: _Translation, ours: dict[str, Any], email: Any) -> None:
    translation.node_keys["notify.email"] = "notify.email"
    if not isinstance(email, Mapping):
        ours["email"] = email  # our validation names the problem
        return
    translation.node_keys["notify.email.smtp"] = "notify.email.transporter"
    translated: dict[str, Any] = {}
    if email.get("from") is not None:
        translated["from"] = _mailbox(email["from"])
    if email.get("to") is not None:
        to = email["to"]
        translated["to"] = [_mailbox(item) for item in to] if isinstance(to, list) else _mailbox(to)
    if email.get("transporter") is not None:
        try:
            translated["smtp"] = _smtp(translation, email["transporter"])
        except _Untranslatable as problem:
            translation.channel_problems.append(("email", str(problem)))
            return
    ours["email"] = translated


def _mailbox(value: Any) -> Any:
    """Nodemailer's C{{name, address}} object as C{Name <address>}; anything else unchanged."""
    if isinstance(value, Mapping) and isinstance(value.get("address"), str):
        return formataddr((str(value.get("name") or ""), value["address"]))
    return value


_NON_SMTP_TRANSPORTS = ("sendmail", "streamTransport", "jsonTransport", "SES", "transport")


def _smtp(translation: _Translation, transporter: Any) -> dict[str, Any]:
    """Nodemailer C{createTransport} options as our C{smtp} section, deciding ports and TLS as Nodemailer does."""
    key = "notify.email.transporter"
    if not isinstance(transporter, Mapping):
        raise _Untranslatable(key, "must be an object of Nodemailer SMTP options (connection URLs are not supported)")
    for name in _NON_SMTP_TRANSPORTS:
        if transporter.get(name):
            raise _Untranslatable(f"{key}.{name}", "only SMTP transports are supported")
    options: dict[str, Any] = {}
    service = transporter.get("service")
    if service is not None:
        known = well_known_service(service) if isinstance(service, str) else None
        if known is None:
            raise _Untranslatable(
                f"{key}.service", "not a well-known service ocppproxy knows: give host, port and secure"
            )
        options = {"host": known.host, "port": known.port, "secure": known.secure}
        for ours in ("host", "port", "tls"):
            translation.node_keys[f"notify.email.smtp.{ours}"] = f"{key}.service"
    # Explicit options win over the service's, as in Nodemailer.
    for name, ours in (("host", "host"), ("port", "port"), ("secure", "tls")):
        if transporter.get(name) is not None:
            options[name] = transporter[name]
            translation.node_keys[f"notify.email.smtp.{ours}"] = f"{key}.{name}"
    secure = options.get("secure")
    if secure is not None and not isinstance(secure, bool):
        raise _Untranslatable(f"{key}.secure", "must be true or false")
    port = options.get("port")
    if port is not None and _port(port) is None:
        smtp_port = port  # our validation names the problem
    else:
        smtp_port = _port(port) or (465 if secure else 587)
        if secure is None:
            secure = smtp_port == 465
    if secure:
        tls = "ssl"
    elif transporter.get("ignoreTLS") is True:
        tls = "none"
        translation.node_keys["notify.email.smtp.tls"] = f"{key}.ignoreTLS"
    else:
        # Nodemailer upgrades with STARTTLS when offered; ocppproxy then insists on it.
        tls = "starttls"
    smtp = {"host": options.get("host", "localhost"), "port": smtp_port, "tls": tls}
    smtp.update(_auth(translation, transporter.get("auth")))
    return smtp


def _auth(translation: _Translation, auth: Any) -> dict[str, Any]:
    key = "notify.email.transporter.auth"
    if auth is None:
        return {}
    if not isinstance(auth, Mapping):
        raise _Untranslatable(key, "must be an object with user and pass")
    if auth.get("type") is not None and str(auth["type"]).lower() != "login":
        raise _Untranslatable(f"{key}.type", "only user and password authentication is supported")
    credentials = {}
    for node, ours in (("user", "username"), ("pass", "password")):
        translation.node_keys[f"notify.email.smtp.{ours}"] = f"{key}.{node}"
        if auth.get(node) is not None:
            credentials[ours] = auth[node]
    return credentials


def _pushover(translation: _Translation, pushover: Any) -> Any:
    translation.node_keys["notify.pushover"] = "notify.pushover"
    if not isinstance(pushover, Mapping):
        return pushover  # our validation names the problem
    translated = {}
    # Other keys are ignored, as the Node tool ignores them.
    for node, ours in (
        ("userKey", "user_key"),
        ("appToken", "app_token"),
        ("apiUrl", "api_url"),
        ("priority", "priority"),
    ):
        translation.node_keys[f"notify.pushover.{ours}"] = f"notify.pushover.{node}"
        if pushover.get(node) is not None:
            translated[ours] = pushover[node]
    return translated
