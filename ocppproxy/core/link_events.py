"""
What a station's links report, as decisions (a mixin of L{StationRelay}, whose state it
uses): a link connected or dropped, an attempt failed, an upstream given up, a frame
dropped from a full queue; failover on and off with them; a station left with no
connected upstream closed with 1013. Pure, like the rest of the relay.
"""

from __future__ import annotations

from .effects import STATION, Close, Effect, Log, Send
from .membership import JOINING, REPLAYING
from .observer import (
    FailoverEnded,
    FailoverStarted,
    FrameDropped,
    UpstreamAttemptFailed,
    UpstreamConnected,
    UpstreamDisconnected,
)
from .ocppj import parse_frame

TRY_AGAIN_LATER = 1013


class LinkEvents:
    """The links' side of L{StationRelay}: each method returns the effects, in order."""

    def upstream_connected(self, name: str, now: float) -> list[Effect]:
        """The link to C{name} completed its handshake (its queued frames are already flushed)."""
        state = self._links.state(name)
        if state is None:
            return []
        self._connected.add(name)
        if name == self._answers.primary:
            self._primary_failed = False
            self._answers.primary_connected = True
        effects: list[Effect] = [UpstreamConnected(self.station_id, name, self._urls.get(name, ""))]
        if state is JOINING or state is REPLAYING:
            # (Again, if its link dropped before it answered the replayed BootNotification.)
            self._joined(effects, name, now)
        self._update_failover(effects, now)
        return effects

    def upstream_disconnected(self, name: str, reason: str, now: float) -> list[Effect]:
        """An open link dropped: held failover answers are released; with no upstream left, the station is closed."""
        if name not in self._links:
            return []
        self._connected.discard(name)
        effects: list[Effect] = []
        if name == self._answers.primary:
            self._primary_failed = True
            if self._route.failover is not None:
                for answer in self._answers.primary_lost(now):
                    effects.append(Send(STATION, answer))
                    self._released(answer)
        effects.append(UpstreamDisconnected(self.station_id, name, self._urls.get(name, ""), reason))
        self._update_failover(effects, now)
        self._close_if_no_upstream(effects)
        return effects

    def _released(self, answer: bytes) -> None:
        """A held failover answer reached the station: its transaction id (if any) is the station's."""
        translator = self._translator
        if translator is not None and translator.starts:
            frame = parse_frame(answer)
            if frame.message_id in translator.starts:
                translator.answer(self._route.failover, frame, True)

    def upstream_attempt_failed(self, name: str, reason: str, now: float) -> list[Effect]:
        """A connection attempt to C{name} failed."""
        if name not in self._links:
            return []
        effects: list[Effect] = []
        if name == self._answers.primary:
            self._primary_failed = True
            self._update_failover(effects, now)
        effects.append(UpstreamAttemptFailed(self.station_id, name, self._urls.get(name, ""), reason))
        return effects

    def upstream_gave_up(self, name: str) -> list[Effect]:
        """The link to C{name} stopped retrying: with no upstream left, the station is closed."""
        effects: list[Effect] = []
        self._close_if_no_upstream(effects)
        return effects

    def frame_dropped(self, name: str) -> list[Effect]:
        """The queue for C{name} was full: its oldest frame was dropped."""
        return [FrameDropped(self.station_id, name)]

    def _close_if_no_upstream(self, effects: list[Effect]) -> None:
        if not self._connected and not self._closing:
            effects.append(Close(TRY_AGAIN_LATER, "no central system connected, try again later"))

    def _update_failover(self, effects: list[Effect], now: float) -> None:
        """Failover is on while the primary has failed and the failover mirror is connected."""
        failover = self._route.failover
        if failover is None and self._failover_since is None:
            return
        active = self._primary_failed and failover in self._connected and not self._closing
        station = self.station_id
        if active and self._failover_since is None:
            self._failover_since = now
            self.plain_primary = None
            effects.append(
                Log(
                    "warn",
                    "station {station}: primary away, the {failover} answers (failover)",
                    {"station": station, "failover": failover},
                )
            )
            effects.append(FailoverStarted(station))
        elif not active and self._failover_since is not None:
            duration = now - self._failover_since
            self._failover_since = None
            self.plain_primary = self._route.primary
            effects.append(
                Log(
                    "info",
                    "station {station}: failover ended after {duration:.0f} s",
                    {"station": station, "duration": duration},
                )
            )
            effects.append(FailoverEnded(station, duration))
