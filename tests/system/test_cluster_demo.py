"""``make cluster-demo`` works: run as the Makefile runs it, it ends by itself, with status 0 and the right ids."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Each of its steps is bounded; all of them take well under half a minute.
DEMO_TIMEOUT = 90


class ClusterDemoTests(SynchronousTestCase):
    def test_it_runs_to_the_end(self):
        """Six stations charge through three instances, one is killed, its stations come back, the ids are right."""
        for binary, package in (("redis-server", "redis-server"), ("haproxy", "haproxy")):
            if shutil.which(binary) is None:
                raise SkipTest(f"{binary} is not installed (Debian: apt-get install {package})")
        # No PYTHONPATH: the installed package and plugin run, as for users.
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        ran = subprocess.run(
            [sys.executable, os.path.join(ROOT, "demo", "run_cluster_demo.py")],
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT,
            env=env,
            check=False,
        )
        self.assertEqual(ran.returncode, 0, ran.stdout[-3000:] + ran.stderr[-3000:])
        self.assertIn("stations reconnected through HAProxy in", ran.stdout)
        self.assertRegex(ran.stdout, r"primary got StopTransaction \[\d+\], secondary got StopTransaction \[50\d\d\]")
        self.assertIn("cluster demo done", ran.stdout)
