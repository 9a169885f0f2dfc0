"""Configuration reload: which changes apply live, and what a reload does to the running notifier."""

from __future__ import annotations

import os

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.load import load_config
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.daemon.reload import ConfigChanges, Reloader, compare_configs
from ocppproxy.logs import debug_enabled, set_log_level
from ocppproxy.notify.names import StationNames
from ocppproxy.notify.service import NotifierService

BASE = {"primary_url": "ws://csms.example/ocpp/"}
SMTP_PASSWORD = "s3cret-smtp-pa55"


def config(**settings):
    return config_from_mapping({**BASE, **settings})


class CompareConfigsTests(SynchronousTestCase):
    def test_same_config_has_no_change(self):
        """Two identical configurations differ in nothing."""
        self.assertEqual(compare_configs(config(), config()), ConfigChanges())

    def test_live_settings(self):
        """log_level, client_names and every notify key are live changes, named by their keys."""
        new = config(
            log_level="debug",
            client_names="names.yaml",
            notify={"events": {"station_boot": True}, "flap_window": 5, "log": True},
        )
        changes = compare_configs(config(), new)
        self.assertEqual(
            changes.live, ("log_level", "client_names", "notify.events", "notify.log", "notify.flap_window")
        )
        self.assertEqual(changes.restart, ())

    def test_restart_settings(self):
        """listen, the upstream URLs and the connection settings need a restart, named as in the file."""
        new = config(
            listen="tcp:port=9100",
            primary_url="ws://other.example/ocpp/",
            secondary_url="ws://second.example/",
            reconnect={"max_attempts": 3},
            buffer={"max_messages": 10},
            keepalive={"interval": 0, "timeout": 5},
            upstream_calls={"secondary": "none"},
            failover=True,
            default_subprotocol="ocpp2.0.1",
            handshake_timeout=3,
            max_frame_size=4096,
            pending_call_timeout=20,
        )
        changes = compare_configs(config(), new)
        self.assertEqual(changes.live, ())
        self.assertEqual(
            changes.restart,
            (
                "primary_url",
                "secondary_url",
                "listen",
                "reconnect.max_attempts",
                "buffer.max_messages",
                "failover",
                "default_subprotocol",
                "handshake_timeout",
                "max_frame_size",
                "keepalive.interval",
                "keepalive.timeout",
                "pending_call_timeout",
                "upstream_calls.secondary",
            ),
        )

    def test_files_need_a_restart(self):
        """state_file is read at start-up only; ca_file is re-read by a reload."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "ca.pem"), "w") as out:
            out.write("read at start-up only\n")
        new = config_from_mapping({**BASE, "ca_file": "ca.pem", "state_file": "state.json"}, directory)
        changes = compare_configs(config(), new)
        self.assertEqual((changes.live, changes.restart), (("ca_file",), ("state_file",)))

    def test_status_and_traffic_log_named_as_in_the_file(self):
        """
        status.listen and the traffic_log keys are named as the file names them (the
        schema's names): before the schema, the warning said status_listen and
        traffic_log_directory, which are no keys of the file.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        new = config_from_mapping(
            {**BASE, "status": {"listen": "tcp:9100"}, "traffic_log": {"directory": ".", "max_pending": 5}}, directory
        )
        changes = compare_configs(config(), new)
        self.assertEqual(
            changes.restart, ("status.listen", "traffic_log.directory", "traffic_log.max_pending")
        )

    def test_every_config_field_has_a_reload_rule(self):
        """Each field of Config comes from one declared key, which says whether a reload applies it."""
        from dataclasses import fields

        from ocppproxy.config.model import Config
        from ocppproxy.config.schema import config_fields

        self.assertEqual(sorted(config_fields()), sorted(field.name for field in fields(Config)))

    def test_broken_channel_is_named(self):
        """A channel switched off by a mistake in its section counts as a change to that channel."""
        new = config(notify={"email": {"from": "a@example.com"}})
        self.assertEqual(compare_configs(config(), new).live, ("notify.email",))

    def test_secret_change_names_only_the_channel(self):
        """A changed SMTP password is named as notify.email, never quoted."""
        email = {"from": "a@example.com", "to": "b@example.com", "smtp": {"host": "h", "username": "u"}}
        old = config(notify={"email": {**email, "smtp": {**email["smtp"], "password": "old"}}})
        new = config(notify={"email": {**email, "smtp": {**email["smtp"], "password": SMTP_PASSWORD}}})
        changes = compare_configs(old, new)
        self.assertEqual(changes.live, ("notify.email",))
        self.assertNotIn(SMTP_PASSWORD, repr(changes))


class ThreadClock(Clock):
    """A Clock that is also a reactor's thread interface: calls "from a thread" run at once."""

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class InlineThreads:
    """A thread pool stand-in that runs each call at once (or holds it, when C{hold} is set)."""

    def __init__(self):
        self.hold = False
        self.held = []

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        if self.hold:
            self.held.append(lambda: self._run(on_result, f, args, kwargs))
        else:
            self._run(on_result, f, args, kwargs)

    @staticmethod
    def _run(on_result, f, args, kwargs):
        try:
            result = f(*args, **kwargs)
        except BaseException:
            from twisted.python.failure import Failure

            on_result(False, Failure())
        else:
            on_result(True, result)


class ReloaderTests(SynchronousTestCase):
    """A Reloader on a real file and a NotifierService driven by a Clock."""

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "ocppproxy.yaml")
        self.write_names({"CP_1": "Depot Nord"})
        self.write(
            'primary_url: "ws://csms.example/ocpp/"\n'
            "client_names: names.yaml\n"
            "notify: {events: {connected_to_proxy: true}, flap_window: 0}\n"
        )
        self.clock = ThreadClock()
        self.threads = InlineThreads()
        self.alerts = []
        running = load_config(self.path)
        self.notifier = NotifierService(
            running.notify,
            StationNames({"CP_1": "Depot Nord"}),
            self.clock,
            {"test": self.channel},
            running.upstream_urls(),
            links_connected=lambda upstream: 0,
        )
        self.notifier.startService()
        self.reloader = Reloader(self.path, running, self.notifier, self.clock, threads=self.threads)
        self.addCleanup(set_log_level, "info")
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def channel(self, alert):
        self.alerts.append(alert)
        return succeed(None)

    def write(self, text):
        with open(self.path, "w") as out:
            out.write(text)

    def write_names(self, names):
        with open(os.path.join(self.directory, "names.yaml"), "w") as out:
            out.writelines(f'{key}: "{value}"\n' for key, value in names.items())

    def lines(self, level):
        return [formatEvent(event) for event in self.events if event.get("log_level") == level]

    def test_live_settings_applied(self):
        """A reload switches events, names and the log level at once; stations stay known."""
        self.notifier.station_connected("CP_1", "peer")
        self.write_names({"CP_2": "Depot Sud"})
        self.write(
            'primary_url: "ws://csms.example/ocpp/"\n'
            "log_level: debug\n"
            "client_names: names.yaml\n"
            "notify: {events: {disconnected_from_proxy: true}, flap_window: 0}\n"
        )
        changes = self.successResultOf(self.reloader.reload())
        self.assertEqual(changes.live, ("log_level", "notify.events"))
        self.assertTrue(debug_enabled())
        self.notifier.station_connected("CP_2", "peer")
        self.notifier.station_disconnected("CP_1", 1006, "lost")
        self.notifier.station_disconnected("CP_2", 1006, "lost")
        self.assertEqual([alert.key for alert in self.alerts], ["connected_to_proxy"] + ["disconnected_from_proxy"] * 2)
        self.assertIn("Depot Sud", self.alerts[2].subject)
        self.assertNotIn("Depot Nord", self.alerts[1].subject)
        # At warn (issue 21): a reload that applied something leaves a line at log_level warn.
        (line,) = [line for line in self.lines(LogLevel.warn) if "configuration reloaded" in line]
        self.assertIn("log_level, notify.events applied", line)

    def test_restart_keys_named_and_kept(self):
        """A change needing a restart is named in one warning, not applied, and named again at the next reload."""
        self.write('primary_url: "ws://other.example/ocpp/"\nlisten: "tcp:port=9100"\nclient_names: names.yaml\n')
        self.successResultOf(self.reloader.reload())
        self.successResultOf(self.reloader.reload())
        warnings = [line for line in self.lines(LogLevel.warn) if "applied only after a restart" in line]
        self.assertEqual(len(warnings), 2)
        self.assertIn("primary_url, listen changed; applied only after a restart", warnings[0])
        self.assertEqual(self.reloader.running.primary_url, "ws://csms.example/ocpp/")
        self.assertEqual(self.reloader.running.notify.events, frozenset())

    def test_broken_file_refused_with_one_line(self):
        """A broken file is refused with the start-up error text in one error line; nothing changes."""
        self.write('primary_url: "http://csms.example/"\nlog_level: debug\n')
        self.assertIsNone(self.successResultOf(self.reloader.reload()))
        (line,) = self.lines(LogLevel.error)
        self.assertIn(f"configuration error in {self.path}: primary_url: must be a ws:// or wss:// URL", line)
        self.assertNotIn("\n", line)
        self.assertFalse(debug_enabled())
        self.notifier.station_connected("CP_1", "peer")
        self.assertEqual([alert.key for alert in self.alerts], ["connected_to_proxy"])

    def test_missing_file_refused(self):
        """A configuration file that vanished is refused the same way."""
        os.remove(self.path)
        self.assertIsNone(self.successResultOf(self.reloader.reload()))
        (line,) = self.lines(LogLevel.error)
        self.assertIn("cannot read config file", line)

    def test_ignored_during_shutdown(self):
        """A SIGHUP while the daemon shuts down changes nothing: the notifier's queues are already flushing."""
        self.write('primary_url: "ws://csms.example/ocpp/"\nlog_level: debug\n')
        self.successResultOf(self.notifier.stopService())
        self.assertIsNone(self.successResultOf(self.reloader.reload()))
        self.assertFalse(debug_enabled())
        self.assertIn("test", self.notifier.queues)

    def test_unchanged_channels_keep_their_queue(self):
        """Changing only events keeps the delivery queues (and what they hold)."""
        queue = self.notifier.queues["test"]
        self.write('primary_url: "ws://csms.example/ocpp/"\nclient_names: names.yaml\nnotify: {flap_window: 0}\n')
        self.successResultOf(self.reloader.reload())
        self.assertIs(self.notifier.queues["test"], queue)

    def test_new_channel_built_and_secrets_not_logged(self):
        """A new e-mail section builds the e-mail channel; its password appears in no log event."""
        self.write(
            'primary_url: "ws://csms.example/ocpp/"\n'
            "notify:\n"
            "  events: {connected_to_proxy: true}\n"
            "  email: {from: a@example.com, to: b@example.com,\n"
            f"          smtp: {{host: 127.0.0.1, port: 1, tls: none, username: u, password: {SMTP_PASSWORD}}}}}\n"
        )
        self.successResultOf(self.reloader.reload())
        self.assertEqual(sorted(self.notifier.queues), ["email"])
        self.assertNotIn(SMTP_PASSWORD, repr(self.events))
        self.successResultOf(self.notifier.stopService())

    def test_webhook_built_and_its_header_not_logged(self):
        """A new webhook section builds the webhook channel; its header value and URL path appear in no log event."""
        self.write(
            'primary_url: "ws://csms.example/ocpp/"\n'
            "client_names: names.yaml\n"
            "notify:\n"
            "  events: {connected_to_proxy: true}\n"
            "  flap_window: 0\n"
            "  webhook: {url: 'https://hooks.example.com/h/xoxb-path-secret',\n"
            "            headers: {Authorization: 'Bearer hook-t0ken-77'}}\n"
        )
        self.assertEqual(self.successResultOf(self.reloader.reload()).live, ("notify.webhook",))
        self.assertEqual(sorted(self.notifier.queues), ["webhook"])
        self.assertNotIn("hook-t0ken-77", repr(self.events))
        self.assertNotIn("xoxb-path-secret", repr(self.events))
        self.successResultOf(self.notifier.stopService())

    def test_delivery_timeout_change_gives_queues_with_the_new_deadline(self):
        """A new notify.delivery_timeout alone rebuilds the channels: the new queue's attempts have the new deadline."""
        hook = (
            'primary_url: "ws://csms.example/ocpp/"\n'
            "notify:\n"
            "  events: {connected_to_proxy: true}\n"
            "  webhook: {url: 'https://hooks.example.com/h'}\n"
        )
        self.write(hook)
        self.successResultOf(self.reloader.reload())
        first = self.notifier.queues["webhook"]
        self.assertEqual(first.deadline, 30.0)
        self.write(hook + "  delivery_timeout: 7\n")
        self.assertEqual(self.successResultOf(self.reloader.reload()).live, ("notify.delivery_timeout",))
        self.assertIsNot(self.notifier.queues["webhook"], first)
        self.assertEqual(self.notifier.queues["webhook"].deadline, 7.0)
        self.successResultOf(self.notifier.stopService())

    def test_file_read_in_the_thread_pool(self):
        """Nothing is read on the reactor: until the pool runs the work, the running settings stay."""
        self.threads.hold = True
        self.write('primary_url: "ws://csms.example/ocpp/"\nlog_level: debug\n')
        reloaded = self.reloader.reload()
        self.assertNoResult(reloaded)
        self.assertFalse(debug_enabled())
        (work,) = self.threads.held
        work()
        changes = self.successResultOf(reloaded)
        self.assertEqual(changes.live, ("log_level", "client_names", "notify.events", "notify.flap_window"))
        self.assertTrue(debug_enabled())

    def test_sighups_during_a_reload_make_one_more(self):
        """Reloads asked for while one runs wait for it, then make one reload together; never two at once."""
        self.threads.hold = True
        loads = []

        def load(path):
            loads.append(path)
            return load_config(path)

        self.reloader._load = load
        first = self.reloader.reload()
        second, third = self.reloader.reload(), self.reloader.reload()
        self.assertEqual(len(self.threads.held), 1)
        self.threads.held.pop()()
        self.assertEqual(self.successResultOf(first).live, ())
        self.assertNoResult(second)
        self.assertEqual(len(self.threads.held), 1)
        self.write('primary_url: "ws://csms.example/ocpp/"\nlog_level: debug\n')
        self.threads.held.pop()()
        self.assertEqual(len(loads), 2)
        changes = self.successResultOf(second)
        self.assertEqual(changes.live, ("log_level", "client_names", "notify.events", "notify.flap_window"))
        self.assertIs(self.successResultOf(third), changes)
        self.assertEqual(self.threads.held, [])

    def test_shutdown_while_reading(self):
        """A reload whose file was read after shutdown began changes nothing."""
        self.threads.hold = True
        self.write('primary_url: "ws://csms.example/ocpp/"\nlog_level: debug\n')
        reloaded = self.reloader.reload()
        self.successResultOf(self.notifier.stopService())
        self.threads.held.pop()()
        self.assertIsNone(self.successResultOf(reloaded))
        self.assertFalse(debug_enabled())


