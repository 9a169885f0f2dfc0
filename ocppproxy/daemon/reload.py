"""
Configuration reload (SIGHUP): re-read the file, apply what the running daemon can
change without dropping a station, and name what waits for a restart.

A reload has two phases: the file is read and checked, and the new alert channels
built (Apprise's plugins load on first use, about half a second), in a thread of the
reactor's pool; the reactor then only swaps the checked result in. Frames keep flowing
meanwhile. A SIGHUP that arrives while a reload runs is not lost: one more reload
follows the running one (several such signals make one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from ..config.load import load_config
from ..config.model import Config, ConfigError, NotifyConfig
from ..config.schema import LIVE, LIVE_WHILE_PRESENT, config_fields
from ..logs import proxy_logger, set_log_level
from ..notify.channels import BuiltChannels, build_channels, channels_differ, read_station_names, station_names
from ..notify.names import StationNames
from ..notify.service import NotifierService
from ..relay.routing_state import Routing, routing_for
from ..wire.certificates import KeyMismatch
from ..wire.tls_files import TLSFiles, TLSMaterial, files_for_reload, read_tls_files

_FIELDS = config_fields()

LIVE_SETTINGS = tuple(name for name, setting in _FIELDS.items() if setting.reload in (LIVE, LIVE_WHILE_PRESENT))
"""
The L{Config} fields a reload applies at once, as the schema declares them; every other
change needs a restart (and so does adding or removing a section declared live only
while present, C{station_tls}: the listener is TLS or not).
"""

MISMATCH_RETRY_DELAY = 5.0
"""
Seconds before a reload that found a key not matching its certificate reads the files
once more: renewal scripts often replace the certificate and the key one after the other.
"""

_KEY_NAMES = {name: setting.key for name, setting in _FIELDS.items() if setting.key != name}
"""A L{Config} field's name as the file says it (C{limits.max_stations}), where they differ."""


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
        elif isinstance(before, Mapping) or isinstance(after, Mapping):
            # (A section that may be absent, upstreams, is None then.)
            before, after = before or {}, after or {}
            parts = sorted(before.keys() | after.keys())
            keys = [f"{name}.{part}" for part in parts if before.get(part) != after.get(part)]
        else:
            keys = [name]
        applied = _applied_live(setting.name, getattr(old, setting.name), getattr(new, setting.name))
        (live if applied else restart).extend(keys)
    return ConfigChanges(tuple(live), tuple(restart))


def _applied_live(name: str, before, after) -> bool:
    if _FIELDS[name].reload == LIVE_WHILE_PRESENT:
        return (before is None) == (after is None)
    return name in LIVE_SETTINGS


def _live_values(running: Config, new: Config) -> dict:
    """The live settings of C{new} that a reload puts in force over C{running}."""
    return {
        name: getattr(new, name)
        for name in LIVE_SETTINGS
        if _applied_live(name, getattr(running, name), getattr(new, name))
    }


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


def routing_changed(running: Config, new: Config) -> bool:
    """
    Whether a reload changes the routing: under C{upstreams} (the legacy keys, and a
    switch between them and C{upstreams}, wait for a restart), its upstreams, its routes
    or the migration's pace.
    """
    if running.upstreams is None or new.upstreams is None:
        return False
    return (running.upstreams, running.routes, running.migration_rate) != (new.upstreams, new.routes, new.migration_rate)


@dataclass(frozen=True)
class _Prepared:
    """What the thread phase of a reload made, for the reactor to swap in."""

    config: Config
    changes: ConfigChanges
    names: tuple[StationNames, str | None]
    built: BuiltChannels | None
    tls: TLSMaterial | None
    routing: Routing | None = None


