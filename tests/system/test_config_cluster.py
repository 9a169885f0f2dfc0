"""The optional C{cluster} section: defaults, what it refuses, and its place in the example file."""

from __future__ import annotations

import os
import socket

import yaml
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import ConfigError
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.config.cluster import CLUSTER_KEYS, listen_port

PRIMARY = "ws://127.0.0.1:9/ocpp/"
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "etc", "ocppproxy.yaml")


def load(cluster, **top):
    return config_from_mapping({"primary_url": PRIMARY, "cluster": cluster, **top})


class ClusterConfigTests(SynchronousTestCase):
    def error(self, cluster, **top) -> ConfigError:
        with self.assertRaises(ConfigError) as caught:
            load(cluster, **top)
        return caught.exception

    def test_off_without_the_section(self):
        """No cluster section: no cluster mode, nothing about Redis."""
        self.assertIsNone(config_from_mapping({"primary_url": PRIMARY}).cluster)

    def test_defaults(self):
        """Only redis_url: the instance is <hostname>:<listen port>, claims live 30 s."""
        config = load({"redis_url": "redis://127.0.0.1:6379/0"}, listen="tcp:port=9001:interface=0.0.0.0")
        self.assertEqual(config.cluster.instance, f"{socket.gethostname()}:9001")
        self.assertEqual(config.cluster.ownership_ttl, 30)
        self.assertEqual(config.cluster.redis_url, "redis://127.0.0.1:6379/0")

    def test_every_scheme(self):
        """redis://, rediss:// and unix:///path are accepted, with the instance and ttl given."""
        for url in ("redis://:pw@redis.example:6380/2", "rediss://redis.example", "unix:///run/redis/redis.sock"):
            config = load({"redis_url": url, "instance": "proxy-a", "ownership_ttl": 10})
            self.assertEqual((config.cluster.redis_url, config.cluster.instance), (url, "proxy-a"))
            self.assertEqual(config.cluster.ownership_ttl, 10)

    def test_redis_url_is_mandatory(self):
        self.assertEqual(str(self.error({"instance": "a"})), "cluster.redis_url: is mandatory in a cluster section")

    def test_bad_redis_urls_named_never_quoted(self):
        """A bad redis_url is refused with the key; the text never repeats the URL (it may hold a password)."""
        for url in ("http://:s3cret@host/", "redis://:s3cret@/0", "redis://:s3cret@host:x/", "unix://relative.sock"):
            error = self.error({"redis_url": url})
            self.assertEqual(error.key, "cluster.redis_url")
            self.assertNotIn("s3cret", str(error))
        self.assertIn("database number", str(self.error({"redis_url": "redis://host/zero"})))

    def test_unknown_key(self):
        self.assertEqual(self.error({"redis_url": "redis://h", "ttl": 3}).key, "cluster.ttl")

    def test_bad_instance_and_ttl(self):
        self.assertEqual(self.error({"redis_url": "redis://h", "instance": "a b"}).key, "cluster.instance")
        self.assertEqual(self.error({"redis_url": "redis://h", "instance": ""}).key, "cluster.instance")
        for ttl in (2, 2.5, True, "30"):
            self.assertEqual(self.error({"redis_url": "redis://h", "ownership_ttl": ttl}).key, "cluster.ownership_ttl")

    def test_not_a_mapping(self):
        self.assertEqual(str(self.error("redis://h")), "cluster: must be a mapping, got a string")

    def test_listen_port(self):
        """The port of the default instance name, from the listen endpoint string."""
        self.assertEqual(listen_port("tcp:port=9000:interface=0.0.0.0:backlog=1024"), 9000)
        self.assertEqual(listen_port("tcp:9000"), 9000)
        self.assertEqual(listen_port("ssl:port=443:privateKey=k.pem"), 443)
        self.assertIsNone(listen_port("systemd:domain=INET:index=0"))

    def test_example_shows_every_key_and_is_valid(self):
        """etc/ocppproxy.yaml shows the cluster section, commented out; switched on, it loads."""
        with open(EXAMPLE, encoding="utf-8") as stream:
            text = stream.read()
        block = text[text.index("# cluster:") :].split("\n\n")[0]
        for key in CLUSTER_KEYS:
            self.assertRegex(block, rf"(?m)^#   {key}:", key)
        raw = yaml.safe_load("\n".join(line[2:] for line in block.splitlines()))
        config = config_from_mapping({"primary_url": PRIMARY, **raw})
        self.assertEqual(config.cluster.instance, "proxy-a")
