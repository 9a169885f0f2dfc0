"""
A station session's links through the durable outbox (L{OutboxLinks}, a mixin of
L{ocppproxy.relay.session.StationSession}): what the station sends a mirror is written
to the outbox first and leaves it by the rules of L{ocppproxy.core.outbox.OutboxQueue}:
the backlog first, in order, then live frames, a bounded window, ids translated when
sent; the mirror's answers to entries are consumed here. The primary's traffic never
goes through the outbox, and the station never waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from typing import TYPE_CHECKING

from ..core.effects import Effect
from ..core.observer import StationFrame
from ..core.ocppj import ANSWERS, CALLRESULT, REQUESTS, Frame, FrameError, parse_frame
from ..core.outbox import CARRY_TX, START

if TYPE_CHECKING:
    from ..core.outbox import OutboxQueue
    from .outbox import Outbox

_ANSWER_STARTS = (b"[3", b"[4", b"[5")
_JSON_SPACE = b" \t\r\n"
_tokens = count(1)
"""Each session's token (L{ocppproxy.core.outbox.Entry.live}): an int, so that an entry holds no session."""


class OutboxLinks:
    """The outbox side of a station session; inert (every method returns False) without an outbox."""

    outbox: Outbox | None = None
    outbox_for: Callable[[str], bool] = staticmethod(lambda name: False)
    _station_frame: Frame | None = None
    _station_payload: bytes | None = None
    _held_live: dict[str, list[bytes]] = {}
    _outbox_token = 0

    def use_outbox(self, outbox: Outbox | None, outbox_for: Callable[[str], bool], sent_auth: bool = False) -> None:
        """
        Send to the upstreams C{outbox_for} names (mirrors that did not opt out) through
        C{outbox}; C{sent_auth}: the station's handshake carried an C{Authorization}.
        """
        self.outbox = outbox
        self.outbox_sent_auth = sent_auth
        self._held_live: dict[str, list[bytes]] = {}
        self.outbox_for = outbox_for
        self._outbox_token = next(_tokens)

    def _through_outbox(self, name: str) -> bool:
        """Whether the station's frames for C{name} go through the outbox: a mirror, or the primary during failover."""
        relay = self.relay
        if self.outbox is None or relay is None:
            return False
        if name == relay.plain_primary:
            return False  # (the common case first: no call to outbox_for)
        return self.outbox_for(name)

    def _outbox_station_frame(self, payload: bytes, effects: list[Effect]) -> None:
        """
        The frame the station sent, being relayed now with C{effects} (its untranslated
        payload is what the outbox keeps): as the relay parsed it (its last effect tells the
        observers of it), not parsed again. A frame the relay refused has no such effect,
        and nothing to owe a mirror.
        """
        last = effects[-1] if effects else None
        frame = last.frame if last.__class__ is StationFrame else None
        self._station_frame = frame if frame is not None and frame.kind in REQUESTS else None
        self._station_payload = payload

    def _outbox_send(self, name: str, payload: bytes) -> bool:
        """
        A Send to upstream C{name}: True if the outbox took it (a station CALL or SEND owed
        to a mirror), or if it waits behind the backlog of an upstream now answering the station.
        """
        if name == self.relay.plain_primary or not self.outbox_for(name):
            # The primary (the common case, on every CALL), or a mirror that opted out: only
            # the backlog of an upstream now answering the station, if any, holds the frame.
            return self._behind_backlog(name, payload)
        frame = self._station_frame
        if frame is not None:
            original = self._station_payload
        else:
            try:
                frame = parse_frame(payload)
            except FrameError:
                return False
            if frame.kind not in REQUESTS:
                return False  # the station's answer to the mirror's CALL: as today
            original = payload
        link = self.links.get(name)
        connected = link is not None and link.connected
        queue, entry = self.outbox.owe(self.station_id, name, frame, original, self._outbox_token, connected)
        if entry.sent:
            # A connected mirror keeping up: the entry goes at once, nothing to look up.
            link.send(original if entry.action not in CARRY_TX else queue.payload_for(entry))
        elif connected and queue is not None:
            self._outbox_pump(name, live_seq=entry.seq)
        return True

    def _behind_backlog(self, name: str, payload: bytes) -> bool:
        """A live frame to C{name}, which answers the station and has a backlog: held behind it (bounded)."""
        outbox = self.outbox
        if outbox is None or self._station_frame is None:
            return False
        queue = outbox.queues.get((self.station_id, name))
        if queue is None or not len(queue):
            if name in self._held_live:
                self._release(name)
            return False
        now = self._clock.seconds()
        if not queue.hold_live(now, self._handshake_timeout):
            self._release(name)
            return False
        held = self._held_live.setdefault(name, [])
        if not held:
            self._clock.callLater(self._handshake_timeout, self._release, name)
        held.append(payload)
        return True

    def _release(self, name: str) -> bool:
        """Send the live frames held behind C{name}'s backlog, in order (its backlog is done, or waited enough)."""
        held = self._held_live.pop(name, None)
        link = self.links.get(name)
        if held and link is not None:
            queue = self.outbox.queues.get((self.station_id, name))
            if queue is not None and len(queue) and queue.hold_live(self._clock.seconds(), self._handshake_timeout):
                self._held_live[name] = held  # still within its time
                return False
            for payload in held:
                link.send(payload)
        return bool(held)

    def _outbox_pump(self, name: str, live_seq: int | None = None) -> None:
        """Send what the queue says is ready to C{name}, if its link is connected."""
        link = self.links.get(name)
        if link is None or not link.connected or self.outbox is None:
            return
        outbox, station = self.outbox, self.station_id
        queue = outbox.queue(station, name)
        for entry in queue.ready():
            link.send(queue.payload_for(entry))
            outbox.sent(station, name, entry, entry.seq != live_seq, queue)
        if name in self._held_live and not len(queue):
            self._release(name)

    def _outbox_answer(self, name: str, payload: bytes) -> bool:
        """
        A frame from upstream C{name}: True if it was handled here (parsed here, once: the
        relay then has the parsed frame if it is to have it): an answer to an entry the
        relay does not know (a backlog CALL from before), consumed; or an answer to a live
        CALL, the entry delivered and the answer relayed. False: the relay is to have it
        as without the outbox. The primary's StartTransaction answers give the station's ids.
        """
        outbox = self.outbox
        if outbox is None:
            return False
        if payload[:2] not in _ANSWER_STARTS and payload[:16].translate(None, _JSON_SPACE)[:2] not in _ANSWER_STARTS:
            return False
        relay = self.relay
        queue = outbox.queues.get((self.station_id, name))
        if queue is None and (name == relay.plain_primary or not self.outbox_for(name)):
            if b"transactionId" not in payload:
                return False  # the primary's answer, nothing owed to it and no transaction id: as without the outbox
        try:
            frame = parse_frame(payload)
        except FrameError:
            return False  # the relay says what is wrong with it
        if frame.kind not in ANSWERS:
            return False
        entry = queue.in_flight.get(frame.message_id) if queue is not None else None
        if entry is not None and entry.live == self._outbox_token:
            if entry.action != START and relay.plain_primary not in (name, None):
                # The lean lane: a mirror's answer to a live CALL this session owed it.
                effects = relay.from_upstream(name, payload, self._clock.seconds(), frame)
                outbox.delivered(self.station_id, name, queue, entry)
                if queue.unsent or self._held_live:
                    self._outbox_pump(name)
                self._carry_out(effects)
                return True
        answering = relay.route.primary if relay.plain_primary is not None else relay.route.failover
        # A mirror, the primary during failover, or an upstream that became the primary
        # (a migration) with a backlog from its mirror days; the primary with no queue: nothing owed.
        entry = outbox.answered(self.station_id, name, frame, queue) if queue is not None else None
        body = frame.body
        if name == answering and frame.kind == CALLRESULT and isinstance(body, dict):
            if type(body.get("transactionId")) is int:
                # The station takes its transaction id from this answer.
                outbox.station_started(self.station_id, frame.message_id, body["transactionId"])
        if entry is not None:
            self._outbox_pump(name)
            if entry.live != self._outbox_token:
                return True  # an answer to a CALL of the backlog: consumed
        # Not owed through the outbox, or a live CALL's answer: the relay has it too.
        self._carry_out(relay.from_upstream(name, payload, self._clock.seconds(), frame))
        return True

    def _outbox_connected(self, name: str) -> None:
        """
        C{name}'s link is (back) up: its backlog goes first. An upstream that became the
        primary since its entries were written gets them too, its answers consumed.
        """
        outbox = self.outbox
        if outbox is not None and (self._through_outbox(name) or len(outbox.queues.get((self.station_id, name), ()))):
            self._outbox_pump(name)

    def outbox_loaded(self) -> None:
        """Cluster mode: the station's backlog came from Redis: each connected link sends it, then the live entries."""
        if self.outbox is not None:
            for name in list(self.links):
                self._outbox_connected(name)

    def _outbox_disconnected(self, name: str) -> None:
        """C{name}'s link is down: what was in flight is sent again when it is back (from the outbox, not the link)."""
        if self.outbox is None or (self.station_id, name) not in self.outbox.queues:
            return
        self.outbox.queue(self.station_id, name).link_lost()
        link = self.links.get(name)
        if link is not None:
            link.queue.clear()


__all__ = ["OutboxLinks"]