class Reloader:
    """
    Applies a re-read configuration file to the running daemon (see L{reload}).
    With C{reroute} (the proxy's), a change of C{upstreams}, C{routes} or
    C{migration_rate} builds the new routing in the thread and hands it to C{reroute}.

    C{running} is the configuration in force: the start-up one with the live settings
    of every successful reload, so a change waiting for a restart is named again at
    each reload until the restart. C{threads} is the pool the file is read in (the
    reactor's by default). With C{tls} (the holder the listener and the upstream links
    ask), every TLS file is read again and checked, and swapped in for new connections;
    C{tls_swapped} is then called (the expiry watch checks the new certificates).
    """

    _log = proxy_logger()

    def __init__(
        self,
        path: str,
        running: Config,
        notifier: NotifierService,
        reactor,
        load: Callable[[str], Config] = load_config,
        threads=None,
        tls: TLSFiles | None = None,
        tls_swapped: Callable[[], object] | None = None,
        retry_delay: float = MISMATCH_RETRY_DELAY,
        reroute: Callable[[Routing], object] | None = None,
    ) -> None:
        self.path = os.path.abspath(path)
        self.running = running
        self._notifier = notifier
        self._reactor = reactor
        self._load = load
        self._threads = threads
        self._busy = False
        self._waiting: list[Deferred] = []
        self._tls = tls
        self._tls_swapped = tls_swapped
        self._retry_delay = retry_delay
        self._reroute = reroute

    def reload(self) -> Deferred[ConfigChanges | None]:
        """
        Re-read the file and apply the log level, client names and notify settings.

        Stations stay connected. A broken file is refused with one error line (the
        start-up error text) and changes nothing. The Deferred fires with the changes
        once they are applied, or None (refused, or ignored during shutdown). Called
        while a reload runs, it waits for that one and then reloads once more (one
        more for any number of calls meanwhile).
        The client names file is re-read even when its path did not change.
        """
        if self._busy:
            waiting: Deferred[ConfigChanges | None] = Deferred()
            self._waiting.append(waiting)
            return waiting
        return self._run()

    def _run(self) -> Deferred[ConfigChanges | None]:
        if not self._notifier.running:
            self._log.info("configuration reload ignored: the daemon is shutting down")
            return succeed(None)
        self._busy = True
        running = self._in_thread()
        running.addErrback(self._retry_mismatch)
        running.addCallback(self._apply)
        running.addErrback(self._refused)
        running.addBoth(self._finished)
        return running

    def _in_thread(self) -> Deferred[_Prepared]:
        threads = self._threads if self._threads is not None else self._reactor.getThreadPool()
        return deferToThreadPool(self._reactor, threads, self._prepare, self.running, self._reactor.seconds())

    def _prepare(self, running: Config, now: float) -> _Prepared:
        """
        In a thread: read and check the file and the TLS files (whose certificates must
        be valid at C{now}), read the names, build the channels that changed.
        """
        new = self._load(self.path)
        tls = read_tls_files(files_for_reload(running, new), now) if self._tls is not None else None
        changes = compare_configs(running, new)
        names = read_station_names(new.client_names)
        built = build_channels(new.notify, self._reactor) if channels_differ(running.notify, new.notify) else None
        # The route table too is built here: the reactor only swaps it in.
        routing = routing_for(new) if self._reroute is not None and routing_changed(running, new) else None
        return _Prepared(new, changes, names, built, tls, routing)

    def _retry_mismatch(self, failure: Failure) -> Deferred[_Prepared]:
        """A key not matching its certificate may be a renewal half written: read everything once more, a bit later."""
        failure.trap(KeyMismatch)
        self._log.warn(
            "configuration reload: {problem}; reading the files again in {delay:g} s",
            problem=str(failure.value),
            delay=self._retry_delay,
        )
        return deferLater(self._reactor, self._retry_delay, self._in_thread)

    def _refused(self, failure: Failure) -> None:
        if failure.check(ConfigError):
            self._log.error(
                "configuration reload refused: configuration error in {path}: {problem};"
                " the running configuration stays",
                path=self.path,
                problem=str(failure.value),
            )
        else:
            self._log.failure("configuration reload failed; the running configuration stays", failure)

    def _apply(self, prepared: _Prepared) -> ConfigChanges | None:
        """On the reactor: swap the checked configuration in."""
        new, changes = prepared.config, prepared.changes
        if not self._notifier.running:
            self._log.info("configuration reload ignored: the daemon is shutting down")
            if prepared.built is not None:
                for close in prepared.built.closers:
                    close()
            return None
        # The new level first, and what was applied at warn: at log_level warn a reload
        # that changed something must still leave a line saying so.
        set_log_level(new.log_level)
        (self._log.warn if changes.live else self._log.info)(
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
        names = station_names(*prepared.names)
        urls = None
        if prepared.routing is not None:
            urls = {name: upstream.url for name, upstream in prepared.routing.upstreams.items()}
        if prepared.built is not None:
            built = prepared.built
            self._notifier.reconfigure(
                new.notify, names, built.channels, built.closers, built.starters, upstream_urls=urls
            )
        else:
            self._notifier.reconfigure(new.notify, names, upstream_urls=urls)
        if prepared.tls is not None:
            self._tls.swap(prepared.tls)
            if self._tls_swapped is not None:
                self._tls_swapped()
        if prepared.routing is not None:
            # After the TLS swap: a re-linked upstream connects with its new files.
            self._reroute(prepared.routing)
        self.running = replace(self.running, **_live_values(self.running, new))
        return changes

    def _finished(self, result: ConfigChanges | None) -> ConfigChanges | None:
        self._busy = False
        waiting, self._waiting = self._waiting, []
        if waiting:
            again = self._run()

            def tell(outcome: ConfigChanges | None) -> None:
                for each in waiting:
                    each.callback(outcome)

            again.addCallback(tell)
        return result
