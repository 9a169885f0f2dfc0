"""
What the core decides, as data: one ordered list of effects per frame or event, which the
relaying edge (L{ocppproxy.relay.session}) carries out in order. Plain slotted values,
cheap to build on the hot path and compared by value in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .observer import ProxyEvent

STATION = "station"
API = "@api"
"""The proxy's own party (the control-plane API) in the queue of CALLs to the station; no upstream name has an C{@}."""


@dataclass(slots=True)
class Send:
    """Send the text frame C{payload} to C{target}: L{STATION} or an upstream's name."""

    target: str
    payload: bytes


@dataclass(slots=True)
class Close:
    """Close the station's connection with C{code} and C{reason}, and with it its upstream links."""

    code: int
    reason: str


@dataclass(slots=True)
class Log:
    """Log C{text} (a format string of C{fields}) at C{level}: "debug", "info", "warn" or "error"."""

    level: str
    text: str
    fields: dict[str, Any]


@dataclass(slots=True)
class Timer:
    """Call the core's C{expire} at C{deadline} (replacing any earlier timer); None: no timer needed."""

    deadline: float | None


@dataclass(frozen=True, slots=True)
class OpenLink:
    """Open a link from the station to upstream C{name} (with the subprotocol the station agreed), and tell the core how it went."""

    name: str


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Close the station's link to upstream C{name} (1001): it left the station's route."""

    name: str


Effect = Send | Close | ProxyEvent | Log | Timer | OpenLink | CloseLink
"""A L{ProxyEvent} (see L{ocppproxy.core.observer}): tell the observer."""
