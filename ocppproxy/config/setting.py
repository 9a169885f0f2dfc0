"""
The declaration of one configuration key (L{Setting}) and what a reload does with it;
the keys themselves are declared in L{ocppproxy.config.schema}.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

import attrs

from .checks import Check

LIVE = "live"
"""A reload applies the key at once."""
RESTART = "restart"
"""The key takes effect only after a restart."""
LIVE_WHILE_PRESENT = "live while present"
"""A reload applies the section's keys, but adding or removing the section needs a restart."""

MANDATORY = "*mandatory*"
"""How the reference shows the default of a key that must be given (in its section, if any)."""

_NO_DEFAULT = object()


@attrs.frozen
class Setting:
    """
    One configuration key: its dotted name (C{limits.max_stations}), the check of its
    value (its type and validation), a one-line doc, whether a reload applies it
    (L{LIVE}, L{RESTART}, L{LIVE_WHILE_PRESENT}) and the model field it fills (class and
    attribute), whose default is the key's default.
    """

    key: str
    check: Check
    doc: str = attrs.field(kw_only=True)
    reload: str = attrs.field(default=RESTART, kw_only=True)
    field: tuple[type, str] | None = attrs.field(default=None, kw_only=True)
    default: Any = attrs.field(default=_NO_DEFAULT, kw_only=True)
    """The default where no model field carries it."""
    shown: str | None = attrs.field(default=None, kw_only=True)
    """The default as the reference shows it, where a value alone would not say it."""

    @property
    def name(self) -> str:
        """The last part of the key: the name its section holds."""
        return self.key.rpartition(".")[2]

    @property
    def parent(self) -> str:
        """The section the key is in ("" for the top level)."""
        return self.key.rpartition(".")[0]

    @property
    def default_value(self) -> Any:
        """The key's default value; None where it has none (absent means off, or it is mandatory)."""
        if self.default is not _NO_DEFAULT:
            return self.default
        if self.field is not None:
            owner, attribute = self.field
            declared = {each.name: each for each in fields(owner)}[attribute]
            if declared.default is not MISSING:
                return declared.default
        return None


def at(owner: type, attribute: str) -> tuple[type, str]:
    """The model field C{owner.attribute} a key fills."""
    return (owner, attribute)


__all__ = ["LIVE", "LIVE_WHILE_PRESENT", "MANDATORY", "RESTART", "Setting", "at"]
