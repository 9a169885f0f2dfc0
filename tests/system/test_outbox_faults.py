"""
Faults of the outbox's file with the real writer thread: a disk that fills up (a small
tmpfs, mounted when the tests run as root), then has room again. Relaying goes on with
the memory queues; one error line per episode, one line when it recovers, the file then
holds what the memory queues held.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

from twisted.internet import reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest

from ocppproxy.config.model import OutboxConfig
from ocppproxy.core.ocppj import parse_frame
from ocppproxy.relay.outbox_db import OutboxDatabase
from ocppproxy.relay.outbox_service import OutboxService

from ..e2e import ProxyTestCase, async_test
from ..peers import poll_until


def mount_tmpfs(path: str, size: str) -> None:
    """A tmpfs of C{size} on C{path}; SkipTest when that cannot be done (not root, no mount)."""
    if os.geteuid() != 0:
        raise SkipTest("a disk-full tmpfs needs root (the unit tier injects the fault instead)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                            capture_output=True, text=True, check=False, timeout=10)
    if result.returncode != 0:
        raise SkipTest(f"cannot mount a tmpfs: {result.stderr.strip()}")


class DiskFullTests(ProxyTestCase):
    timeout = 60

    @async_test
    async def test_disk_full_then_room_again(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        mount_tmpfs(directory, "1m")
        self.addCleanup(subprocess.run, ["umount", "-l", directory], check=False, timeout=10)
        lines = []
        observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        service = OutboxService(OutboxConfig(directory, max_bytes=1 << 30), reactor, retry_interval=0.2)
        service.startService()
        self.addCleanup(service.stopService)
        outbox = service.outbox
        # Leave little room: a filler file takes most of the tmpfs.
        filler = os.path.join(directory, "filler")
        with open(filler, "wb") as stream:
            stream.write(b"\0" * (1024 * 1024 - 256 * 1024))
        sent = 0

        def owe(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                payload = json.dumps([2, f"m-{sent}", "MeterValues", {"connectorId": 1, "meterValue": [],
                                                                      "pad": "x" * 500}]).encode()
                outbox.owed("CP_F", "billing", parse_frame(payload), payload)
                sent += 1

        async def fill():
            owe(50)
            await poll_until(lambda: _later(outbox.store.commits), lambda _: True, str, timeout=1)
            return outbox.store.healthy

        await poll_until(fill, lambda healthy: not healthy, lambda _: "the disk never filled up", timeout=30)
        owe(100)  # still relayed, into the memory queue: no second error line
        errors = [line for line in lines if "cannot be written" in line]
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("full", errors[0])
        os.remove(filler)
        await poll_until(lambda: _later(outbox.store.healthy), bool, lambda _: "never recovered", timeout=10)
        self.assertEqual(len([line for line in lines if "is written again" in line]), 1)
        self.assertEqual(len(outbox.queue("CP_F", "billing")), sent)
        await service.stopService().asFuture(asyncio.get_event_loop())
        check = OutboxDatabase(directory)
        check.open()
        loaded = check.load()
        check.close()
        self.assertEqual([entry.message_id for entry in loaded.entries[("CP_F", "billing")]],
                         [f"m-{index}" for index in range(sent)])


async def _later(value):
    """C{value}, after one turn of the loop (poll_until awaits its probe)."""
    await asyncio.sleep(0.01)
    return value
