"""
A change of route on a connected station, the part of L{ocppproxy.core.routing.StationRelay}
that a live migration runs: links opened for new upstreams (the station's BootNotification
replayed first), closed for those that left once they owe nothing, the new primary
taking over from the first CALL sent once it is live, and the way back when it fails.
Pure, like the rest of the relay.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from .effects import Close, CloseLink, Effect, Log, OpenLink, Send, Timer
from .membership import LIVE
from .ocppj import CALL, Frame, call_error
from .routes import Route, UpstreamRules

SERVICE_RESTART = 1012
BOOT = "BootNotification"


class RouteChanges:
    """
    The methods of L{StationRelay} about changing its route (a mixin: they use its state;
    see there). Until the new primary is live, the station keeps its route: the route in
    force answers, the pending one's links are being opened.
    """

    def change_route(
        self, route: Route, now: float, upstreams: Mapping[str, UpstreamRules] | None = None
    ) -> list[Effect]:
        """
        Move the connected station to C{route}. New upstreams get a link (L{OpenLink}) and,
        once it is open, the station's last BootNotification replayed (its answer consumed),
        then live traffic; upstreams off the route stop getting the station's frames and
        their links are closed (L{CloseLink}) once they owe nothing. A new primary that is
        already a live mirror answers from the next CALL on; otherwise the station keeps
        its route until the new primary is live (see L{upstream_failed_to_open}).
        C{upstreams}: every upstream the configuration now defines, with its rules.
        """
        if self._closing:
            return []
        effects: list[Effect] = []
        if upstreams is not None:
            self._known = frozenset(upstreams)
            for name, rules in upstreams.items():
                self._urls[name], receives = self._rules(name, rules)
                self._links.set_receives(name, receives)
        if route == (self._pending or self._route):
            return effects
        if route.primary == self._route.primary or self._links.state(route.primary) is LIVE:
            self._pending = None
            self._apply(effects, route, now)
        else:
            self._pending = route
            effects.append(
                Log(
                    "info",
                    "station {station}: moving to primary {primary}: {current} answers until {primary}'s link is open",
                    {"station": self.station_id, "primary": route.primary, "current": self._route.primary},
                )
            )
        self._reconcile(effects, now)
        return effects

    def upstream_failed_to_open(self, name: str, reason: str, now: float) -> list[Effect]:
        """
        The link to C{name} asked for by a change of route was refused or not open within
        C{handshake_timeout}. For the new primary, the station keeps its route, or, if its
        primary is no longer configured, is closed with 1012 to reconnect on the new one;
        a new mirror's link goes on trying.
        """
        pending = self._pending
        fields = {"station": self.station_id, "upstream": name, "reason": reason, "primary": self._route.primary}
        if pending is None or name != pending.primary or self._closing:
            return [Log("warn", "station {station}: the link to {upstream} did not open ({reason})", fields)]
        self._pending = None
        known = self._known if self._known is not None else frozenset(pending.upstreams)
        if self._route.primary not in known:
            return [
                Log(
                    "warn",
                    "station {station}: its new primary {upstream} did not open ({reason}) and {primary} is no longer"
                    " configured: closing it with 1012 to reconnect on its new route",
                    fields,
                ),
                Close(SERVICE_RESTART, "the station's central system changed"),
            ]
        effects: list[Effect] = [
            Log(
                "warn",
                "station {station}: its new primary {upstream} did not open ({reason}): it keeps its route,"
                " primary {primary}",
                fields,
            )
        ]
        self._reconcile(effects, now)
        return effects

    def _apply(self, effects: list[Effect], route: Route, now: float) -> None:
        """C{route} is in force: its primary answers the station's CALLs sent from now on."""
        previous = self._route.primary
        self._route = route
        if self._failover_since is None:
            self.plain_primary = route.primary
        answers = self._answers
        answers.primary = route.primary
        answers.failover = route.failover
        answers.primary_connected = route.primary in self._connected
        self._primary_failed = route.primary not in self._connected
        effects.append(
            Log(
                "info",
                "station {station}: route changed: primary {primary}"
                + (" (was {previous})" if previous != route.primary else "")
                + ", mirrors {mirrors}",
                {
                    "station": self.station_id,
                    "primary": route.primary,
                    "previous": previous,
                    "mirrors": ", ".join(route.mirrors) or "none",
                },
            )
        )
        self._update_failover(effects, now)

    def _reconcile(self, effects: list[Effect], now: float) -> None:
        """Links opened for the upstreams now wanted, closed for those no longer wanted."""
        wanted = dict.fromkeys(self._route.upstreams)
        if self._pending is not None:
            wanted.update(dict.fromkeys(self._pending.upstreams))
        opened, closed = self._links.want(tuple(wanted))
        for name in closed:
            self._connected.discard(name)
            effects.append(CloseLink(name))
        for name in opened:
            effects.append(OpenLink(name))
        self._update_translator()
        self._close_drained(effects, now)
        if self._links.leaving():
            effects.append(Timer(self._deadline()))

    def _joined(self, effects: list[Effect], name: str, now: float) -> None:
        """A new upstream's link is open: the station's last BootNotification first, if it sent one."""
        if self._last_boot is None:
            self._go_live(effects, name, now)
            return
        self._replays_sent += 1
        message_id = f"ocppproxy-boot-{self._replays_sent}"
        self._links.replaying(name, message_id, now + self._pending_timeout)
        replay = json.dumps([CALL, message_id, BOOT, self._last_boot], separators=(",", ":")).encode()
        effects.append(Send(name, replay))
        effects.append(Timer(self._deadline()))

    def _go_live(self, effects: list[Effect], name: str, now: float) -> None:
        """C{name} gets the frames held for it, then live traffic; a pending route's primary takes over."""
        for payload in self._links.go_live(name):
            effects.append(Send(name, payload))
        pending = self._pending
        if pending is not None and name == pending.primary:
            self._pending = None
            self._apply(effects, pending, now)
            self._reconcile(effects, now)

    def _close_drained(self, effects: list[Effect], now: float) -> None:
        """Close the links of upstreams off the route that owe nothing: no CALL of theirs at the station, no answer."""
        for name in self._links.leaving():
            if self._station_calls.holds(name) or self._answers.owes(name, now):
                continue
            self._links.drop(name)
            self._connected.discard(name)
            effects.append(
                Log(
                    "info",
                    "station {station}: closing its link to {upstream}, no longer on its route",
                    {"station": self.station_id, "upstream": name},
                )
            )
            effects.append(CloseLink(name))

    def _from_a_stranger(self, name: str, payload: bytes) -> list[Effect]:
        """A frame from an upstream the station no longer has a link to (it crossed the close): dropped."""
        return [
            Log(
                "info",
                "station {station}: frame from {upstream}, no longer on its route, dropped: {frame}",
                {"station": self.station_id, "upstream": name, "frame": self._redactor.shorten(payload)},
            )
        ]

    def _refuse_leaving(self, name: str, frame: Frame) -> list[Effect]:
        """A CALL from an upstream that left the station's route: answered, never relayed (its link is closing)."""
        reason = "the station is no longer routed to this central system"
        return [
            Log(
                "info",
                "station {station}: {action} {id} from {upstream} refused: {upstream} left the station's route",
                {"station": self.station_id, "action": frame.action, "id": frame.message_id, "upstream": name},
            ),
            Send(name, call_error(frame.message_id, "GenericError", reason)),
        ]
