"""
CPU per relayed frame in the relaying core and the session, in process: no sockets, no
Autobahn, so a change to the routing or to the session's handling shows on its own.

    .venv/bin/python bench/relay_path.py [--calls N] [--repeat R]   (after make venv)

Each round is a station Heartbeat CALL in and every upstream's answer in (the primary's
relayed to the station, the mirrors' consumed), with one upstream, two and three. Prints
the best of R runs of N rounds, in microseconds of process CPU per frame in. Then the
durable outbox's rows: CPU per station CALL with a mirror, without and with the outbox,
the mirror connected and away (the SQLite work done in this thread, so counted), and away
with 50 stations taking turns (their entries interleaved in the file, as in a daemon).
"""

from __future__ import annotations

import argparse
import time
from collections import deque
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
    transport = SimpleNamespace(pauseProducing=lambda: None, resumeProducing=lambda: None)

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
    clock = Clock()
    # A closed loop far over limits.max_frames_per_second, which is not what this measures.
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


def outbox_round(names, mirror_up: bool = True, outbox: bool = True, stations: int = 1, lag: int = 0):
    """
    As L{session_round}, the upstreams after the first through an outbox (SQLite in a
    temporary directory, its group commit timer on the clock, which moves 5 ms every 20
    rounds, the writer thread's work done in this thread so that process CPU counts it);
    with C{mirror_up} false the mirrors are away: their frames accumulate, and they answer
    nothing. With C{stations} the rounds take turns among that many stations (one outbox,
    one file). With C{lag} the mirrors answer each CALL that many rounds later (as in a
    daemon, where a mirror's answer comes a few milliseconds after the CALL), the clock
    moving 0.25 ms a round.
    """
    import os
    import tempfile

    from twisted.internet.defer import fail, succeed

    from ocppproxy.config.model import OutboxConfig
    from ocppproxy.relay.outbox import Outbox
    from ocppproxy.relay.outbox_store import OutboxStore

    def run_now(function, *args):
        try:
            return succeed(function(*args))
        except Exception:
            return fail()

    clock = Clock()
    limits = StationLimits(clock, max_frames_per_second=1e12, frame_burst=10**12)
    config = SimpleNamespace(handshake_timeout=10, pending_call_timeout=40.0, failover=False, upstream_calls={})
    if outbox:
        directory = tempfile.mkdtemp(prefix="ocppproxy-bench-outbox-")
        store = OutboxStore(OutboxConfig(directory), clock, run_now)
        box = Outbox(store, clock.seconds)
        box.restore(store.start().result)
    sessions = []
    for number in range(stations):
        session = StationSession(
            f"CP_{number + 1}", _Station(), clock, lambda session: None, NullObserver(), limits=limits
        )
        links = {name: _Link(name) for name in names}
        for name in names[1:]:
            links[name].connected = mirror_up
        session.attach(links, ["ocpp1.6"], config, TransactionStore())
        session.relay.use_subprotocol("ocpp1.6")
        if outbox:
            session.use_outbox(box, lambda name: True)
        for name in names:
            if name == names[0] or mirror_up:
                session.upstream_connected(name)
        sessions.append(session)
    answering = names if mirror_up else names[:1]
    # About 200 CALLs a second per station commit: one group per round here is the worst case;
    # a group per 20 rounds is what a busy instance does.
    count = [0]
    messages = [f'[2,"{index}","Heartbeat",{{}}]'.encode() for index in range(1000)]
    answers = [f'[3,"{index}",{{"currentTime":"2026-12-03T08:00:00Z"}}]'.encode() for index in range(1000)]

    late: deque = deque()

    def one_round() -> None:
        index = count[0] % 1000
        session = sessions[count[0] % stations]
        count[0] += 1
        session.from_station(messages[index], False)
        if lag:
            session.from_upstream(names[0], answers[index])
            late.append((session, index))
            if len(late) > lag:
                session, index = late.popleft()
                for name in answering[1:]:
                    session.from_upstream(name, answers[index])
            clock.advance(0.00025)  # (the same 5 ms per 20 rounds, but the entries' ages in steps of a round)
            return
        for name in answering:
            session.from_upstream(name, answers[index])
        if count[0] % 20 == 0:
            clock.advance(0.005)

    return one_round


def cpu_per_call(make_round, rounds: int) -> float:
    """Process CPU per round (one station CALL and its answers), in microseconds."""
    one_round = make_round()
    start = time.process_time()
    for _ in range(rounds):
        one_round()
    return (time.process_time() - start) / rounds * 1e6


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
        for names in (("primary",), ("primary", "secondary"), ("primary", "secondary", "mirror")):
            best = min(cpu_per_frame(make_round, names, options.calls) for _ in range(options.repeat))
            print(f"{label:25s} {' + '.join(names):20s} {best:5.2f} us per frame in")
    names = ("primary", "mirror")
    rows = {}
    for label, up, outbox, stations, *lag in (
        ("no outbox, mirror connected", True, False, 1),
        ("outbox, mirror connected", True, True, 1),
        ("no outbox, mirror connected, answers 2 ms late", True, False, 1, 8),
        ("outbox, mirror connected, answers 2 ms late", True, True, 1, 8),
        ("no outbox, mirror down", False, False, 1),
        ("outbox, mirror down", False, True, 1),
        ("no outbox, mirror down, 50 stations", False, False, 50),
        ("outbox, mirror down, 50 stations", False, True, 50),
    ):
        rounds = max(options.calls // 5, 1000)
        rows[label] = min(
            cpu_per_call(
                lambda up=up, outbox=outbox, stations=stations, lag=lag: outbox_round(names, up, outbox, stations, *lag),
                rounds,
            )
            for _ in range(max(options.repeat // 2, 1))
        )
    for label, value in rows.items():
        base = rows[label.replace("outbox,", "no outbox,", 1) if label.startswith("outbox") else label]
        print(f"{'outbox (StationSession)':25s} {label:47s} {value:6.2f} us per CALL  {value / base:4.2f}x")


if __name__ == "__main__":
    main()
