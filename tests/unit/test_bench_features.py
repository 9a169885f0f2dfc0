"""
The switches bench/features.py turns on are configurations ocppproxy accepts: a feature
row that failed to start would leave the docs' cost table with a hole.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

import yaml
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.parse import config_from_mapping

from ..certs import make_ca_and_server_cert

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_features():
    """bench/features.py as a module (bench/ is a directory of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_features", os.path.join(ROOT, "bench", "features.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


features = load_features()


def configuration(feature, workdir: str) -> dict:
    """The closed loops' plain configuration (as bench/run.py writes it) with C{feature} on."""
    urls = 'primary_url: "ws://127.0.0.1:9001/"\nsecondary_url: "ws://127.0.0.1:9002/"\n'
    text = (
        'listen: "tcp:port=9000:interface=127.0.0.1"\n'
        + (urls if feature.upstream_urls else "")
        + feature.yaml(
            workdir,
            9001,
            9002,
            make_ca_and_server_cert(workdir) if feature.stations_tls else None,
            6390 if feature.redis else None,
        )
        + f"log_level: {feature.log_level}\n"
    )
    return yaml.safe_load(text)


class FeatureTests(SynchronousTestCase):
    def test_every_feature_loads(self) -> None:
        """Each feature's configuration passes ocppproxy's own checks."""
        for feature in features.FEATURES.values():
            with tempfile.TemporaryDirectory() as workdir:
                config_from_mapping(configuration(feature, workdir))

    def test_three_upstreams(self) -> None:
        """three-upstreams routes every station to one primary and two mirrors, two links to the primary's port."""
        feature = features.FEATURES["three-upstreams"]
        with tempfile.TemporaryDirectory() as workdir:
            mapping = configuration(feature, workdir)
        self.assertEqual(mapping["routes"], [{"stations": ["*"], "primary": "a", "mirrors": ["b", "c"]}])
        self.assertEqual(feature.primary_links, 2)

    def test_chosen(self) -> None:
        """--features names known switches in order; an unknown one stops the bench naming it."""
        self.assertEqual([f.name for f in features.chosen("debug,traffic-log")], ["debug", "traffic-log"])
        self.assertEqual(features.chosen(""), [])
        with self.assertRaises(SystemExit) as raised:
            features.chosen("debug,tls-sideways")
        self.assertIn("tls-sideways", str(raised.exception))
