"""
When to warn about a certificate that expires: 14, 7 and 1 days ahead, once each per
certificate, and once when it has expired. Pure: the caller brings the time and
remembers what was sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DAY = 86400.0
WARNING_DAYS = (14, 7, 1)
"""Days before expiry at which a certificate is warned about (the nearest tier crossed, once each)."""

EXPIRED = 0
"""The tier of a certificate that has expired."""


@dataclass(frozen=True)
class ExpiryNotice:
    """A certificate (by C{fingerprint}) reached C{tier} (days ahead, or L{EXPIRED}); C{left} seconds remain."""

    fingerprint: str
    tier: int
    left: float

    @property
    def expired(self) -> bool:
        """Whether the certificate has expired."""
        return self.tier == EXPIRED


def tiers_reached(left: float) -> list[int]:
    """The tiers a certificate with C{left} seconds of validity has reached, nearest (smallest) first."""
    if left <= 0:
        return [EXPIRED, *sorted(WARNING_DAYS)]
    return sorted(days for days in WARNING_DAYS if left <= days * DAY)


def expiry_notices(
    certificates: Iterable[tuple[str, float]], now: float, sent: set[tuple[str, int]]
) -> list[ExpiryNotice]:
    """
    The notices due at C{now} for C{certificates} (fingerprint, expiry time), and
    C{sent} updated with every tier they cover: only the nearest tier reached is told (a
    certificate found 3 days from expiry is warned about once, not at 14 and 7 days as
    well), and a tier already in C{sent} never again.
    """
    notices = []
    for fingerprint, not_after in dict(certificates).items():
        left = not_after - now
        reached = tiers_reached(left)
        if not reached or (fingerprint, reached[0]) in sent:
            continue
        notices.append(ExpiryNotice(fingerprint, reached[0], left))
        sent.update((fingerprint, tier) for tier in reached)
    return notices
