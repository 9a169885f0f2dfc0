"""
The configuration reference page, written from the schema (L{ocppproxy.config.schema}):
every key with its type, default, whether a reload applies it, and its doc line.

    python -m ocppproxy.config.reference > docs/reference/configuration.rst

A test holds the committed page to this output, so the page cannot drift from the parser.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from .schema import LIVE, LIVE_WHILE_PRESENT, PLACEHOLDERS, SCHEMA, Setting
from .setting import RESTART

_RELOAD = {
    LIVE: "live",
    RESTART: "restart",
    LIVE_WHILE_PRESENT: "live; adding or removing the section: restart",
}

_INTRO = """\
.. This page is generated from ocppproxy/config/schema.py: do not edit it by hand.
   Regenerate it with: python -m ocppproxy.config.reference > docs/reference/configuration.rst

Configuration reference
=======================

The daemon reads one YAML file, ``-c <file>`` (default ``/etc/ocppproxy/ocppproxy.yaml``);
``etc/ocppproxy.yaml`` shows every key. Unknown keys are refused. Relative paths are
taken from the file's directory. The Node tool's ``config.json`` is read as it is, and
``python -m ocppproxy.config.convert config.json > ocppproxy.yaml`` writes its YAML
equivalent.

A configuration error stops start-up with one line on standard error and exit status 2::

    ocppproxy: configuration error in <file>: <key>: <reason>

*Reload* says what ``kill -HUP`` (``systemctl reload ocppproxy``) does with a changed
key: ``live`` applies it at once, ``restart`` names it in a warning and applies it only
after a restart. A name in angle brackets stands for several keys: ``<upstream>`` is
``primary`` or ``secondary``, ``<event>`` an event key (listed under ``notify``),
``<header>`` any HTTP header name, ``<name>`` an upstream's name under ``upstreams``.
The keys under ``routes`` are those of each entry of its list.
"""


def render_rst() -> str:
    """The reference page (reStructuredText), one table per top-level section."""
    parts = [_INTRO]
    top = [setting for setting in SCHEMA if setting.parent == "" and not _is_section(setting)]
    parts.append(_table("Top-level keys", "Keys outside any section.", top))
    for section in SCHEMA:
        if section.parent == "" and _is_section(section):
            keys = [setting for setting in SCHEMA if setting.key.startswith(section.key + ".")]
            parts.append(_table(f"``{section.key}``", section.doc, [section, *keys]))
            if section.key == "notify":
                events = ", ".join(f"``{event}``" for event in PLACEHOLDERS["<event>"] or ())
                parts.append(f"The event keys (``<event>``): {events}.\n")
    return "\n".join(parts)


def _is_section(setting: Setting) -> bool:
    return any(other.parent == setting.key for other in SCHEMA)


def _table(title: str, doc: str, settings: list[Setting]) -> str:
    lines = [title, "-" * len(title), "", doc, "", ".. list-table::", "   :header-rows: 1", "   :widths: 28 20 16 10 26", ""]
    lines.extend(_row(("Key", "Type", "Default", "Reload", "Meaning")))
    for setting in settings:
        cells = (f"``{setting.key}``", setting.check.text, _default(setting), _RELOAD[setting.reload], setting.doc)
        lines.extend(_row(cells))
    return "\n".join(lines) + "\n"


def _row(cells: tuple[str, ...]) -> Iterator[str]:
    first, *rest = cells
    yield f"   * - {first}"
    for cell in rest:
        yield f"     - {cell}" if cell else "     -"


def _default(setting: Setting) -> str:
    if setting.shown is not None:
        return setting.shown
    if _is_section(setting):
        return ""
    return _literal(setting.default_value)


def _literal(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "``true``" if value else "``false``"
    if isinstance(value, Mapping):
        return "``{}``" if not value else f"``{dict(value)}``"
    if isinstance(value, (list, tuple, frozenset)):
        return "``[]``" if not value else f"``{list(value)}``"
    return f"``{value}``"


def main(out: TextIO = sys.stdout) -> None:
    """The command line: the page on C{out}."""
    out.write(render_rst())


if __name__ == "__main__":
    main()
