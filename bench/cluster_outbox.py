"""
Cluster mode's outbox against a real redis-server (started here, no persistence): what
the Redis Streams store costs. Rows: entries per second written to Redis when the mirror
is away (every entry stays), the reactor's CPU per write() (the frame's path), the Redis
calls per group, the time to load a station's backlog of N entries, and the same writes
with the mirror keeping up (each entry delivered within the group: Redis gets nothing).

    .venv/bin/python bench/cluster_outbox.py [entries]
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait(reactor, condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await task.deferLater(reactor, 0.001, lambda: None)


async def main(reactor, count: int, port: int) -> None:
    from ocppproxy.cluster.outbox_follow import ClusterOutboxService
    from ocppproxy.cluster.service import ClusterService
    from ocppproxy.config.model import ClusterConfig, OutboxConfig
    from ocppproxy.core.ocppj import parse_frame
    from ocppproxy.relay.outbox_db import DELETE

    cluster = ClusterService(
        ClusterConfig(redis_url=f"redis://127.0.0.1:{port}/0", instance="bench", ownership_ttl=30), reactor,
        lambda session, by: None,
    )
    outbox_directory = tempfile.mkdtemp(prefix="ocppproxy-bench-outbox-")
    service = ClusterOutboxService(OutboxConfig(directory=outbox_directory), reactor, cluster, {}, lambda: None,
                                   10.0, 30.0)
    service.setServiceParent(cluster)
    cluster.startService()
    store, outbox = service.store, service.outbox
    await wait(reactor, lambda: store.state == "up")
    frames = []
    for number in range(count):
        payload = json.dumps([2, f"m{number}", "MeterValues", {
            "connectorId": 1, "transactionId": 7,
            "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": str(number)}]}]}],
            separators=(",", ":")).encode()
        frames.append((parse_frame(payload), payload))

    # The mirror away: every entry written, one group per reactor turn of 1,000 frames.
    commits = store.commits
    started, cpu = time.monotonic(), 0.0
    for start in range(0, count, 1000):
        before = time.process_time()
        for frame, payload in frames[start : start + 1000]:
            outbox.owed("CP_BENCH", "mirror", frame, payload)
        cpu += time.process_time() - before
        await task.deferLater(reactor, 0, lambda: None)
    await wait(reactor, lambda: not store._pending and not store._in_flight)
    elapsed = time.monotonic() - started
    groups = store.commits - commits
    print(f"mirror away: {count} entries in Redis in {elapsed:.2f} s = {count / elapsed:,.0f} entries/s,"
          f" {groups} script calls ({count / max(groups, 1):.0f} entries each)")
    print(f"reactor CPU per owed() (the frame's path, write() included): {cpu / count * 1e6:.2f} us")

    # A new holder loads the backlog.
    outbox.unload_station("CP_BENCH")
    started = time.monotonic()
    loaded = await store.load("CP_BENCH")
    elapsed = time.monotonic() - started
    print(f"load of a {len(loaded[0]['mirror'])}-entry backlog: {elapsed * 1000:.0f} ms")

    # The mirror keeping up: each entry delivered before its group went; Redis gets nothing.
    commits = store.commits
    before = time.process_time()
    for number, (frame, payload) in enumerate(frames):
        entry = outbox.owed("CP_LIVE", "mirror", frame, payload)
        store.write((DELETE, "CP_LIVE", "mirror", entry.seq))
        if number % 1000 == 999:
            await task.deferLater(reactor, 0, lambda: None)
    cpu = time.process_time() - before
    await wait(reactor, lambda: not store._pending and not store._in_flight)
    print(f"mirror keeping up: {store.commits - commits} script calls for {count} entries,"
          f" {cpu / count * 1e6:.2f} us reactor CPU per entry (owed + delivered)")
    stopped: Deferred = cluster.stopService()
    await stopped
    shutil.rmtree(outbox_directory, ignore_errors=True)


def run(entries: int) -> None:
    """Start a redis-server on a free port, measure, stop it."""
    port = free_port()
    directory = tempfile.mkdtemp(prefix="ocppproxy-bench-redis-")
    server = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory, stdout=subprocess.DEVNULL,
    )
    try:
        task.react(lambda reactor: ensureDeferred(main(reactor, entries, port)))
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
