"""
Bounds on what connecting stations can make the proxy hold: stations, opening
handshakes in progress (in all and per source address), the bytes of one handshake
request, the connections of one station id per minute, and the frame rate settings
each station's session applies. Counting and deciding; the station protocol and its
session apply the decisions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Sequence
from typing import NamedTuple

from twisted.logger import Logger

from ..core.forwarded import Network, is_trusted, parse_address
from ..core.rates import ConnectCounter
from ..logs import proxy_logger

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

    def quiet_for(self, now: float) -> float:
        """Seconds from the last warning logged to C{now}."""
        return now - self._last if self._last is not None else float("inf")


class KeyedThrottledWarning:
    """
    A L{ThrottledWarning} per key (a source address): each key is warned about at most
    once per C{interval}. Keys quiet for longer than the interval are forgotten once
    more than C{max_keys} are held, so that a flood from many addresses cannot grow it.
    """

    def __init__(self, log: Logger, clock, interval: float, text: str, max_keys: int = 1024) -> None:
        self._log = log
        self._clock = clock
        self._interval = interval
        self._text = text
        self._max_keys = max_keys
        self._warnings: dict[Hashable, ThrottledWarning] = {}

    def __call__(self, key: Hashable, **fields) -> None:
        """One occurrence for C{key}: log it now, or count it for that key's next warning."""
        warning = self._warnings.get(key)
        if warning is None:
            if len(self._warnings) >= self._max_keys:
                self._forget_quiet_keys()
            warning = self._warnings[key] = ThrottledWarning(self._log, self._clock, self._interval, self._text)
        warning(**fields)

    def _forget_quiet_keys(self) -> None:
        # A forgotten key loses its held-back count (the metrics still count every
        # occurrence); with every key recent, the oldest half goes, or memory would grow.
        now = self._clock.seconds()
        quiet = [key for key, warning in self._warnings.items() if warning.quiet_for(now) >= self._interval]
        if len(quiet) < self._max_keys // 2:
            quiet = list(self._warnings)[: self._max_keys // 2]
        for key in quiet:
            del self._warnings[key]


def source_of(host: str | None) -> str | None:
    """
    What the per-address handshake limit counts for a peer's socket address C{host}: the
    IPv4 address, or the IPv6 /64 network (one subscriber's share, which an attacker
    holds whole); None when C{host} is no IP address (a UNIX socket).
    """
    address = parse_address(host) if host else None
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class HandshakeAdmission(NamedTuple):
    """What to do with a new connection: go on with its handshake or not, and which older one to shed."""

    admitted: bool
    shed: Hashable | None = None
    """An unfinished handshake to abort to make room, or None."""


class _Handshake(NamedTuple):
    peer: str
    source: str | None


class StationLimits:
    """
    Admission of station connections: at most C{max_handshakes} TCP (or TLS) connections
    whose WebSocket opening handshake is unfinished, at most C{max_handshakes_per_address}
    of them from one source address (see L{source_of}; addresses in C{trusted_proxies}
    are exempt), at most C{max_stations} stations.

    When C{max_handshakes} are in progress, a new connection sheds the oldest handshake
    whose request has not been read yet (a peer that holds its slot by sending nothing,
    or a trickle), so that a flood cannot freeze the slots; requests already read wait
    only for the primary and are never shed (shedding them would trade one station's
    progress for another's, and a reconnecting site would make none). Refusals and
    sheddings are logged as throttled warnings and counted in C{refused} and C{shed}.

    At most C{max_connects_per_minute} connections of one station id that its primary
    accepted within a sliding minute (L{admit_connect}, L{connect_accepted}); and each
    station's session reads C{max_frames_per_second} and C{frame_burst} here.
    """

    _log = proxy_logger()

    def __init__(
        self,
        clock,
        max_stations: int = 10000,
        max_handshakes: int = 1000,
        max_handshakes_per_address: int = 20,
        trusted_proxies: Sequence[Network] = (),
        max_frames_per_second: float = 50,
        frame_burst: int = 100,
        max_connects_per_minute: int = 20,
    ) -> None:
        self._clock = clock
        self.max_frames_per_second = max_frames_per_second
        self.frame_burst = frame_burst
        self._connects = ConnectCounter(max_connects_per_minute)
        self.max_stations = max_stations
        self.max_handshakes = max_handshakes
        self.max_handshakes_per_address = max_handshakes_per_address
        self._trusted = tuple(trusted_proxies)
        self._handshakes: dict[Hashable, _Handshake] = {}
        # Handshakes whose request is not read yet, oldest first: the ones that may be shed.
        self._unread: dict[Hashable, None] = {}
        self._per_source: dict[str, int] = {}
        self.refused = {
            "max_handshakes": 0,
            "max_handshakes_per_address": 0,
            "max_stations": 0,
            "max_connects_per_minute": 0,
        }
        """Connections refused, by the limit that refused them."""
        self.shed = 0
        """Unfinished handshakes aborted to make room for a newer connection."""
        self._handshakes_full = ThrottledWarning(
            self._log,
            clock,
            WARNING_INTERVAL,
            "{limit} station handshakes in progress (limits.max_handshakes), all waiting for the primary: "
            "closed a new connection from {peer}",
        )
        self._handshake_shed = ThrottledWarning(
            self._log,
            clock,
            WARNING_INTERVAL,
            "{limit} station handshakes in progress (limits.max_handshakes): closed the oldest unfinished one, "
            "from {shed_peer}, for a new connection from {peer}",
        )
        self._source_full = KeyedThrottledWarning(
            self._log,
            clock,
            WARNING_INTERVAL,
            "{limit} station handshakes in progress from {source} (limits.max_handshakes_per_address): "
            "closed a new connection from {peer}",
        )
        self._stations_full = ThrottledWarning(
            self._log,
            clock,
            WARNING_INTERVAL,
            "{limit} stations connected (limits.max_stations): refused station {station} with 503",
        )

    @property
    def handshakes(self) -> int:
        """Handshakes in progress."""
        return len(self._handshakes)

    def begin_handshake(self, handshake: Hashable, peer: str, host: str | None) -> HandshakeAdmission:
        """
        A connection C{handshake} (any hashable, the protocol for instance) arrived from
        C{peer} (for the log), IP address C{host}. If admitted, call L{end_handshake} once
        its WebSocket is open or it is lost; if the answer names one to shed, that one is
        no longer counted and should be aborted.
        """
        source = None if is_trusted(host or "", self._trusted) else source_of(host)
        if source is not None and self._per_source.get(source, 0) >= self.max_handshakes_per_address:
            self.refused["max_handshakes_per_address"] += 1
            self._source_full(source, limit=self.max_handshakes_per_address, source=source, peer=peer)
            return HandshakeAdmission(False)
        shed = None
        if len(self._handshakes) >= self.max_handshakes:
            if not self._unread:
                self.refused["max_handshakes"] += 1
                self._handshakes_full(limit=self.max_handshakes, peer=peer)
                return HandshakeAdmission(False)
            shed = next(iter(self._unread))
            self._handshake_shed(limit=self.max_handshakes, shed_peer=self._handshakes[shed].peer, peer=peer)
            self.end_handshake(shed)
            self.shed += 1
        self._handshakes[handshake] = _Handshake(peer, source)
        self._unread[handshake] = None
        if source is not None:
            self._per_source[source] = self._per_source.get(source, 0) + 1
        return HandshakeAdmission(True, shed)

    def request_read(self, handshake: Hashable) -> None:
        """The handshake's request is read: it waits for the primary now, and is not shed any more."""
        self._unread.pop(handshake, None)

    def end_handshake(self, handshake: Hashable) -> None:
        """The handshake is over (WebSocket open, connection lost, or shed); a second call does nothing."""
        ended = self._handshakes.pop(handshake, None)
        if ended is None:
            return
        self._unread.pop(handshake, None)
        if ended.source is not None:
            left = self._per_source[ended.source] - 1
            if left:
                self._per_source[ended.source] = left
            else:
                del self._per_source[ended.source]

    def admit_station(self, station: str, stations: int) -> bool:
        """Whether one more station may connect while C{stations} are connected."""
        if stations >= self.max_stations:
            self.refused["max_stations"] += 1
            self._stations_full(limit=self.max_stations, station=station)
            return False
        return True

    def admit_connect(self, station: str, peer: str) -> int | None:
        """
        None if C{station} may connect now; else the seconds after which it may, when its
        primary accepted C{max_connects_per_minute} of its connections within the last
        minute (refused, counted, and one warning per episode).
        """
        refusal = self._connects.check(station, self._clock.seconds())
        if refusal is None:
            return None
        self.refused["max_connects_per_minute"] += 1
        if refusal.first:
            self._log.warn(
                "station {station} connected {limit} times within a minute (limits.max_connects_per_minute):"
                " refusing its new connections with 429 for {retry_after} s, first from {peer};"
                " its open connection, if any, stays",
                station=station,
                limit=self._connects.limit,
                retry_after=refusal.retry_after,
                peer=peer,
            )
        return refusal.retry_after

    def connect_accepted(self, station: str) -> None:
        """The primary accepted a connection of C{station}: it counts against C{max_connects_per_minute}."""
        self._connects.accepted(station, self._clock.seconds())
