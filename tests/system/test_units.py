"""The systemd units in etc/: what they promise, and systemd's own check of them where it is installed."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys

from twisted.python.reflect import namedAny
from twisted.trial.unittest import SkipTest, SynchronousTestCase

ETC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "etc")
SERVICE = os.path.join(ETC, "ocppproxy.service")
SOCKET = os.path.join(ETC, "ocppproxy.socket")
INSTALLED_TWISTD = "/opt/ocppproxy/venv/bin/twistd"


def read_unit(path: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str
    unit.read(path, encoding="utf-8")
    return unit


class ServiceUnitTests(SynchronousTestCase):
    def setUp(self):
        self.service = read_unit(SERVICE)["Service"]

    def test_notify_with_watchdog(self):
        """Type=notify with a 30 s watchdog; only the main process may notify."""
        self.assertEqual(
            (self.service["Type"], self.service["NotifyAccess"], self.service["WatchdogSec"]), ("notify", "main", "30")
        )

    def test_reload_and_state_directory(self):
        """systemctl reload sends SIGHUP; /var/lib/ocppproxy is writable for a state_file."""
        self.assertEqual(self.service["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertEqual(self.service["StateDirectory"], "ocppproxy")

    def test_hardening_kept(self):
        """The sandbox and restart policy stay as they were."""
        expected = {
            "DynamicUser": "yes",
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "Restart": "on-failure",
            "RestartPreventExitStatus": "2",
            "KillSignal": "SIGTERM",
        }
        self.assertEqual({key: self.service.get(key) for key in expected}, expected)

    def test_logger_is_importable(self):
        """ExecStart's --logger names the journal observer factory."""
        command = shlex.split(self.service["ExecStart"])
        (option,) = [word for word in command if word.startswith("--logger=")]
        self.assertEqual(option, "--logger=ocppproxy.daemon.journal.log_observer")
        self.assertTrue(callable(namedAny(option.partition("=")[2])))
        self.assertEqual(command[0], INSTALLED_TWISTD)
        self.assertEqual(command[command.index("ocppproxy") + 1 :], ["-c", "/etc/ocppproxy/ocppproxy.yaml"])

    def test_earlier_logger_path_still_works(self):
        """Units installed before the daemon package name ocppproxy.journal.log_observer: the same observer factory."""
        self.assertIs(namedAny("ocppproxy.journal.log_observer"), namedAny("ocppproxy.daemon.journal.log_observer"))


class SystemdAnalyzeTests(SynchronousTestCase):
    def test_units_verify(self):
        """systemd-analyze verify finds nothing to say about the service and socket units."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed: etc/ocppproxy.service and .socket not verified")
        # verify checks that ExecStart's program exists: point it at this venv's twistd.
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(SERVICE, encoding="utf-8") as unit:
            text = unit.read().replace(INSTALLED_TWISTD, os.path.join(os.path.dirname(sys.executable), "twistd"))
        with open(os.path.join(directory, "ocppproxy.service"), "w", encoding="utf-8") as out:
            out.write(text)
        shutil.copy(SOCKET, directory)
        result = subprocess.run(
            [analyze, "verify", "ocppproxy.service", "ocppproxy.socket"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))
