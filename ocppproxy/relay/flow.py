"""
When a station is read from (a mixin of L{StationSession}): reading pauses while its
write buffer is over C{limits.max_write_buffer} (its upstream links too), and while it
sends over C{limits.max_frames_per_second}; both may hold at once, and reading resumes
once neither does. A station that takes nothing within C{stall_timeout} is closed.
"""

from __future__ import annotations

NOT_READING = 1008
# Why reading from a station is paused (both may hold at once): its write buffer is
# full, or it sends frames faster than limits.max_frames_per_second.
BUFFER_FULL = 1
THROTTLED = 2


class ReadingFlow:
    """Pausing and resuming the reads of a station; mixed into L{StationSession}, whose state it uses."""

    @property
    def stalled(self) -> bool:
        """Whether the station is not taking what is sent to it: its sources are paused."""
        return self._write_watch is not None and self._write_watch.full

    @property
    def throttled(self) -> bool:
        """Whether reading from the station is paused because it sends over its frame rate."""
        return bool(self._paused_by & THROTTLED)

    def _pause_reading(self, reason: int) -> None:
        if not self._paused_by:
            self.protocol.transport.pauseProducing()
        self._paused_by |= reason

    def _resume_reading(self, reason: int) -> None:
        if self._paused_by & reason:
            self._paused_by &= ~reason
            if not self._paused_by:
                self.protocol.transport.resumeProducing()

    def _throttle(self, now: float) -> None:
        """Over the frame rate: stop reading from the station until its debt is paid (one warning per episode)."""
        if self._closing:
            return  # its close handshake is read whatever it sends
        bucket = self._bucket
        if bucket.rested:
            bucket.rested = False
            self._log.warn(
                "station {station} ({peer}) sends over {rate:g} frames/s (limits.max_frames_per_second, burst"
                " limits.frame_burst {burst}): reading from it paused until its rate is back under the limit",
                station=self.station_id,
                peer=self.protocol.peer,
                rate=bucket.rate,
                burst=int(bucket.burst),
            )
        self._pause_reading(THROTTLED)
        self._throttle_timer = self._clock.callLater(bucket.wait(now), self._throttle_over)

    def _throttle_over(self) -> None:
        # Frames read after the pause began (the rest of that read) added to the debt.
        wait = self._bucket.wait(self._clock.seconds())
        if wait > 0.0:
            self._throttle_timer = self._clock.callLater(wait, self._throttle_over)
            return
        self._throttle_timer = None
        self._resume_reading(THROTTLED)

    def write_buffer_full(self) -> None:
        """
        Over C{max_write_buffer} unsent to the station: stop reading from its upstream
        links and from the station itself (its own CALLs are what produce its answers),
        so that TCP holds the senders back.
        """
        self._write_limits.count_stall("station")
        self._pause_reading(BUFFER_FULL)
        for link in self.links.values():
            link.pause_reading()

    def write_buffer_drained(self) -> None:
        """The station's buffer has drained: read from it (unless throttled) and its upstream links again."""
        self._resume_reading(BUFFER_FULL)
        for link in self.links.values():
            link.resume_reading()

    def write_buffer_stalled(self) -> None:
        """Nothing drained within C{stall_timeout}: close the station, without waiting for a close handshake."""
        self._log.warn(
            "station {station} ({peer}) has not taken its unsent frames in {timeout:g} s (stalled, over {limit} bytes):"
            " closing it with {code}",
            station=self.station_id,
            peer=self.protocol.peer,
            timeout=self._write_limits.stall_timeout,
            limit=self._write_limits.max_write_buffer,
            code=NOT_READING,
        )
        self.close(NOT_READING, "not reading what is sent to it")
        # Its close frame waits behind what it does not read: the close handshake cannot end.
        self.protocol.dropConnection(abort=True)
