"""
What the notifier shares with the other instances of a cluster, as a small interface
(L{AlertSharing}), and its single-instance implementation (L{LocalOnly}), which shares
nothing and answers at once, so a single instance behaves exactly as it always did.

The cluster's implementation, on Redis, is L{ocppproxy.cluster.alerts.ClusterAlerts}:
notify/ never imports Redis. Every Deferred an implementation returns fires with a usable
answer within a bounded time and never fails: when the cluster cannot tell, the answer
is the single instance's (send the alert, judge with local state).
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred, succeed

Place = tuple[int | None, int | None]
"""Where a status applies: (evse, connector); the evse is None for OCPP 1.6."""
Status = tuple[str, str | None, str | None]
"""A remembered status: (status, error code, vendor error code)."""


class AlertSharing(Protocol):
    """The notifier's view of the cluster: who sends an alert, where a station was, what it last said."""

    shared: bool
    """False for a single instance: the notifier then skips the work only a cluster needs."""

    def claim_alert(self, kind: str, subject: str, hold: float) -> Deferred[bool]:
        """
        Claim the alert C{kind} about C{subject} (an upstream URL) for C{hold} seconds:
        fires True if this instance sends it, False if another instance claimed it first.
        """

    def station_arrived(self, station_id: str, window: float) -> Deferred[bool]:
        """
        C{station_id} connected here (its first connection on this instance): fires True
        if it was connected to another instance within the last C{window} seconds.
        """

    def station_left(self, station_id: str, window: float) -> None:
        """C{station_id} left this instance: another instance it reaches within C{window} s sees it as returning."""

    def moved_since(self, station_id: str, since: float) -> bool:
        """Whether another instance claimed C{station_id} at or after C{since} (the notifier's clock)."""

    def count_alert(self, kind: str, subject: str, window: float) -> Deferred[int | None]:
        """
        Count an alert of C{kind} about C{subject} in the cluster's current window of
        C{window} seconds (which the first such alert anywhere opens): fires with its
        number in that window, or None when the cluster cannot tell (count locally).
        """

    def held_back(self, kind: str, subject: str, station_id: str, window: float) -> None:
        """An alert of C{kind} about C{station_id} waits for a summary (the cluster's burst is over its limit)."""

    def gather_held(self, kind: str, subject: str, station_ids: list[str]) -> Deferred[list[str]]:
        """
        This instance's summary window of C{kind} ended, holding back C{station_ids}: the
        stations the summary names, those held back anywhere in the cluster and not yet
        summarised (none if another instance's summary named them already).
        """

    def load_statuses(self, station_id: str) -> Deferred[dict[Place, Status]]:
        """The last statuses the cluster knows of C{station_id}'s connectors (possibly none)."""

    def save_status(self, station_id: str, place: Place, status: Status) -> None:
        """Remember C{status} of C{station_id} at C{place} for the cluster; returns at once."""


class LocalOnly:
    """L{AlertSharing} of a single instance: every alert is ours, every station new, nothing stored."""

    shared = False

    def claim_alert(self, kind: str, subject: str, hold: float) -> Deferred[bool]:
        """Always ours, at once."""
        return succeed(True)

    def station_arrived(self, station_id: str, window: float) -> Deferred[bool]:
        """Never seen elsewhere, at once."""
        return succeed(False)

    def station_left(self, station_id: str, window: float) -> None:
        """Nothing to tell."""

    def moved_since(self, station_id: str, since: float) -> bool:
        """There is nowhere else."""
        return False

    def count_alert(self, kind: str, subject: str, window: float) -> Deferred[int | None]:
        """Counted locally, at once."""
        return succeed(None)

    def held_back(self, kind: str, subject: str, station_id: str, window: float) -> None:
        """The burst limiter keeps it."""

    def gather_held(self, kind: str, subject: str, station_ids: list[str]) -> Deferred[list[str]]:
        """Ours are all there is, at once."""
        return succeed(station_ids)

    def load_statuses(self, station_id: str) -> Deferred[dict[Place, Status]]:
        """Nothing stored, at once."""
        return succeed({})

    def save_status(self, station_id: str, place: Place, status: Status) -> None:
        """Nothing stored."""
