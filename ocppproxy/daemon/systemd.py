"""
systemd's service notifications (``Type=notify``), without libsystemd: the sd_notify
datagram protocol over C{$NOTIFY_SOCKET}. Without systemd nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred

from ..logs import proxy_logger
from ..periodic import Periodic


def notify_address(environ: Mapping[str, str]) -> str | None:
    """
    The AF_UNIX address in C{$NOTIFY_SOCKET}: a path, or an abstract socket name (a
    leading C{@} becomes a NUL byte). None when unset, or not an AF_UNIX address.
    """
    address = environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """
    How often to send WATCHDOG=1, in seconds: half of C{$WATCHDOG_USEC}. None when the
    watchdog is off, or meant for another process (C{$WATCHDOG_PID} is not C{pid}).
    """
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid and watchdog_pid != str(pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class SystemdNotifier:
    """Sends sd_notify states (C{"READY=1"}, ...) to C{address}; does nothing when it is None."""

    _log = proxy_logger()

    def __init__(self, address: str | None) -> None:
        self.address = address

    def send(self, state: str) -> bool:
        """Send C{state} in one datagram without blocking; False if not sent (logged)."""
        if self.address is None:
            return False
        # Out of file descriptors (many stations) must cost one notification, not the watchdog loop.
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(state.encode("utf-8"), self.address)
        except OSError as error:
            self._log.warn("systemd: cannot send {state}: {reason}", state=state.split("\n", 1)[0], reason=str(error))
            return False
        return True


class SystemdService(MultiService):
    """
    Keeps systemd informed: READY=1 once C{listening} fires (the proxy listens),
    WATCHDOG=1 every half C{$WATCHDOG_USEC} from start until stop (a L{Periodic} child),
    STOPPING=1 when the daemon starts shutting down. Add it last to the service tree, so
    that it is stopped first.
    """

    def __init__(self, listening: Deferred, reactor, environ: Mapping[str, str] = os.environ, pid: int | None = None):
        super().__init__()
        self.notifier = SystemdNotifier(notify_address(environ))
        self._listening = listening
        interval = watchdog_interval(environ, os.getpid() if pid is None else pid)
        if self.notifier.address is not None and interval is not None:
            Periodic(interval, lambda: self.notifier.send("WATCHDOG=1"), reactor).setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        if self.notifier.address is not None:
            self._listening.addCallback(self._ready)

    def _ready(self, port):
        self.notifier.send(f"READY=1\nSTATUS=listening on {port.getHost()}")
        return port

    def stopService(self) -> Deferred[None]:
        stopped = super().stopService()
        self.notifier.send("STOPPING=1")
        return stopped
