"""
Configuration reload (SIGHUP): re-read the file, apply what the running daemon can
change without dropping a station, and name what waits for a restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace

from ..config.load import load_config
from ..config.model import Config, ConfigError, NotifyConfig
from ..logs import proxy_logger, set_log_level
from ..notify.channels import build_channels, channels_differ, load_station_names
from ..notify.service import NotifierService

LIVE_SETTINGS = ("log_level", "client_names", "notify")
"""The L{Config} fields a reload applies at once; every other change needs a restart."""

_KEY_NAMES = {
    "buffer_max_messages": "buffer.max_messages",
    "keepalive_interval": "keepalive.interval",
    "keepalive_timeout": "keepalive.timeout",
    "max_stations": "limits.max_stations",
    "max_handshakes": "limits.max_handshakes",
    "max_handshakes_per_address": "limits.max_handshakes_per_address",
    "max_write_buffer": "limits.max_write_buffer",
    "stall_timeout": "limits.stall_timeout",
    "max_frames_per_second": "limits.max_frames_per_second",
    "frame_burst": "limits.frame_burst",
    "max_connects_per_minute": "limits.max_connects_per_minute",
}


@dataclass(frozen=True)
class ConfigChanges:
    """What differs between two configurations, as configuration keys (never values)."""

    live: tuple[str, ...] = ()
    """Keys applied by a reload."""
    restart: tuple[str, ...] = ()
    """Keys that take effect only after a restart."""


def compare_configs(old: Config, new: Config) -> ConfigChanges:
    """Sort the keys that differ from C{old} to C{new} into live changes and restart-needed ones."""
    live: list[str] = []
    restart: list[str] = []
    for setting in fields(Config):
        before, after = getattr(old, setting.name), getattr(new, setting.name)
        if before == after:
            continue
        name = _KEY_NAMES.get(setting.name, setting.name)
        if setting.name == "notify":
            keys = _notify_keys(before, after)
        elif is_dataclass(before):
            parts = [part.name for part in fields(before)]
            keys = [f"{name}.{part}" for part in parts if getattr(before, part) != getattr(after, part)]
        elif isinstance(before, Mapping):
            parts = sorted(before.keys() | after.keys())
            keys = [f"{name}.{part}" for part in parts if before.get(part) != after.get(part)]
        else:
            keys = [name]
        (live if setting.name in LIVE_SETTINGS else restart).extend(keys)
    return ConfigChanges(tuple(live), tuple(restart))


def _notify_keys(old: NotifyConfig, new: NotifyConfig) -> list[str]:
    keys = [
        f"notify.{setting.name}"
        for setting in fields(NotifyConfig)
        if setting.name != "channel_problems" and getattr(old, setting.name) != getattr(new, setting.name)
    ]
    # A channel switched off by its own mistake changes only channel_problems: name the channel.
    before, after = dict(old.channel_problems), dict(new.channel_problems)
    for channel in sorted(before.keys() | after.keys()):
        if before.get(channel) != after.get(channel) and f"notify.{channel}" not in keys:
            keys.append(f"notify.{channel}")
    return keys


class Reloader:
    """
    Applies a re-read configuration file to the running daemon (see L{reload}).

    C{running} is the configuration in force: the start-up one with the live settings
    of every successful reload, so a change waiting for a restart is named again at
    each reload until the restart.
    """

    _log = proxy_logger()

    def __init__(
        self,
        path: str,
        running: Config,
        notifier: NotifierService,
        reactor,
        load: Callable[[str], Config] = load_config,
    ) -> None:
        self.path = os.path.abspath(path)
        self.running = running
        self._notifier = notifier
        self._reactor = reactor
        self._load = load

    def reload(self) -> ConfigChanges | None:
        """
        Re-read the file and apply the log level, client names and notify settings.

        Stations stay connected. A broken file is refused with one error line (the
        start-up error text) and changes nothing; returns None then (and during
        shutdown), else the changes.
        The client names file is re-read even when its path did not change.
        """
        if not self._notifier.running:
            self._log.info("configuration reload ignored: the daemon is shutting down")
            return None
        # A few kilobytes of local file, read once per SIGHUP as at start-up.
        try:
            new = self._load(self.path)
        except ConfigError as error:
            self._log.error(
                "configuration reload refused: configuration error in {path}: {problem};"
                " the running configuration stays",
                path=self.path,
                problem=str(error),
            )
            return None
        changes = compare_configs(self.running, new)
        self._log.info(
            "configuration reloaded from {path}: {changed}",
            path=self.path,
            changed=f"{', '.join(changes.live)} applied" if changes.live else "no live setting changed",
            live=changes.live,
        )
        if changes.restart:
            self._log.warn(
                "configuration reload: {keys} changed; applied only after a restart",
                keys=", ".join(changes.restart),
                restart=changes.restart,
            )
        set_log_level(new.log_level)
        names = load_station_names(new.client_names)
        if channels_differ(self.running.notify, new.notify):
            built = build_channels(new.notify, self._reactor)
            self._notifier.reconfigure(new.notify, names, built.channels, built.closers, built.starters)
        else:
            self._notifier.reconfigure(new.notify, names)
        self.running = replace(self.running, **{setting: getattr(new, setting) for setting in LIVE_SETTINGS})
        return changes
