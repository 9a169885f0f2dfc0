"""
The shipped monitoring files: etc/prometheus (alerting rules, checked and unit-tested by
promtool) and etc/grafana (a dashboard). Both may only name metrics /metrics exports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from types import SimpleNamespace

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ocppproxy.config.parse import config_from_mapping
from ocppproxy.relay.proxy import ProxyService
from ocppproxy.status.activity import StationActivity
from ocppproxy.status.metrics import ProxyCollector, metrics_registry
from ocppproxy.status.snapshot import metrics_snapshot

ETC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc")
RULES = os.path.join(ETC, "prometheus", "ocppproxy-rules.yml")
RULES_TEST = os.path.join(ETC, "prometheus", "ocppproxy-rules.test.yml")
DASHBOARD = os.path.join(ETC, "grafana", "ocppproxy.json")
PROMTOOL_TIMEOUT = 60

_OUR_METRIC = re.compile(r"\bocppproxy_[a-z0-9_]+")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_metric_names() -> set[str]:
    """
    Every series name /metrics can show, read from the collector's output for a proxy
    just built (the traffic log's and cluster mode's families included, which appear only
    when those are on).
    """
    config = config_from_mapping({"primary_url": "ws://127.0.0.1:1/", "secondary_url": "ws://127.0.0.1:2/"})
    proxy, activity = ProxyService(config, Clock()), StationActivity(Clock())
    # Cluster mode's metric too (ocppproxy_cluster_redis_up).
    proxy.ownership = SimpleNamespace(instance="proxy-a", redis_up=True)
    traffic_log = SimpleNamespace(written=0, dropped=0, failed=0)
    # The outbox's families (with an outbox section only).
    totals = {"mirror": {"entries": 1, "bytes": 10, "oldest_age": 5.0, "replayed": 0, "dropped": 0}}
    proxy.outbox = SimpleNamespace(
        totals=lambda: totals, backlogs=lambda: iter(()), store=SimpleNamespace(healthy=True, fault_episodes=0)
    )
    collector = ProxyCollector(reactor, lambda: metrics_snapshot(proxy.snapshot(), activity, {}, traffic_log))
    text = generate_latest(metrics_registry(collector)).decode()
    return {
        family.name + suffix for family in text_string_to_metric_families(text) for suffix in _SUFFIXES[family.type]
    }


def rule_list() -> list[dict]:
    with open(RULES, encoding="utf-8") as stream:
        groups = yaml.safe_load(stream)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_queries(node) -> list[str]:
    """Every PromQL text of the dashboard: panel targets (rows included) and template variables."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(dashboard_queries(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(dashboard_queries(item))
    return found


# Selecting an upstream by its name: the shipped files must key on role instead.
_BY_NAME = re.compile(r"""\bupstream\s*(=|!=|=~|!~)\s*["']""")
# The one family with an upstream label but no role: a role would cost a look-up per relayed frame.
_WITHOUT_ROLE = {"ocppproxy_frames"}


def exported_families():
    """The families /metrics shows for a proxy just built (as L{exported_metric_names} reads them)."""
    config = config_from_mapping({"primary_url": "ws://127.0.0.1:1/", "secondary_url": "ws://127.0.0.1:2/"})
    proxy, activity = ProxyService(config, Clock()), StationActivity(Clock())
    collector = ProxyCollector(reactor, lambda: metrics_snapshot(proxy.snapshot(), activity, {}))
    return list(text_string_to_metric_families(generate_latest(metrics_registry(collector)).decode()))


class ExportedNamesTests(SynchronousTestCase):
    def test_upstream_families_carry_the_role(self) -> None:
        """Every family with an upstream label also has a role label, primary or mirror, for every upstream."""
        with_upstream = set()
        for family in exported_families():
            labels = [sample.labels for sample in family.samples]
            if not any("upstream" in each for each in labels):
                continue
            with_upstream.add(family.name)
            if family.name in _WITHOUT_ROLE:
                continue
            self.assertTrue(all(each.get("role") in ("primary", "mirror") for each in labels), family.name)
            pairs = {(each["upstream"], each["role"]) for each in labels}
            expected = {(name, role) for name in ("primary", "secondary") for role in ("primary", "mirror")}
            self.assertEqual(pairs, expected, family.name)
        self.assertGreaterEqual(len(with_upstream), 5)

    def test_names_from_the_collector(self) -> None:
        """The names the checks below rely on come with their Prometheus suffixes."""
        names = exported_metric_names()
        self.assertIn("ocppproxy_stations_connected", names)
        self.assertIn("ocppproxy_frames_total", names)
        self.assertIn("ocppproxy_primary_answer_seconds_bucket", names)
        self.assertNotIn("ocppproxy_frames", names)


