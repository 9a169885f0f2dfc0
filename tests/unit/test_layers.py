"""
The layering the packages promise, checked by reading the source (no import needed):
the pure core imports nothing outside itself and the standard library, the
configuration nothing of ours but itself and the core, and its model nothing of ours
at run time.
"""

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "ocppproxy")
# What the core must never import: the reactor and WebSocket libraries, and their interfaces.
FORBIDDEN_IN_CORE = ("twisted", "autobahn", "txaio", "zope")


def imported_modules(path: str, package: str) -> list[tuple[int, str]]:
    """
    Every module the file at C{path} (a module of C{package}) imports, as absolute names
    with their line numbers; imports under C{if TYPE_CHECKING:} are left out (they never run).
    """
    with open(path, encoding="utf-8") as source:
        tree = ast.parse(source.read(), path)
    type_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            type_only.update(id(child) for statement in node.body for child in ast.walk(statement))
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            if node.module is None:
                found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, module))
    return found


def violations(subpackage: str, allowed) -> list[str]:
    """C{file:line module} for each import in C{ocppproxy.<subpackage>} that C{allowed(module)} refuses."""
    directory = os.path.join(PACKAGE, subpackage)
    found = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".py"):
            for line, module in imported_modules(os.path.join(directory, name), f"ocppproxy.{subpackage}"):
                if not allowed(module):
                    found.append(f"{subpackage}/{name}:{line} {module}")
    return found


def core_may_import(module: str) -> bool:
    """The core's rule: the standard library and the core itself."""
    top = module.split(".")[0]
    if top == "ocppproxy":
        return module == "ocppproxy.core" or module.startswith("ocppproxy.core.")
    return top not in FORBIDDEN_IN_CORE


def config_may_import(module: str) -> bool:
    """The configuration's rule: anything but ocppproxy outside config and the core (nothing above it)."""
    if module.split(".")[0] != "ocppproxy":
        return True
    return module.startswith(("ocppproxy.config.", "ocppproxy.core.")) or module in ("ocppproxy.config", "ocppproxy.core")


class LayerTests(SynchronousTestCase):
    def test_core_imports_nothing_outside_core(self):
        """No module of ocppproxy/core imports Twisted, Autobahn, txaio, zope or ocppproxy outside core."""
        self.assertEqual(violations("core", core_may_import), [])

    def test_config_model_imports_nothing_of_ours(self):
        """ocppproxy/config/model.py imports no ocppproxy module at run time (type-checking imports aside)."""
        found = imported_modules(os.path.join(PACKAGE, "config", "model.py"), "ocppproxy.config")
        self.assertEqual([module for _, module in found if module.startswith("ocppproxy")], [])

    def test_config_imports_nothing_above_it(self):
        """No module of ocppproxy/config imports ocppproxy outside config and core (the notifier's keys live in config)."""
        self.assertEqual(violations("config", config_may_import), [])

    def test_the_config_rule_refuses_the_layers_above(self):
        """The configuration's rule refuses notify, wire and the daemon, and allows the core and itself."""
        self.assertFalse(config_may_import("ocppproxy.notify.keys"))
        self.assertFalse(config_may_import("ocppproxy.notify"))
        self.assertFalse(config_may_import("ocppproxy.logs"))
        self.assertTrue(config_may_import("ocppproxy.core.forwarded"))
        self.assertTrue(config_may_import("ocppproxy.config.model"))
        self.assertTrue(config_may_import("attrs"))

    def test_the_check_sees_a_forbidden_import(self):
        """The rule refuses what it must: a Twisted import, a relative import leaving core, and a type-only one is ignored."""
        self.assertFalse(core_may_import("twisted.internet.defer"))
        self.assertFalse(core_may_import("zope.interface"))
        self.assertFalse(core_may_import("ocppproxy.wire.station"))
        self.assertFalse(core_may_import("ocppproxy.logs"))
        self.assertTrue(core_may_import("ocppproxy.core.ocppj"))
        self.assertTrue(core_may_import("collections"))
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as module:
            module.write(
                "from typing import TYPE_CHECKING\n"
                "from ..logs import proxy_logger\n"
                "from . import ocppj\n"
                "import twisted.internet\n"
                "if TYPE_CHECKING:\n"
                "    from ..wire import station\n"
            )
        self.assertEqual(
            imported_modules(path, "ocppproxy.core"),
            [(1, "typing"), (2, "ocppproxy.logs"), (3, "ocppproxy.core.ocppj"), (4, "twisted.internet")],
        )


MAX_MODULE_LINES = 450


class ModuleSizeTests(SynchronousTestCase):
    def test_no_module_over_450_lines(self):
        """No module of the package is over 450 lines (issue 23: small modules, one job each)."""
        too_long = []
        for folder, _, files in os.walk(PACKAGE):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, encoding="utf-8") as source:
                        count = sum(1 for _ in source)
                    if count > MAX_MODULE_LINES:
                        too_long.append(f"{os.path.relpath(path, PACKAGE)}: {count}")
        self.assertEqual(too_long, [])
