"""The C{outbox} section and C{upstreams.NAME.outbox}: off by default, a directory that exists, bounds."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ConfigError, OutboxConfig
from ocppproxy.config.parse import config_from_mapping

PRIMARY = "ws://127.0.0.1:9/ocpp/"


class OutboxConfigTests(SynchronousTestCase):
    """Without the section nothing changes; with it, C{directory} is mandatory and must exist."""

    def error(self, raw):
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping({"primary_url": PRIMARY, **raw})
        return caught.exception

    def test_off_by_default(self):
        self.assertIsNone(config_from_mapping({"primary_url": PRIMARY}).outbox)

    def test_directory_relative_to_config_and_defaults(self):
        base = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(base, "outbox"))
        config = config_from_mapping({"primary_url": PRIMARY, "outbox": {"directory": "outbox"}}, base)
        self.assertEqual(config.outbox, OutboxConfig(os.path.join(base, "outbox"), 1073741824, 604800.0))

    def test_bounds(self):
        config = config_from_mapping({"primary_url": PRIMARY, "outbox": {"directory": "/", "max_bytes": 100000,
                                                                          "max_age": 3600}})
        self.assertEqual((config.outbox.max_bytes, config.outbox.max_age), (100000, 3600))
        self.assertEqual(self.error({"outbox": {"directory": "/", "max_bytes": 10}}).key, "outbox.max_bytes")
        self.assertEqual(self.error({"outbox": {"directory": "/", "max_age": 0}}).key, "outbox.max_age")

    def test_directory_mandatory_and_existing(self):
        self.assertEqual(str(self.error({"outbox": {}})), "outbox.directory: is mandatory in an outbox section")
        error = self.error({"outbox": {"directory": "/nonexistent/ocppproxy-outbox"}})
        self.assertEqual(str(error), "outbox.directory: no such directory: /nonexistent/ocppproxy-outbox")

    def test_directory_mandatory_in_cluster_mode_says_why(self):
        """In cluster mode the outbox lives in Redis, and the directory takes the entries while Redis is away."""
        error = self.error({"outbox": {}, "cluster": {"redis_url": "redis://127.0.0.1:6379/0", "instance": "a"}})
        self.assertEqual(
            str(error), "outbox.directory: is mandatory in cluster mode too (entries go there while Redis is away)"
        )

    def test_unknown_key(self):
        self.assertEqual(self.error({"outbox": {"directory": "/", "fsync": True}}).key, "outbox.fsync")

    def test_upstream_opt_out(self):
        config = config_from_mapping({
            "upstreams": {"a": {"url": PRIMARY}, "feed": {"url": PRIMARY, "outbox": False}},
            "routes": [{"stations": ["*"], "primary": "a", "mirrors": ["feed"]}],
        })
        self.assertTrue(config.upstreams["a"].outbox)
        self.assertFalse(config.upstreams["feed"].outbox)
        with self.assertRaises(ConfigError) as caught:
            config_from_mapping({"upstreams": {"a": {"url": PRIMARY, "outbox": "no"}},
                                 "routes": [{"stations": ["*"], "primary": "a"}]})
        self.assertEqual(str(caught.exception), "upstreams.a.outbox: must be true or false, got 'no'")