class PrometheusRulesTests(SynchronousTestCase):
    def promtool(self, *args: str) -> str:
        promtool = shutil.which("promtool")
        if promtool is None:
            raise SkipTest("promtool not found (Debian package prometheus)")
        result = subprocess.run(
            [promtool, *args],
            cwd=os.path.dirname(RULES),
            capture_output=True,
            text=True,
            timeout=PROMTOOL_TIMEOUT,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def test_rules_are_valid(self) -> None:
        """promtool accepts the rules file."""
        self.assertIn("SUCCESS", self.promtool("check", "rules", os.path.basename(RULES)))

    def test_rules_fire_on_real_series(self) -> None:
        """promtool's unit tests pass: each rule fires on the series of its case, at its time, not before."""
        self.assertIn("SUCCESS", self.promtool("test", "rules", os.path.basename(RULES_TEST)))

    def test_every_alert_is_tested(self) -> None:
        """Each alert of the rules file has a firing case in the rules test."""
        with open(RULES_TEST, encoding="utf-8") as stream:
            cases = [case for test in yaml.safe_load(stream)["tests"] for case in test["alert_rule_test"]]
        firing = {case["alertname"] for case in cases if case["exp_alerts"]}
        self.assertEqual(firing, {rule["alert"] for rule in rule_list()})

    def test_every_rule_waits_and_has_a_runbook(self) -> None:
        """Each rule has a for: duration, a severity, and a runbook sentence among its annotations."""
        for rule in rule_list():
            self.assertRegex(rule.get("for", ""), r"^\d+[smh]$", rule["alert"])
            self.assertIn(rule["labels"]["severity"], ("warning", "critical"), rule["alert"])
            self.assertRegex(rule["annotations"].get("runbook", ""), r"\w.*\.$", rule["alert"])

    def test_rules_key_on_role_not_on_a_name(self) -> None:
        """No rule selects an upstream by name: with upstreams: any name may be a primary."""
        for rule in rule_list():
            self.assertNotRegex(rule["expr"], _BY_NAME, rule["alert"])

    def test_rules_name_exported_metrics(self) -> None:
        """Every ocppproxy metric a rule's expression names is one the daemon exports."""
        exported = exported_metric_names()
        for rule in rule_list():
            named = set(_OUR_METRIC.findall(rule["expr"]))
            self.assertTrue(named or rule["expr"].startswith("up{"), rule["alert"])
            self.assertLessEqual(named, exported, rule["alert"])


class GrafanaDashboardTests(SynchronousTestCase):
    def setUp(self) -> None:
        with open(DASHBOARD, encoding="utf-8") as stream:
            self.dashboard = json.load(stream)

    def test_every_query_names_an_exported_metric(self) -> None:
        """Every query names at least one metric, and only metrics the daemon exports."""
        exported = exported_metric_names()
        queries = dashboard_queries(self.dashboard)
        self.assertGreater(len(queries), 10)
        for query in queries:
            named = set(_OUR_METRIC.findall(query))
            self.assertTrue(named, query)
            self.assertLessEqual(named, exported, query)

    def test_queries_key_on_role_not_on_a_name(self) -> None:
        """No query selects an upstream by name."""
        for query in dashboard_queries(self.dashboard):
            self.assertNotRegex(query, _BY_NAME, query)

    def test_every_metric_is_shown(self) -> None:
        """Each exported family appears on the dashboard."""
        shown = set(_OUR_METRIC.findall(" ".join(dashboard_queries(self.dashboard))))
        families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported_metric_names()}
        self.assertEqual({re.sub(r"_(total|bucket|sum|count)$", "", name) for name in shown}, families)

    def test_panels_use_the_datasource_variable(self) -> None:
        """No panel is tied to one Grafana's data source: all go through the ${datasource} variable."""
        for panel in self.dashboard["panels"]:
            self.assertEqual(panel["datasource"], {"type": "prometheus", "uid": "${datasource}"}, panel["title"])
        self.assertEqual(len({panel["id"] for panel in self.dashboard["panels"]}), len(self.dashboard["panels"]))
