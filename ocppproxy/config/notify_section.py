"""
The C{notify} section of the configuration: events, channels and delivery settings.

Nothing here quotes a value in its error or problem text: any value under notify may be
a password, a token or a user key put in the wrong place, and channel problems reach the
log. Texts name the key and the kind of value instead. A channel that is present but
wrong is switched off (recorded in C{NotifyConfig.channel_problems}), not fatal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .apprise_urls import EXTRA as APPRISE_EXTRA
from .apprise_urls import apprise_missing, unsupported_urls
from .model import (
    AppriseSettings,
    ConfigError,
    EmailSettings,
    NotifyConfig,
    PushoverSettings,
    SmtpSettings,
    WebhookSettings,
    kind_of,
    refuse_unknown_keys,
    require_mapping,
)
from .schema import check, children

SMTP_DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
PUSHOVER_API_URL = PushoverSettings.api_url
_CHANNELS = ("email", "pushover", "webhook", "apprise")
# The section's own settings (the log flag and the numbers), each checked as the schema says.
_SETTINGS = tuple(name for name in children("notify") if name not in ("events", *_CHANNELS))


def notify_config(value: Any, base_dir: str) -> NotifyConfig:
    """The validated C{notify} section (None: no alerts)."""
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError("notify", f"must be a mapping, got {kind_of(value)}")
    section = require_mapping("notify", value, children("notify"))
    kwargs: dict[str, Any] = {"events": check("notify.events", section.get("events"))}
    for name in _SETTINGS:
        if section.get(name) is not None:
            kwargs[name] = check(f"notify.{name}", section[name])
    if section.get("apprise") is not None and apprise_missing():
        # Not a channel problem: the operator asked for it and the install lacks it.
        raise ConfigError("notify.apprise", f"needs the apprise library: pip install '{APPRISE_EXTRA}'")
    problems = []
    channels = (("email", _email), ("pushover", _pushover), ("webhook", _webhook), ("apprise", _apprise))
    for channel, parse in channels:
        if section.get(channel) is None:
            continue
        try:
            kwargs[channel] = parse(section[channel], base_dir)
        except ConfigError as problem:
            problems.append((channel, str(problem)))
    kwargs["channel_problems"] = tuple(problems)
    return NotifyConfig(**kwargs)


# Alert channels: a problem here switches the channel off instead of stopping start-up.


def _section(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be a mapping, got {kind_of(value)}")
    refuse_unknown_keys(key, value, children(key))
    return value


def _required(key: str, section: Mapping[str, Any], name: str) -> Any:
    if section.get(name) is None:
        raise ConfigError(f"{key}.{name}", "is mandatory")
    return section[name]


def _email(value: Any, base_dir: str) -> EmailSettings:
    section = _section("notify.email", value)
    sender = check("notify.email.from", _required("notify.email", section, "from"))
    recipients = check("notify.email.to", _required("notify.email", section, "to"))
    return EmailSettings(sender, recipients, _smtp(_required("notify.email", section, "smtp"), base_dir))


def _smtp(value: Any, base_dir: str) -> SmtpSettings:
    key = "notify.email.smtp"
    section = _section(key, value)
    host = check(f"{key}.host", _required(key, section, "host"))
    tls = check(f"{key}.tls", section.get("tls", SmtpSettings.tls))
    port = SMTP_DEFAULT_PORTS[tls]
    if section.get("port") is not None:
        port = check(f"{key}.port", section["port"])
    credentials = {}
    for name in ("username", "password"):
        if section.get(name) is not None:
            credentials[name] = check(f"{key}.{name}", section[name])
    if len(credentials) == 1:
        missing = "password" if "username" in credentials else "username"
        raise ConfigError(f"{key}.{missing}", f"is mandatory when {key}.{next(iter(credentials))} is set")
    timeout = _timeout(key, section)
    ca_file = None
    if section.get("ca_file") is not None:
        ca_file = os.path.abspath(os.path.join(base_dir, check(f"{key}.ca_file", section["ca_file"])))
        if not os.path.isfile(ca_file):
            raise ConfigError(f"{key}.ca_file", f"no such file: {ca_file}")
    return SmtpSettings(host=host, port=port, tls=tls, timeout=timeout, ca_file=ca_file, **credentials)


def _pushover(value: Any, base_dir: str) -> PushoverSettings:
    key = "notify.pushover"
    section = _section(key, value)
    user_key = check(f"{key}.user_key", _required(key, section, "user_key"))
    app_token = check(f"{key}.app_token", _required(key, section, "app_token"))
    api_url = PUSHOVER_API_URL
    if section.get("api_url") is not None:
        api_url = check(f"{key}.api_url", section["api_url"])
    if api_url == PUSHOVER_API_URL:
        # Pushover's own keys are 30 letters and digits; catching a placeholder here
        # beats a refusal at every alert. Relays (another api_url) may differ.
        for name, secret in (("user_key", user_key), ("app_token", app_token)):
            if len(secret) != 30 or not (secret.isascii() and secret.isalnum()):
                raise ConfigError(f"{key}.{name}", "is not a Pushover key (30 letters and digits)")
    priority = PushoverSettings.priority
    if section.get("priority") is not None:
        priority = check(f"{key}.priority", section["priority"])
    return PushoverSettings(user_key=user_key, app_token=app_token, api_url=api_url, priority=priority)


def _timeout(key: str, section: Mapping[str, Any]) -> float | None:
    """A channel's own C{timeout}; None where the file sets none (C{notify.delivery_timeout} applies)."""
    if section.get("timeout") is None:
        return None
    return check(f"{key}.timeout", section["timeout"])


def _webhook(value: Any, base_dir: str) -> WebhookSettings:
    key = "notify.webhook"
    section = _section(key, value)
    url = check(f"{key}.url", _required(key, section, "url"))
    headers = check(f"{key}.headers", section.get("headers"))
    return WebhookSettings(url=url, headers=headers, timeout=_timeout(key, section))


def _apprise(value: Any, base_dir: str) -> AppriseSettings:
    key = "notify.apprise"
    section = _section(key, value)
    urls = check(f"{key}.urls", _required(key, section, "urls"))
    refused = unsupported_urls(urls)
    if refused:
        raise ConfigError(f"{key}.urls[{refused[0]}]", "is not a URL Apprise accepts (unknown scheme or missing part)")
    return AppriseSettings(urls=urls, timeout=_timeout(key, section))
