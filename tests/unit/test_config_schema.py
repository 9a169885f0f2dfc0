"""
The configuration schema (ocppproxy/config/schema.py) is the one declaration of every
key: the example file shows exactly its keys, the committed reference page is what it
writes, and the model's fields and defaults are the ones it names.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import fields

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.model import Config
from ocppproxy.config import reference
from ocppproxy.config.reference import render_rst
from ocppproxy.config.schema import BY_KEY, SCHEMA, children, config_fields, setting_of
from ocppproxy.config.setting import LIVE_WHILE_PRESENT

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "etc", "ocppproxy.yaml")
REFERENCE = os.path.join(ROOT, "docs", "reference", "configuration.rst")

# A key line, set or commented out (any number of "#" before it): a name and a colon.
_KEY_LINE = re.compile(r"^[#\s]*?(?:-\s+)?(?P<name>[A-Za-z][A-Za-z0-9_-]*):(?:\s|$)")


def shown_keys(text: str) -> list[str]:
    """
    The dotted keys a commented YAML example shows, set or commented out: each "#"
    before a key counts for two columns of indentation, so that "#   # secondary:" is a
    sibling of "#   secondary:". A capitalised name is prose, except under C{headers}. A
    list entry's keys ("- stations:") are the list's keys.
    """
    stack: list[tuple[int, str]] = []
    found = []
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match is None:
            continue
        column = match.start("name")
        indent = column - 2 * line[:column].count("#")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = match["name"]
        if not name.islower() and not (stack and stack[-1][1] == "headers"):
            continue
        stack.append((indent, name))
        found.append(".".join(part for _, part in stack))
    return found


class ExampleShowsTheSchemaTests(SynchronousTestCase):
    """etc/ocppproxy.yaml shows exactly the schema's keys."""

    def setUp(self):
        with open(EXAMPLE, encoding="utf-8") as stream:
            self.shown = shown_keys(stream.read())

    def test_every_shown_key_is_declared(self):
        """No key of the example is missing from the schema."""
        undeclared = []
        for key in self.shown:
            try:
                setting_of(key)
            except KeyError:
                undeclared.append(key)
        self.assertEqual(undeclared, [])

    def test_every_declared_key_is_shown(self):
        """Every key of the schema appears in the example, set or commented out (one instance of a <name> will do)."""
        shown = {setting_of(key).key for key in self.shown}
        self.assertEqual([setting.key for setting in SCHEMA if setting.key not in shown], [])

    def test_every_event_is_shown(self):
        """Every event key is listed under notify.events."""
        events = [key.rpartition(".")[2] for key in self.shown if key.startswith("notify.events.")]
        self.assertEqual(sorted(events), sorted(children("notify.events")))

    def test_the_reader_sees_commented_nesting(self):
        """The key reader follows indentation through comments and skips prose."""
        text = (
            "# Where stations connect. Plain text: not a key.\n"
            "listen: x\n"
            "# upstream_auth:\n"
            "#   primary: pass\n"
            "#   # secondary:\n"
            "#   #   username: u\n"
            "# Flapping: prose\n"
            "#   webhook:\n"
            "#     headers:\n"
            "#       Authorization: x\n"
        )
        self.assertEqual(
            shown_keys(text),
            [
                "listen",
                "upstream_auth",
                "upstream_auth.primary",
                "upstream_auth.secondary",
                "upstream_auth.secondary.username",
                "webhook",
                "webhook.headers",
                "webhook.headers.Authorization",
            ],
        )


class ReferencePageTests(SynchronousTestCase):
    """docs/reference/configuration.rst is the schema's page, regenerated, never edited."""

    def test_committed_page_is_generated(self):
        """The committed page equals render_rst(): run python -m ocppproxy.config.reference to regenerate it."""
        with open(REFERENCE, encoding="utf-8") as stream:
            self.assertEqual(stream.read(), render_rst())

    def test_command_prints_the_page(self):
        """python -m ocppproxy.config.reference writes the page to standard output."""
        out = io.StringIO()
        reference.main(out)
        self.assertEqual(out.getvalue(), render_rst())

    def test_every_key_has_a_row(self):
        """Each declared key has its row, with its doc line."""
        page = render_rst()
        for setting in SCHEMA:
            self.assertIn(f"   * - ``{setting.key}``\n", page)
            self.assertIn(setting.doc, page)


class DeclarationTests(SynchronousTestCase):
    """The declarations hang together."""

    def test_every_config_field_declared_once(self):
        """Every field of Config is filled by exactly one key."""
        filled = [setting.field[1] for setting in SCHEMA if setting.field and setting.field[0] is Config]
        self.assertEqual(sorted(filled), sorted(field.name for field in fields(Config)))
        self.assertEqual(sorted(config_fields()), sorted(filled))

    def test_keys_unique_and_parents_declared(self):
        """No key is declared twice, and each one's section is declared."""
        self.assertEqual(len(BY_KEY), len(SCHEMA))
        for setting in SCHEMA:
            if setting.parent:
                self.assertIn(setting.parent, BY_KEY, setting.key)

    def test_a_section_reloads_as_its_keys(self):
        """A key reloads as the section that holds it (a reload compares the model's fields, whole sections)."""
        for setting in SCHEMA:
            field = config_fields().get(setting.key.split(".")[0])
            if field is not None and setting.key != field.key:
                self.assertEqual(setting.reload, field.reload, setting.key)
        self.assertEqual(BY_KEY["station_tls"].reload, LIVE_WHILE_PRESENT)

    def test_defaults_are_the_models(self):
        """A key's default is its model field's: the parser and the defaults the code sees cannot disagree."""
        self.assertEqual(BY_KEY["limits.max_stations"].default_value, Config.max_stations)
        self.assertEqual(BY_KEY["notify.delivery_timeout"].default_value, 30.0)
        self.assertEqual(BY_KEY["reconnect.max_attempts"].default_value, 10)
        self.assertIsNone(BY_KEY["secondary_url"].default_value)

    def test_unknown_key_error_order(self):
        """Each section's allowed keys keep the order its unknown-key error has always listed."""
        self.assertEqual(children("")[:4], ("listen", "primary_url", "secondary_url", "log_level"))
        self.assertEqual(children("reconnect"), ("initial_delay", "factor", "max_delay", "max_attempts"))
        self.assertEqual(children("upstream_tls.secondary"), ("ca_file", "client_cert", "client_key"))
        self.assertEqual(children("notify.email"), ("from", "to", "smtp"))