class RoutingReloadTests(SynchronousTestCase):
    """Under upstreams, a reload builds the new routing in the reload's thread and hands it to the proxy."""

    ROUTED = (
        "upstreams:\n"
        '  a: {url: "ws://a.example/ocpp/"}\n'
        '  b: {url: "ws://b.example/ocpp/"}\n'
        "routes:\n"
        "  - {stations: [%s], primary: %s}\n"
    )

    def setUp(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.path = os.path.join(directory, "ocppproxy.yaml")
        self.write(self.ROUTED % ('"*"', "a"))
        self.clock = ThreadClock()
        self.threads = InlineThreads()
        running = load_config(self.path)
        self.notifier = NotifierService(
            running.notify, StationNames({}), self.clock, {}, running.upstream_urls(), links_connected=lambda _: 0
        )
        self.notifier.startService()
        self.rerouted = []
        self.reloader = Reloader(
            self.path, running, self.notifier, self.clock, threads=self.threads, reroute=self.rerouted.append
        )

    def write(self, text):
        with open(self.path, "w") as out:
            out.write(text)

    def test_changed_routes_rerouted(self):
        """A changed route is live: the proxy gets the routing built from the new file."""
        self.write(self.ROUTED % ('"CP_1", "*"', "b"))
        changes = self.successResultOf(self.reloader.reload())
        self.assertEqual(changes.live, ("routes",))
        (routing,) = self.rerouted
        self.assertEqual(routing.route("CP_9").primary, "b")
        self.assertEqual(self.reloader.running.routes[0].primary, "b")

    def test_unchanged_routes_not_rerouted(self):
        """A reload that changes no routing key leaves the proxy's routing alone."""
        self.write(self.ROUTED % ('"*"', "a") + "log_level: debug\n")
        self.addCleanup(set_log_level, "info")
        self.successResultOf(self.reloader.reload())
        self.assertEqual(self.rerouted, [])

    def test_switch_to_legacy_keys_needs_a_restart(self):
        """Switching between upstreams and the legacy keys waits for a restart."""
        self.write('primary_url: "ws://a.example/ocpp/"\n')
        changes = self.successResultOf(self.reloader.reload())
        self.assertIn("upstreams.a", changes.restart)
        self.assertIn("primary_url", changes.restart)
        self.assertEqual(self.rerouted, [])
