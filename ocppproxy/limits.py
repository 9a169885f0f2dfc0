"""
Bounds on what connecting stations can make the proxy hold: stations, opening
handshakes in progress, and the bytes of one handshake request. Pure counting and
deciding; the station protocol applies the decisions.
"""

from __future__ import annotations

from twisted.logger import Logger

from .logs import proxy_logger

# Autobahn buffers an HTTP request until its blank line, without a bound: a peer sending
# header bytes forever would grow that buffer forever. Real handshakes take a few hundred
# bytes; 16 KiB is what common HTTP servers accept for a whole request head.
MAX_HANDSHAKE_BYTES = 16 * 1024

# A flood of refusals says the same thing each time: one warning per this many seconds.
WARNING_INTERVAL = 60.0


class ThrottledWarning:
    """
    A warning logged at most once per C{interval} seconds; each one says how many
    occurrences were held back since the previous one.
    """

    def __init__(self, log: Logger, clock, interval: float, text: str) -> None:
        self._log = log
        self._clock = clock
        self._interval = interval
        self._text = text
        self._last: float | None = None
        self._held_back = 0

    def __call__(self, **fields) -> None:
        """One occurrence: log it now, or count it for the next warning."""
        now = self._clock.seconds()
        if self._last is not None and now - self._last < self._interval:
            self._held_back += 1
            return
        self._log.warn(
            self._text + " ({held_back} more since the last such warning)", held_back=self._held_back, **fields
        )
        self._last = now
        self._held_back = 0


class StationLimits:
    """
    Admission of station connections: at most C{max_handshakes} TCP (or TLS) connections
    whose WebSocket opening handshake is unfinished, at most C{max_stations} stations.
    Refusals are logged as throttled warnings.
    """

    _log = proxy_logger()

    def __init__(self, clock, max_stations: int = 10000, max_handshakes: int = 200) -> None:
        self.max_stations = max_stations
        self.max_handshakes = max_handshakes
        self.handshakes = 0
        self._handshakes_full = ThrottledWarning(
            self._log,
            clock,
            WARNING_INTERVAL,
            "{limit} station handshakes in progress (limits.max_handshakes): closed a new connection from {peer}",
        )
        self._stations_full = ThrottledWarning(
            self._log,
            clock,
            WARNING_INTERVAL,
            "{limit} stations connected (limits.max_stations): refused station {station} with 503",
        )

    def begin_handshake(self, peer: str) -> bool:
        """A connection arrived: True if it may go on with its handshake (then call L{end_handshake} once)."""
        if self.handshakes >= self.max_handshakes:
            self._handshakes_full(limit=self.max_handshakes, peer=peer)
            return False
        self.handshakes += 1
        return True

    def end_handshake(self) -> None:
        """A connection admitted by L{begin_handshake} opened its WebSocket, or was lost."""
        self.handshakes -= 1

    def admit_station(self, station: str, stations: int) -> bool:
        """Whether one more station may connect while C{stations} are connected."""
        if stations >= self.max_stations:
            self._stations_full(limit=self.max_stations, station=station)
            return False
        return True
