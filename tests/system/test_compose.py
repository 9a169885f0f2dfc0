"""
compose.yaml and compose.cluster.yaml agree with what they run: the ports, files and
names in the compose files, the container configurations and HAProxy's configuration
are the same ones. (make container-test runs the image itself.)
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import yaml
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ocppproxy.config.cluster import listen_port
from ocppproxy.config.load import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_DIR = os.path.join(ROOT, "etc", "container", "cluster")


def read_yaml(*path: str):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def mounted(service: dict, target: str) -> str:
    """The repository file a service mounts at C{target} (relative to the compose file)."""
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return os.path.normpath(os.path.join(ROOT, source))
    raise AssertionError(f"nothing mounted at {target}")


class SingleComposeTests(SynchronousTestCase):
    def test_ports_are_those_of_the_default_configuration(self) -> None:
        """compose.yaml publishes the ports the image's default configuration listens on."""
        (service,) = read_yaml("compose.yaml")["services"].values()
        config = load_config(os.path.join(ROOT, "etc", "container", "ocppproxy.yaml"))
        published = {int(port.rsplit(":", 1)[1]) for port in service["ports"]}
        self.assertEqual(published, {listen_port(config.listen), listen_port(config.status_listen)})
        self.assertIn("127.0.0.1:9100:9100", service["ports"])  # the status page: this host only
        self.assertEqual(service["volumes"], ["config:/config"])


class ClusterComposeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.compose = read_yaml("compose.cluster.yaml")
        self.services = self.compose["services"]
        self.instances = {name: service for name, service in self.services.items() if name.startswith("proxy-")}
        with open(os.path.join(CLUSTER_DIR, "haproxy.cfg"), encoding="utf-8") as stream:
            self.haproxy = stream.read()

    def test_three_instances_one_configuration_distinct_names(self) -> None:
        """Three instances share one configuration; their host names (and so instance names) differ."""
        self.assertEqual(len(self.instances), 3)
        configs = {mounted(service, "/config/ocppproxy.yaml") for service in self.instances.values()}
        self.assertEqual(configs, {os.path.join(CLUSTER_DIR, "ocppproxy.yaml")})
        self.assertEqual({service["hostname"] for service in self.instances.values()}, set(self.instances))
        config = load_config(os.path.join(CLUSTER_DIR, "ocppproxy.yaml"))
        self.assertNotIn("instance", read_yaml("etc", "container", "cluster", "ocppproxy.yaml")["cluster"])
        self.assertIsNotNone(config.cluster)

    def test_redis_is_the_compose_service(self) -> None:
        """The instances' redis_url names the redis service."""
        config = load_config(os.path.join(CLUSTER_DIR, "ocppproxy.yaml"))
        self.assertIn(urlsplit(config.cluster.redis_url).hostname, self.services)
        self.assertIn("redis-server", self.services["redis"]["command"])

    def test_redis_keeps_what_it_acknowledged(self) -> None:
        """Redis runs with the settings the docs name for the outbox: append-only file, fsync policy, no eviction, a volume."""
        command = self.services["redis"]["command"]
        settings = dict(zip(command[1::2], command[2::2]))
        self.assertEqual(settings["--appendonly"], "yes")
        self.assertIn(settings["--appendfsync"], ("everysec", "always"))
        self.assertEqual(settings["--maxmemory-policy"], "noeviction")
        self.assertEqual(self.services["redis"]["volumes"], ["redis:/data"])
        self.assertIn("redis", self.compose["volumes"])

    def test_haproxy_is_a_trusted_proxy(self) -> None:
        """The network's subnet is a trusted proxy: HAProxy's X-Forwarded-For believed, its stations not one address."""
        (subnet,) = [pool["subnet"] for pool in self.compose["networks"]["cluster"]["ipam"]["config"]]
        config = load_config(os.path.join(CLUSTER_DIR, "ocppproxy.yaml"))
        self.assertIn(ipaddress.ip_network(subnet), config.trusted_proxies)

    def test_haproxy_routes_to_the_instances_ports(self) -> None:
        """HAProxy's servers are the instances, on their listen port, checked on their status port."""
        config = load_config(os.path.join(CLUSTER_DIR, "ocppproxy.yaml"))
        servers = dict(re.findall(r"^\s*server (\S+) (\S+)$", self.haproxy, re.MULTILINE))
        self.assertEqual(servers, {name: f"{name}:{listen_port(config.listen)}" for name in self.instances})
        self.assertIn(f"port {listen_port(config.status_listen)}", self.haproxy)
        self.assertIn("option httpchk GET /health", self.haproxy)
        self.assertIn("balance hash path,field(-1,/)", self.haproxy)
        self.assertEqual(
            mounted(self.services["haproxy"], "/usr/local/etc/haproxy/haproxy.cfg"),
            os.path.join(CLUSTER_DIR, "haproxy.cfg"),
        )
        bind = re.search(r"^\s*bind :(\d+)$", self.haproxy, re.MULTILINE).group(1)
        self.assertEqual(self.services["haproxy"]["ports"], [f"{bind}:{bind}"])

    def test_haproxy_accepts_the_file(self) -> None:
        """haproxy -c: the file is valid for HAProxy 2.6 (the instances' names need not resolve here)."""
        if shutil.which("haproxy") is None:
            raise SkipTest("haproxy is not installed (Debian: apt-get install haproxy)")
        checked = subprocess.run(
            ["haproxy", "-c", "-f", os.path.join(CLUSTER_DIR, "haproxy.cfg")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual(checked.returncode, 0, checked.stderr)
