"""
Station ownership across instances, as pure rules: no I/O, no Twisted.

An instance that accepts a station claims it in Redis: one key per station id holding
C{"<order> <instance> <serial>"}, where C{serial} numbers the instance's own connections
and C{order} is a number Redis gives every claim, always greater than the one before (so
claims are totally ordered without trusting any instance's clock); and it announces the
claim on one pub/sub channel as C{"<order> <instance> <serial> <station id>"}. The
newest claim wins: an instance that holds a connection whose claim is older than one
heard from another instance closes it (4000, replaced).
"""

from __future__ import annotations

from dataclasses import dataclass

KEY_PREFIX = "ocppproxy:"
CLAIMS_CHANNEL = KEY_PREFIX + "claims"
ORDER_KEY = KEY_PREFIX + "claim-order"


def station_key(station_id: str) -> str:
    """The Redis key of the claim on C{station_id}."""
    return f"{KEY_PREFIX}station:{station_id}"


@dataclass(frozen=True)
class Claim:
    """One instance's claim on one connection of a station; C{order} is None until Redis has numbered it."""

    station: str
    instance: str
    serial: int
    order: int | None = None

    def value(self) -> str:
        """The claim as stored under L{station_key} (the order must be known)."""
        return f"{self.order} {self.instance} {self.serial}"


class ClaimError(ValueError):
    """A claim or announcement read from Redis that does not follow the format above."""


def parse_claim(station: str, value: str) -> Claim:
    """A claim read from the key of C{station}; raises L{ClaimError}."""
    fields = value.split(" ")
    if len(fields) != 3 or not fields[0].isdigit() or not fields[2].isdigit():
        raise ClaimError(f"not a claim: {value[:80]!r}")
    return Claim(station, fields[1], int(fields[2]), int(fields[0]))


def parse_announcement(message: str) -> Claim:
    """A claim announced on L{CLAIMS_CHANNEL} (the station id comes last: it may hold spaces); raises L{ClaimError}."""
    fields = message.split(" ", 3)
    if len(fields) != 4:
        raise ClaimError(f"not an announcement: {message[:80]!r}")
    return parse_claim(fields[3], " ".join(fields[:3]))


def replaces(remote: Claim, local: Claim) -> bool:
    """Whether C{remote}, another instance's claim on the same station, replaces the C{local} connection."""
    return (
        remote.instance != local.instance
        and remote.order is not None
        and local.order is not None
        and remote.order > local.order
    )


@dataclass
class _Held:
    claim: Claim
    # The newest order another instance claimed this station with while ours was unnumbered.
    heard_newer: int | None = None


class LocalClaims:
    """
    This instance's claims on the stations it holds, and the decisions about them. Each
    method that can find a local connection replaced returns True when it is: the caller
    then closes that connection.
    """

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._serial = 0
        self._held: dict[str, _Held] = {}

    def connected(self, station: str) -> Claim:
        """A station connected here: its new claim, to be numbered by Redis (L{numbered})."""
        self._serial += 1
        claim = Claim(station, self.instance, self._serial)
        self._held[station] = _Held(claim)
        return claim

    def ended(self, station: str, serial: int) -> Claim | None:
        """Connection C{serial} of C{station} ended: its claim (to release) if it still was the current one."""
        held = self._held.get(station)
        if held is None or held.claim.serial != serial:
            return None
        del self._held[station]
        return held.claim

    def numbered(self, station: str, serial: int, order: int) -> bool:
        """Redis numbered our claim C{serial}: True if another instance's newer claim was heard meanwhile."""
        held = self._held.get(station)
        if held is None or held.claim.serial != serial:
            return False
        held.claim = Claim(station, self.instance, serial, order)
        newer, held.heard_newer = held.heard_newer, None
        return newer is not None and newer > order

    def heard(self, remote: Claim) -> bool:
        """A claim announced by any instance: True if it replaces the connection we hold."""
        held = self._held.get(remote.station)
        if held is None or remote.instance == self.instance or remote.order is None:
            return False
        if held.claim.order is None:
            # Ours is on its way to Redis: decide once Redis has numbered it.
            held.heard_newer = max(remote.order, held.heard_newer or 0)
            return False
        return replaces(remote, held.claim)

    def holder_found(self, station: str, serial: int, holder: Claim) -> bool:
        """A refresh found C{holder} in the key of a station we hold as C{serial}: True if it replaces ours."""
        held = self._held.get(station)
        if held is None or held.claim.serial != serial:
            return False
        return replaces(holder, held.claim)

    def numbered_claims(self) -> list[Claim]:
        """The claims Redis has numbered: the ones to refresh."""
        return [held.claim for held in self._held.values() if held.claim.order is not None]

    def claims(self) -> list[Claim]:
        """Every claim we hold, numbered or not: the ones to write back when Redis returns."""
        return [held.claim for held in self._held.values()]
