"""
Which upstreams a station's frames go to, and in what state each link is: live, joining
(its link asked for, not open yet), replaying (open, the station's BootNotification
replayed, its answer awaited) or leaving (off the route, closed once it owes nothing).
Pure bookkeeping for L{ocppproxy.core.routing.StationRelay}.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .frame_queue import FrameQueue

LIVE = "live"
JOINING = "joining"
REPLAYING = "replaying"
LEAVING = "leaving"
_CACHED_ACTIONS = 256


class Membership:
    """
    The station's upstream links by name and state. A station frame goes at once to the
    live ones whose C{receives} admits its action, and is held for the joining and
    replaying ones (bounded: the oldest dropped first) until they go live.
    """

    def __init__(self, names: Iterable[str], receives: Mapping[str, frozenset | None], backlog_limit: int) -> None:
        # name -> state, read by the relay on every frame
        self.states: dict[str, str] = {name: LIVE for name in names}
        self._wanted: tuple[str, ...] = tuple(self.states)
        self._receives = dict(receives)
        self._backlog_limit = backlog_limit
        self._backlogs: dict[str, FrameQueue[bytes]] = {}
        # name -> (message id of the replayed BootNotification, deadline of its answer)
        self.replays: dict[str, tuple[str, float]] = {}
        self.fan_out_cache: dict[str | None, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.states

    def __len__(self) -> int:
        return len(self.states)

    def state(self, name: str) -> str | None:
        """The state of C{name}'s link, None when the station has none."""
        return self.states.get(name)

    def names(self) -> tuple[str, ...]:
        """Every upstream the station has a link to (or asked for), in route order, then the leaving ones."""
        return (*self._wanted, *(name for name in self.states if name not in self._wanted))

    def leaving(self) -> list[str]:
        """The upstreams off the route whose links are still open."""
        return [name for name, state in self.states.items() if state is LEAVING]

    def set_receives(self, name: str, receives: frozenset | None) -> None:
        """Which station CALLs and SENDs C{name} gets from now on (None: all)."""
        self._receives[name] = receives
        self.fan_out_cache.clear()

    def fan_out(self, action: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The upstreams a station request with C{action} goes to now, and those it is held for."""
        found = self.fan_out_cache.get(action)
        if found is not None:
            return found
        live: list[str] = []
        held: list[str] = []
        for name in self._wanted:
            rule = self._receives.get(name)
            if rule is None or action in rule:
                (live if self.states[name] is LIVE else held).append(name)
        found = (tuple(live), tuple(held))
        if len(self.fan_out_cache) < _CACHED_ACTIONS:
            self.fan_out_cache[action] = found
        return found

    def hold(self, name: str, payload: bytes) -> bool:
        """Keep a frame for C{name} until it goes live; True if the oldest held one was dropped for it."""
        return self._backlogs[name].push(payload)

    def want(self, names: tuple[str, ...]) -> tuple[list[str], list[str]]:
        """
        The upstreams the station's frames go to from now on, in order: returns those that
        need a link opened, and those whose link never went live and is closed now (a live
        one left out becomes leaving; a leaving one wanted again is live again).
        """
        opened, closed = [], []
        for name in names:
            state = self.states.get(name)
            if state is None:
                self.states[name] = JOINING
                self._backlogs[name] = FrameQueue(self._backlog_limit)
                opened.append(name)
            elif state is LEAVING:
                self.states[name] = LIVE
        for name, state in list(self.states.items()):
            if name in names:
                continue
            if state is LIVE:
                self.states[name] = LEAVING
            elif state is not LEAVING:
                self.drop(name)
                closed.append(name)
        self._wanted = names
        self.fan_out_cache.clear()
        return opened, closed

    def drop(self, name: str) -> None:
        """The station's link to C{name} is closed."""
        self.states.pop(name, None)
        self._backlogs.pop(name, None)
        self.replays.pop(name, None)
        self.fan_out_cache.clear()

    def replaying(self, name: str, message_id: str, deadline: float) -> None:
        """C{name}'s link is open and the station's BootNotification was replayed to it as C{message_id}."""
        self.states[name] = REPLAYING
        self.replays[name] = (message_id, deadline)

    def go_live(self, name: str) -> list[bytes]:
        """C{name} gets live traffic from now on: returns the frames held for it, oldest first."""
        self.states[name] = LIVE
        self.replays.pop(name, None)
        self.fan_out_cache.clear()
        backlog = self._backlogs.pop(name, None)
        return backlog.drain() if backlog is not None else []

    def next_replay_deadline(self) -> float | None:
        """When the earliest replayed BootNotification stops waiting for its answer, or None."""
        return min((deadline for _, deadline in self.replays.values()), default=None)
