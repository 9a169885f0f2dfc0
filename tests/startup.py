"""Start-up as twistd does it, for tests of configuration errors."""

from __future__ import annotations

import io
import sys

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.daemon.tap import Options


def config_error_output(test: SynchronousTestCase, path: str) -> str:
    """What C{ocppproxy -c path} writes to standard error when it stops on a configuration error (exit 2)."""
    stderr = io.StringIO()
    test.patch(sys, "stderr", stderr)
    with test.assertRaises(SystemExit) as caught:
        Options().parseOptions(["-c", path])
    test.assertEqual(caught.exception.code, 2)
    return stderr.getvalue()
