"""
How the schema checks one value: small attrs classes that validate a value for a key
(raising L{ConfigError} with the key and the reason) and say, for the reference page,
what they accept. Each error text is the one the parsers always gave.

Two styles, as before: outside C{notify} and C{cluster} an error may quote the value
(C{got 'ten'}); under them (any value there may be a secret) it names the kind only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from .model import ConfigError, describe, kind_of, require_number, require_string


def _number_text(minimum: float, whole: bool, unit: str = "") -> str:
    kind = "whole number" if whole else "number"
    return f"{kind}{unit} ≥ {minimum:g}"


@attrs.frozen
class Text:
    """A non-empty string (quoted when wrong); C{strip}: surrounding blanks removed."""

    strip: bool = False
    text: str = "string"

    def __call__(self, key: str, value: Any) -> str:
        checked = require_string(key, value)
        return checked.strip() if self.strip else checked


@attrs.frozen
class Number:
    """A number (a whole one if C{whole}) of at least C{minimum}; wrong values are quoted."""

    minimum: float
    whole: bool = False
    unit: str = ""

    @property
    def text(self) -> str:
        return _number_text(self.minimum, self.whole, self.unit)

    def __call__(self, key: str, value: Any) -> Any:
        return require_number(key, value, self.minimum, self.whole)


@attrs.frozen
class Flag:
    """C{true} or C{false}; C{secret}: a wrong value is named by its kind, not quoted."""

    secret: bool = False
    text: str = "``true`` or ``false``"

    def __call__(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {kind_of(value) if self.secret else describe(value)}")
        return value


@attrs.frozen
class OneOf:
    """One of C{choices}; a wrong value is quoted unless C{secret}."""

    choices: tuple[str, ...]
    secret: bool = False

    @property
    def text(self) -> str:
        return ", ".join(f"``{choice}``" for choice in self.choices)

    def __call__(self, key: str, value: Any) -> str:
        if value not in self.choices:
            got = "" if self.secret else f", got {describe(value)}"
            raise ConfigError(key, f"must be one of {', '.join(self.choices)}{got}")
        return value


@attrs.frozen
class Amount:
    """
    A number of seconds (or a whole number) from C{minimum} up, or above it if
    C{excluded}; wrong values are named by their kind. Seconds come back as floats.
    """

    minimum: float
    whole: bool = False
    excluded: bool = False

    @property
    def text(self) -> str:
        kind = "whole number" if self.whole else "seconds"
        return f"{kind} {'>' if self.excluded else '≥'} {self.minimum:g}"

    def __call__(self, key: str, value: Any) -> Any:
        kinds = (int,) if self.whole else (int, float)
        kind = "a whole number" if self.whole else "a number of seconds"
        bound = f"above {self.minimum}" if self.excluded else f"from {self.minimum} up"
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ConfigError(key, f"must be {kind} {bound}, got {kind_of(value)}")
        if value < self.minimum or (self.excluded and value == self.minimum):
            raise ConfigError(key, f"must be {kind} {bound}")
        return value if self.whole else float(value)


@attrs.frozen
class Between:
    """A whole number from C{low} to C{high}; wrong values are named by their kind."""

    low: int
    high: int

    @property
    def text(self) -> str:
        return f"whole number from {self.low} to {self.high}"

    def __call__(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be a whole number from {self.low} to {self.high}, got {kind_of(value)}")
        if not self.low <= value <= self.high:
            raise ConfigError(key, f"must be from {self.low} to {self.high}")
        return value


@attrs.frozen
class Rule:
    """A check of its own (C{function(key, value)}), described by C{text}."""

    text: str
    function: Callable[[str, Any], Any] = attrs.field(repr=False)

    def __call__(self, key: str, value: Any) -> Any:
        return self.function(key, value)


@attrs.frozen
class Section:
    """A mapping of the keys declared below it; checked by the parser of that section."""

    text: str = "mapping"

    def __call__(self, key: str, value: Any) -> Any:
        return value


Check = Text | Number | Flag | OneOf | Amount | Between | Rule | Section
