"""
CPU per relayed frame in the relaying core and the session, in process: no sockets, no
Autobahn, so a change to the routing or to the session's handling shows on its own.

    .venv/bin/python bench/relay_path.py [--calls N] [--repeat R]   (after make venv)

Each round is a station Heartbeat CALL in and every upstream's answer in (the primary's
relayed to the station, the secondary's consumed), with one upstream and with two. Prints
the best of R runs of N rounds, in microseconds of process CPU per frame in.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

from twisted.internet.task import Clock

from ocppproxy.core.observer import NullObserver
from ocppproxy.core.routing import StationRelay
from ocppproxy.core.transactions import TransactionStore
from ocppproxy.relay.session import StationSession
from ocppproxy.wire.limits import StationLimits

CALL = b'[2,"19223201","Heartbeat",{}]'
ANSWER = b'[3,"19223201",{"currentTime":"2026-12-03T08:00:00Z"}]'


class _Station:
    """The station's protocol as the session uses it: open, taking every frame."""

    STATE_OPEN = 3
    state = 3
    peer = "tcp4:127.0.0.1:1"

    def sendMessage(self, payload: bytes, isBinary: bool) -> None:
        pass


class _Link:
    """An upstream link as the session uses it: connected, taking every frame."""

    def __init__(self, name: str) -> None:
        self.url = f"ws://127.0.0.1:9/{name}/CP_1"
        self.connected = True

    def start(self) -> None:
        pass

    def send(self, payload: bytes) -> None:
        pass


def core_round(names):
    relay = StationRelay("CP_1", {name: f"ws://127.0.0.1:9/{name}/CP_1" for name in names}, TransactionStore())
    relay.use_subprotocol("ocpp1.6")

    def one_round() -> None:
        relay.from_station(CALL, 1.0)
        for name in names:
            relay.from_upstream(name, ANSWER, 1.0)

    return one_round


def session_round(names):
    # The clock stands still here: a frame rate no loop reaches, or every frame after the
    # burst would take the throttling path (and fail on the stand-in station, which has no transport).
    clock = Clock()
    limits = StationLimits(clock, max_frames_per_second=1e12, frame_burst=10**12)
    session = StationSession("CP_1", _Station(), clock, lambda session: None, NullObserver(), limits=limits)
    config = SimpleNamespace(handshake_timeout=10, pending_call_timeout=40.0, failover=False, upstream_calls={})
    session.attach({name: _Link(name) for name in names}, ["ocpp1.6"], config, TransactionStore())
    session.relay.use_subprotocol("ocpp1.6")
    for name in names:
        session.upstream_connected(name)

    def one_round() -> None:
        session.from_station(CALL, False)
        for name in names:
            session.from_upstream(name, ANSWER)

    return one_round


def cpu_per_frame(make_round, names, rounds: int) -> float:
    one_round = make_round(names)
    start = time.process_time()
    for _ in range(rounds):
        one_round()
    return (time.process_time() - start) / (rounds * (1 + len(names))) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50_000, help="rounds per run (default 50,000)")
    parser.add_argument("--repeat", type=int, default=7, help="runs, the best is kept (default 7)")
    options = parser.parse_args()
    for label, make_round in (("core (StationRelay)", core_round), ("session (StationSession)", session_round)):
        for names in (("primary",), ("primary", "secondary")):
            best = min(cpu_per_frame(make_round, names, options.calls) for _ in range(options.repeat))
            print(f"{label:25s} {' + '.join(names):20s} {best:5.2f} us per frame in")


if __name__ == "__main__":
    main()
