"""What the status endpoint says in cluster mode: /health degraded while Redis is away, the Redis metric."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import generate_latest
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.relay.proxy import ProxyService
from ocppproxy.status.activity import StationActivity
from ocppproxy.status.health import HealthResource
from ocppproxy.status.metrics import ProxyCollector, metrics_registry
from ocppproxy.status.snapshot import metrics_snapshot


def proxy(ownership) -> ProxyService:
    """A real proxy service, not started, accepting, with C{ownership} as its cluster hook."""
    service = ProxyService(config_from_mapping({"primary_url": "ws://127.0.0.1:9/ocpp/"}), Clock())
    service.accepting = True
    service.ownership = ownership
    return service


class ClusterHealthTests(SynchronousTestCase):
    def health(self, ownership) -> tuple[int, bytes]:
        request = DummyRequest([b""])
        request.write(HealthResource(proxy(ownership)).render_GET(request))
        return request.responseCode or 200, b"".join(request.written)

    def test_redis_up_is_ok(self):
        self.assertEqual(self.health(SimpleNamespace(redis_up=True)), (200, b"ok\n"))

    def test_redis_away_is_degraded_but_200(self):
        """Relaying goes on without Redis: a load balancer must keep sending stations."""
        self.assertEqual(
            self.health(SimpleNamespace(redis_up=False)),
            (200, b"ok, degraded: Redis unreachable, relaying with local state\n"),
        )

    def test_single_instance_unchanged(self):
        self.assertEqual(self.health(None), (200, b"ok\n"))


class ClusterMetricsTests(SynchronousTestCase):
    def text(self, ownership) -> str:
        activity = StationActivity(Clock())
        snapshot = lambda: metrics_snapshot(proxy(ownership).snapshot(with_stations=False), activity, {})
        return generate_latest(metrics_registry(ProxyCollector(reactor, snapshot))).decode()

    def test_redis_up_by_instance(self):
        """ocppproxy_cluster_redis_up carries the instance name, 1 or 0."""
        up = self.text(SimpleNamespace(instance="proxy-a", redis_up=True))
        self.assertIn('ocppproxy_cluster_redis_up{instance="proxy-a"} 1.0', up)
        down = self.text(SimpleNamespace(instance="proxy-a", redis_up=False))
        self.assertIn('ocppproxy_cluster_redis_up{instance="proxy-a"} 0.0', down)

    def test_no_cluster_metric_on_a_single_instance(self):
        self.assertNotIn("ocppproxy_cluster", self.text(None))
