"""
README.rst and the Sphinx site in docs/ say what is true: the README stays short, its test
command is the one CI runs, its configuration loads, its links lead to pages, and every
metric is documented. (``make docs`` checks the site itself: a warning fails it.)
"""

from __future__ import annotations

import os
import re

import yaml
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.parse import config_from_mapping

from .test_layers import PACKAGE, imported_modules

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.rst")
DOCS = os.path.join(ROOT, "docs")
CI = os.path.join(ROOT, ".ci", "run")
METRICS_SOURCE = os.path.join(ROOT, "ocppproxy", "status", "metrics.py")
METRICS_PAGE = os.path.join(DOCS, "reference", "metrics.rst")
LAYOUT_PAGE = os.path.join(DOCS, "explanation", "layout.rst")
# Imports the map forbids that the code still has, each to be removed: config reads the
# notify package's event and channel names (issue 23 moves them under config).
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def read(path: str) -> str:
    """The text of the file at C{path}."""
    with open(path, encoding="utf-8") as stream:
        return stream.read()


def literal_block_after(text: str, marker: str) -> str:
    """The indented literal block of C{text} that follows the first C{marker}, dedented."""
    start = text.index(marker)
    body = text[text.index("::\n\n", start) + 4 :]
    lines = []
    for line in body.split("\n"):
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip("\n")


class ReadmeTests(SynchronousTestCase):
    """The README: what it is, the two commands, a ten-line configuration, links."""

    def setUp(self):
        self.text = read(README)

    def test_short(self):
        """README.rst is at most 200 lines: the rest lives in docs/."""
        self.assertLessEqual(len(self.text.splitlines()), 200)

    def test_ci_runs_the_readme_test_command(self):
        """The command the README gives for the tests is a line of .ci/run, run as it is."""
        commands = literal_block_after(self.text, "On a fresh machine")
        test = [line.split("#")[0].strip() for line in commands.splitlines() if "test suite" in line]
        self.assertEqual(test, ["make test"])
        ci_lines = [line.strip() for line in read(CI).splitlines()]
        self.assertIn(test[0], ci_lines)

    def test_ci_builds_the_docs(self):
        """.ci/run builds the documentation after the tests."""
        ci_lines = [line.strip() for line in read(CI).splitlines()]
        self.assertLess(ci_lines.index("make test"), ci_lines.index("make docs"))

    def test_configuration_loads(self):
        """The README's configuration is ten lines and a valid configuration."""
        block = literal_block_after(self.text, "shows every key")
        self.assertEqual(len(block.splitlines()), 10)
        config = config_from_mapping(yaml.safe_load(block))
        self.assertEqual(config.secondary_url, "wss://monitor.example.com/ocpp/")
        self.assertEqual(config.notify.channel_problems, ())

    def test_links_lead_to_pages(self):
        """Every docs/ link of the README names a page of the site."""
        links = re.findall(r"<(docs/[^>]+)>`_", self.text)
        self.assertGreater(len(links), 20)
        for link in links:
            self.assertTrue(os.path.isfile(os.path.join(ROOT, link)), link)


class MetricsPageTests(SynchronousTestCase):
    """docs/reference/metrics.rst documents exactly the metrics /metrics serves."""

    def test_every_metric_documented(self):
        """Every metric family of status/metrics.py has a row, and every row a family."""
        families = set(re.findall(r'"(ocppproxy_[a-z_]+)"', read(METRICS_SOURCE)))
        self.assertGreater(len(families), 15)
        rows = set(re.findall(r"^\s+\* - ``(ocppproxy_[a-z_]+?)(?:_total)?(?:\{[^}]*\})?``", read(METRICS_PAGE), re.M))
        self.assertEqual(rows, families)


def layer_map() -> dict[str, int]:
    """The layout page's "What may import what" map: package name -> its line, 0 at the bottom."""
    lines = literal_block_after(read(LAYOUT_PAGE), "What may import what").splitlines()
    levels = {}
    for level, line in enumerate(reversed(lines)):
        for name in re.match(r"[a-z]+(?:, [a-z]+)*", line).group(0).split(", "):
            levels[name] = level
    return levels


def package_imports(package: str) -> set[str]:
    """The ocppproxy packages (and top-level modules) that ocppproxy.<package> imports at run time."""
    directory = os.path.join(PACKAGE, package)
    found = set()
    for name in os.listdir(directory):
        if name.endswith(".py"):
            for _, module in imported_modules(os.path.join(directory, name), f"ocppproxy.{package}"):
                parts = module.split(".")
                if parts[0] == "ocppproxy" and len(parts) > 1 and parts[1] != package:
                    found.add(parts[1])
    return found


class LayoutMapTests(SynchronousTestCase):
    """The layout page's map of what may import what holds for the code."""

    def test_map_names_every_package(self):
        """Every package of ocppproxy/ is on the map."""
        packages = {name for name in os.listdir(PACKAGE) if os.path.isfile(os.path.join(PACKAGE, name, "__init__.py"))}
        self.assertLessEqual(packages, set(layer_map()))
        self.assertIn("fastpath", layer_map())

    def test_imports_go_down(self):
        """Each package imports only packages below its own line (and logs and periodic, except core)."""
        levels = layer_map()
        found = []
        for package, level in levels.items():
            if not os.path.isdir(os.path.join(PACKAGE, package)):
                continue
            for imported in package_imports(package):
                if imported in ("logs", "periodic") and package != "core":
                    continue
                if (package, imported) in KNOWN_EXCEPTIONS:
                    continue
                if levels.get(imported, level) >= level:
                    found.append(f"{package} imports {imported}")
        self.assertEqual(found, [])

    def test_map_shape(self):
        """The map puts core at the bottom and daemon at the top, relay and notify side by side."""
        levels = layer_map()
        self.assertEqual(levels["core"], 0)
        self.assertEqual(max(levels.values()), levels["daemon"])
        self.assertEqual(levels["relay"], levels["notify"])
        self.assertIn("config", package_imports("relay"))


class EveryFileTests(SynchronousTestCase):
    def test_every_module_on_the_layout_page(self):
        """The layout page's "Every file" list names every module (and nothing gone): python docs/every_file.py."""
        page = read(os.path.join(ROOT, "docs", "explanation", "layout.rst"))
        listed = set(re.findall(r"(?m)^    (ocppproxy/\S+\.py)", page[page.index("Every file") :]))
        modules = {
            os.path.relpath(os.path.join(folder, name), ROOT)
            for folder, _, files in os.walk(PACKAGE)
            for name in files
            if name.endswith(".py")
        }
        self.assertEqual((sorted(modules - listed), sorted(listed - modules)), ([], []))
