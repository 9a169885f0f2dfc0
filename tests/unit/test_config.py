"""The YAML configuration: the example in etc/ and errors naming the key (the schema: test_config_schema)."""

from __future__ import annotations

import os

import yaml
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.load import load_config
from ocppproxy.config.model import ConfigError
from ocppproxy.config.parse import config_from_mapping

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "etc", "ocppproxy.yaml")
PRIMARY = "ws://127.0.0.1:9001/ocpp/"


def _notify_section(text: str) -> str:
    """The example's commented-out notify section, switched on."""
    block = text[text.index("# notify:") :].splitlines()
    return "\n".join(line[2:] if line.startswith("# ") else "" for line in block)


class ExampleFileTests(SynchronousTestCase):
    """etc/ocppproxy.yaml is a working, complete example."""

    def setUp(self):
        with open(EXAMPLE, encoding="utf-8") as stream:
            self.text = stream.read()

    def test_loads(self):
        """The example loads as shipped, with the defaults it shows."""
        config = load_config(EXAMPLE)
        self.assertEqual(config.primary_url, PRIMARY)
        self.assertEqual(config.pending_call_timeout, 40)
        self.assertEqual((config.keepalive_interval, config.keepalive_timeout), (30, 10))
        self.assertFalse(config.failover)

    def test_commented_notify_section_is_valid(self):
        """The commented-out notify section, switched on, is a valid configuration."""
        raw = yaml.safe_load(_notify_section(self.text))
        config = config_from_mapping({"primary_url": PRIMARY, **raw}, os.path.dirname(EXAMPLE))
        # Only the placeholders ("...") for the Pushover keys are refused.
        self.assertEqual([channel for channel, _ in config.notify.channel_problems], ["pushover"])
        self.assertEqual(config.notify.summary_window, 10)
        self.assertIn("cp_status_faulted", config.notify.events)
        self.assertEqual(config.notify.email.smtp.port, 587)
        self.assertEqual(config.notify.webhook.headers, (("Authorization", "Bearer ..."),))
        self.assertEqual(len(config.notify.apprise.urls), 2)


class ErrorTests(SynchronousTestCase):
    """A bad configuration is refused with the key and the reason."""

    def error(self, raw):
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping(raw)
        return caught.exception

    def test_missing_primary(self):
        self.assertEqual(self.error({}).key, "primary_url")

    def test_not_websocket(self):
        error = self.error({"primary_url": "http://example.com/"})
        self.assertEqual((error.key, error.reason), ("primary_url", "must be a ws:// or wss:// URL, got 'http://example.com/'"))

    def test_unknown_key(self):
        error = self.error({"primary_url": PRIMARY, "reconect": {}})
        self.assertEqual(error.key, "reconect")
        self.assertIn("unknown key", error.reason)

    def test_nested_wrong_type(self):
        error = self.error({"primary_url": PRIMARY, "reconnect": {"max_attempts": "ten"}})
        self.assertEqual(str(error), "reconnect.max_attempts: must be a whole number, got 'ten'")

    def test_keepalive_below_one_second(self):
        error = self.error({"primary_url": PRIMARY, "keepalive": {"interval": 0.5}})
        self.assertEqual(error.key, "keepalive.interval")

    def test_call_policy(self):
        config = config_from_mapping({"primary_url": PRIMARY, "upstream_calls": {"secondary": ["GetConfiguration"]}})
        self.assertEqual(config.upstream_calls, {"secondary": frozenset({"GetConfiguration"})})
        error = self.error({"primary_url": PRIMARY, "upstream_calls": {"secondary": "some"}})
        self.assertEqual(error.key, "upstream_calls.secondary")

    def test_defaults(self):
        config = config_from_mapping({"primary_url": PRIMARY})
        self.assertEqual(
            (config.listen, config.log_level, config.buffer_max_messages, config.handshake_timeout),
            ("tcp:port=9000:interface=0.0.0.0:backlog=1024", "info", 1000, 10.0),
        )
        self.assertEqual((config.reconnect.initial_delay, config.reconnect.max_attempts), (5.0, 10))


class StatusAndTrafficLogTests(SynchronousTestCase):
    """The status page and the traffic log are off by default and need their one key when on."""

    def error(self, raw):
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping({"primary_url": PRIMARY, **raw})
        return caught.exception

    def test_off_by_default(self):
        config = config_from_mapping({"primary_url": PRIMARY})
        self.assertIsNone(config.status_listen)
        self.assertIsNone(config.traffic_log_directory)

    def test_status_listen(self):
        config = config_from_mapping({"primary_url": PRIMARY, "status": {"listen": "tcp:port=9100:interface=127.0.0.1"}})
        self.assertEqual(config.status_listen, "tcp:port=9100:interface=127.0.0.1")

    def test_status_needs_listen(self):
        self.assertEqual(str(self.error({"status": {}})), "status.listen: is mandatory in a status section")

    def test_status_unknown_key(self):
        self.assertEqual(self.error({"status": {"port": 9100}}).key, "status.port")

    def test_traffic_log_directory_relative_to_config(self):
        base = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(base, "traffic"))
        config = config_from_mapping({"primary_url": PRIMARY, "traffic_log": {"directory": "traffic"}}, base)
        self.assertEqual(config.traffic_log_directory, os.path.join(base, "traffic"))
        self.assertEqual(config.traffic_log_max_pending, 10000)

    def test_traffic_log_directory_must_exist(self):
        error = self.error({"traffic_log": {"directory": "/nonexistent/ocppproxy-traffic"}})
        self.assertEqual(str(error), "traffic_log.directory: no such directory: /nonexistent/ocppproxy-traffic")

    def test_traffic_log_max_pending(self):
        error = self.error({"traffic_log": {"directory": "/", "max_pending": 0}})
        self.assertEqual(str(error), "traffic_log.max_pending: must be at least 1, got 0")


class RedactTests(SynchronousTestCase):
    """The top-level redact list: payload keys masked wherever a frame is shown."""

    def error(self, raw):
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping({"primary_url": PRIMARY, **raw})
        return caught.exception

    def test_empty_by_default(self):
        """Without redact (or with an empty or null one), no key beyond the credentials is masked."""
        for raw in ({}, {"redact": []}, {"redact": None}):
            self.assertEqual(config_from_mapping({"primary_url": PRIMARY, **raw}).redact, ())

    def test_keys_in_order_once(self):
        """The keys are kept as given, a repeated one once."""
        config = config_from_mapping({"primary_url": PRIMARY, "redact": ["idTag", "idToken", "idTag"]})
        self.assertEqual(config.redact, ("idTag", "idToken"))

    def test_not_a_list(self):
        """A single key name, not in a list, is refused naming the key."""
        self.assertEqual(str(self.error({"redact": "idTag"})), "redact: must be a list of payload key names, got 'idTag'")

    def test_bad_entry(self):
        """An entry that is not a non-empty string is named by its position."""
        self.assertEqual(str(self.error({"redact": ["idTag", ""]})), "redact[1]: must be a non-empty key name, got ''")
        self.assertEqual(self.error({"redact": [{"a": 1}]}).key, "redact[0]")
