"""Log lines for the journal: syslog priority prefixes when standard output is the journal's stream."""

from __future__ import annotations

import io
import os

from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.daemon.journal import format_for_journal, is_journal_stream, log_observer


def event(level, text="station {station} connected", **fields):
    return {"log_format": text, "log_level": level, "log_namespace": "ocppproxy.proxy", "log_time": 0.0, **fields}


class FormatTests(SynchronousTestCase):
    def test_priorities(self):
        """Each level gets its syslog priority; no time stamp (journald has its own)."""
        lines = {
            level: format_for_journal(event(level, station="CP_1"))
            for level in (LogLevel.critical, LogLevel.error, LogLevel.warn, LogLevel.info, LogLevel.debug)
        }
        self.assertEqual(lines[LogLevel.info], "<6>[ocppproxy.proxy#info] station CP_1 connected\n")
        self.assertEqual(
            [line[:3] for line in lines.values()], ["<2>", "<3>", "<4>", "<6>", "<7>"]
        )

    def test_legacy_event_without_level_is_info(self):
        """An event without a level (old-style twisted.python.log) is logged at info."""
        self.assertEqual(format_for_journal({"log_format": "hello", "log_system": "-"}), "<6>[-] hello\n")

    def test_every_line_has_the_prefix(self):
        """A multi-line event (an alert, a traceback) keeps its level on every line."""
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        text = format_for_journal(event(LogLevel.error, "ALERT {subject}\nline two", subject="s", log_failure=failure))
        lines = text.splitlines()
        self.assertGreater(len(lines), 3)
        self.assertTrue(all(line.startswith("<3>") for line in lines), lines)
        self.assertIn("ZeroDivisionError", text)


class StreamTests(SynchronousTestCase):
    def pipe(self):
        read, write = os.pipe()
        self.addCleanup(os.close, read)
        stream = os.fdopen(write, "w")
        self.addCleanup(stream.close)
        status = os.fstat(write)
        return stream, f"{status.st_dev}:{status.st_ino}"

    def test_journal_stream_is_recognised(self):
        """JOURNAL_STREAM naming this very stream means the journal; another one, or none, does not."""
        stream, journal = self.pipe()
        other, elsewhere = self.pipe()
        self.assertTrue(is_journal_stream(stream, {"JOURNAL_STREAM": journal}))
        self.assertFalse(is_journal_stream(stream, {"JOURNAL_STREAM": elsewhere}))
        self.assertFalse(is_journal_stream(stream, {}))
        self.assertFalse(is_journal_stream(stream, {"JOURNAL_STREAM": "garbage"}))
        self.assertFalse(is_journal_stream(io.StringIO(), {"JOURNAL_STREAM": journal}))

    def test_observer_for_the_journal(self):
        """log_observer writes priority-prefixed lines on the journal stream, twistd's text elsewhere."""
        stream = io.StringIO()
        log_observer(stream, {})(event(LogLevel.warn, station="CP_1"))
        self.assertRegex(stream.getvalue(), r"^\d{4}-\d\d-\d\dT.* \[ocppproxy.proxy#warn\] station CP_1 connected\n$")
        journal, name = self.pipe()
        written = []
        journal.write = written.append
        log_observer(journal, {"JOURNAL_STREAM": name})(event(LogLevel.warn, station="CP_1"))
        self.assertEqual(written, ["<4>[ocppproxy.proxy#warn] station CP_1 connected\n"])
