"""The traffic log: JSON lines written from a thread, bounded, rotated by UTC day, flushed on stop."""

from __future__ import annotations

import calendar
import errno
import json
import os
import shutil
import time

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ocppproxy.core.redact import Redactor
from ocppproxy.daemon.trafficlog import FILE_NAME, TrafficLog, format_line

# 2030-01-01 23:59:59 UTC
LATE = calendar.timegm((2030, 1, 1, 23, 59, 59))


class Disk:
    """The space left on a pretend disk, shared by every file opened on it (None: plenty)."""

    free: int | None = None


class FullDisk:
    """A raw file on C{disk}: a write takes what still fits, then fails with ENOSPC."""

    def __init__(self, raw, disk: Disk) -> None:
        self._raw = raw
        self._disk = disk

    def write(self, data) -> int:
        if self._disk.free is None:
            return self._raw.write(data)
        if not self._disk.free:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        taken = self._raw.write(bytes(data[: self._disk.free]))
        self._disk.free -= taken
        return taken

    def __getattr__(self, name):
        return getattr(self._raw, name)


def read_lines(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


class FormatTests(SynchronousTestCase):
    def test_fields(self):
        """A line has the UTC time, station, direction, upstream and the frame verbatim as a string."""
        line = format_line(LATE + 0.25, "CP_1", "to_upstream", "primary", b'[2,"1","Heartbeat",{}]')
        self.assertTrue(line.endswith(b"\n"))
        self.assertEqual(
            json.loads(line),
            {
                "time": "2030-01-01T23:59:59.250Z",
                "station": "CP_1",
                "direction": "to_upstream",
                "upstream": "primary",
                "frame": '[2,"1","Heartbeat",{}]',
            },
        )

    def test_credentials_masked(self):
        """A station password set through a frame is masked in the line; a frame without one stays verbatim."""
        frame = b'[2, "1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "s3cret"}]'
        line = json.loads(format_line(LATE, "CP_1", "from_upstream", "primary", frame))
        self.assertEqual(line["frame"], '[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"***"}]')

    def test_redact_keys_masked(self):
        """The operator's redact keys are masked too, by the redactor the log is given."""
        frame = b'[2,"1","Authorize",{"idTag":"TAG1"}]'
        line = json.loads(format_line(LATE, "CP_1", "from_station", None, frame, Redactor(["idTag"])))
        self.assertEqual(line["frame"], '[2,"1","Authorize",{"idTag":"***"}]')

    def test_bad_utf8_is_replaced(self):
        """A frame that is not UTF-8 still gives one valid JSON line."""
        self.assertEqual(json.loads(format_line(LATE, "CP_1", "from_station", None, b"\xff["))["frame"], "\ufffd[")


class TrafficLogTests(TestCase):
    timeout = 10

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.clock = Clock()
        self.clock.advance(LATE)

    def make_log(self, **kwargs) -> TrafficLog:
        log = TrafficLog(self.directory, reactor, clock=self.clock, **kwargs)
        log.startService()
        self.addCleanup(lambda: log.running and log.stopService())
        return log

    def path(self, name: str = FILE_NAME) -> str:
        return os.path.join(self.directory, name)

    async def test_frames_are_written_by_flush(self):
        """Recording touches no file; a flush writes every frame in order."""
        log = self.make_log()
        log.frame_crossed("CP_1", "from_station", None, b'[2,"1","Heartbeat",{}]')
        log.frame_crossed("CP_1", "to_upstream", "secondary", b'[2,"1","Heartbeat",{}]')
        self.assertFalse(os.path.exists(self.path()))
        await log.flush()
        lines = read_lines(self.path())
        self.assertEqual(
            [(line["direction"], line["upstream"]) for line in lines],
            [
                ("from_station", None),
                ("to_upstream", "secondary"),
            ],
        )
        self.assertEqual(log.written, 2)

    async def test_the_timer_writes_waiting_lines(self):
        """Lines are written flush_delay seconds after the first one waiting, without a flush."""
        log = self.make_log(flush_delay=0.5)
        log.frame_crossed("CP_1", "from_station", None, b"[]")
        self.clock.advance(0.5)
        await log.flush()
        self.assertEqual(len(read_lines(self.path())), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_rotation_by_utc_day_of_each_line(self):
        """A line goes to the file of its own UTC day, even when written in the same batch as the next day's."""
        log = self.make_log()
        log.frame_crossed("CP_1", "from_station", None, b'"day 1"')
        self.clock.advance(2)
        log.frame_crossed("CP_1", "from_station", None, b'"day 2, batch 1"')
        await log.flush()
        log.frame_crossed("CP_1", "from_station", None, b'"day 2, batch 2"')
        await log.flush()
        self.assertEqual(sorted(os.listdir(self.directory)), [FILE_NAME, FILE_NAME + ".2030_1_1"])
        self.assertEqual([line["frame"] for line in read_lines(self.path(FILE_NAME + ".2030_1_1"))], ['"day 1"'])
        self.assertEqual([line["frame"] for line in read_lines(self.path())], ['"day 2, batch 1"', '"day 2, batch 2"'])

    async def test_rotation_across_batches(self):
        """A later batch on a new day rotates the file written by an earlier one."""
        log = self.make_log()
        log.frame_crossed("CP_1", "from_station", None, b'"day 1"')
        await log.flush()
        self.clock.advance(86400)
        log.frame_crossed("CP_1", "from_station", None, b'"day 2"')
        await log.flush()
        self.assertEqual(read_lines(self.path(FILE_NAME + ".2030_1_1"))[0]["time"], "2030-01-01T23:59:59.000Z")
        self.assertEqual(read_lines(self.path())[0]["time"], "2030-01-02T23:59:59.000Z")

    async def test_bounded_drops_and_counts(self):
        """Beyond max_pending waiting lines, new frames are dropped and counted, with one warning."""
        log = self.make_log(max_pending=2)
        warnings = []
        from twisted.logger import globalLogPublisher

        def observe(event):
            if "dropping new frames" in event.get("log_format", ""):
                warnings.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        for number in range(5):
            log.frame_crossed("CP_1", "from_station", None, b"%d" % number)
        self.assertEqual(log.dropped, 3)
        self.assertEqual(len(warnings), 1)
        await log.flush()
        self.assertEqual([line["frame"] for line in read_lines(self.path())], ["0", "1"])

    async def test_stop_flushes_closes_and_refuses_later_frames(self):
        """stopService writes what is waiting; frames after it are dropped, not written."""
        log = self.make_log()
        log.frame_crossed("CP_1", "to_station", None, b'[3,"1",{}]')
        await log.stopService()
        self.assertEqual(len(read_lines(self.path())), 1)
        log.frame_crossed("CP_1", "to_station", None, b'[3,"2",{}]')
        self.assertEqual(log.dropped, 1)
        self.assertFalse(log._pool.started)

    async def test_write_errors_are_counted_and_logged_once(self):
        """A directory that is gone costs the lines (counted, one error logged), not the daemon; it recovers."""
        from twisted.logger import formatEvent, globalLogPublisher

        messages = []
        globalLogPublisher.addObserver(messages.append)
        self.addCleanup(globalLogPublisher.removeObserver, messages.append)
        log = self.make_log()
        shutil.rmtree(self.directory)
        for _ in range(3):
            log.frame_crossed("CP_1", "from_station", None, b"[]")
            await log.flush()
        self.assertEqual((log.written, log.failed), (0, 3))
        os.makedirs(self.directory)
        log.frame_crossed("CP_1", "from_station", None, b"[]")
        await log.flush()
        self.assertEqual(log.written, 1)
        texts = [formatEvent(event) for event in messages if "traffic log:" in formatEvent(event)]
        self.assertEqual(len(texts), 2, texts)
        self.assertIn("cannot write to", texts[0])
        self.assertIn("writing again; 3 lines were lost", texts[1])

    async def test_full_disk_one_error_per_outage_whole_lines_only(self):
        """ENOSPC, even after a short write: lines lost and counted, one error line, no half line; one line on recovery."""
        from twisted.logger import formatEvent, globalLogPublisher

        messages = []
        globalLogPublisher.addObserver(messages.append)
        self.addCleanup(globalLogPublisher.removeObserver, messages.append)
        from ocppproxy.daemon.trafficlog import TrafficFile

        disk = Disk()
        opened = TrafficFile._openFile

        def open_on_disk(file):
            opened(file)
            file._file = FullDisk(file._file, disk)

        self.patch(TrafficFile, "_openFile", open_on_disk)
        # A file reopened after an error belongs to the day it was last written (its
        # mtime): lines of today, as in the daemon.
        self.clock = Clock()
        self.clock.advance(time.time())
        log = self.make_log()
        log.frame_crossed("CP_1", "from_station", None, b'[2,"a","Heartbeat",{}]')
        await log.flush()
        disk.free = 40  # less than one line
        for number in range(3):
            log.frame_crossed("CP_1", "from_station", None, b'[2,"%d","Heartbeat",{}]' % number)
            log.frame_crossed("CP_1", "to_upstream", "primary", b'[2,"%d","Heartbeat",{}]' % number)
            await log.flush()
        self.assertEqual((log.written, log.failed), (1, 6))
        self.assertEqual([line["frame"] for line in read_lines(self.path())], ['[2,"a","Heartbeat",{}]'])
        disk.free = None
        log.frame_crossed("CP_1", "from_station", None, b'[2,"b","Heartbeat",{}]')
        await log.flush()
        self.assertEqual((log.written, log.failed), (2, 6))
        frames = [line["frame"] for line in read_lines(self.path())]
        self.assertEqual(frames, ['[2,"a","Heartbeat",{}]', '[2,"b","Heartbeat",{}]'])
        texts = [formatEvent(event) for event in messages if "traffic log:" in formatEvent(event)]
        self.assertEqual(len(texts), 2, texts)
        self.assertIn(f"cannot write to {self.directory}: [Errno 28] No space left on device", texts[0])
        self.assertIn("writing again; 6 lines were lost", texts[1])

    async def test_recovers_after_a_rotation_that_could_not_open_the_new_file(self):
        """A new day's file that cannot be created (full disk) costs that batch; the next one opens it afresh."""
        from ocppproxy.daemon.trafficlog import TrafficFile

        log = self.make_log()
        log.frame_crossed("CP_1", "from_station", None, b'"day 1"')
        await log.flush()
        self.clock.advance(2)
        opened = TrafficFile._openFile

        def disk_full(file):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(TrafficFile, "_openFile", disk_full)
        log.frame_crossed("CP_1", "from_station", None, b'"day 2, lost"')
        await log.flush()
        self.patch(TrafficFile, "_openFile", opened)
        log.frame_crossed("CP_1", "from_station", None, b'"day 2"')
        await log.flush()
        self.assertEqual((log.written, log.failed), (2, 1))
        self.assertEqual([line["frame"] for line in read_lines(self.path())], ['"day 2"'])
        self.assertEqual([line["frame"] for line in read_lines(self.path(FILE_NAME + ".2030_1_1"))], ['"day 1"'])
