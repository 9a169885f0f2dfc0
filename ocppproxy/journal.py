"""
An alias of L{ocppproxy.daemon.journal}: installed systemd units run
``twistd --logger=ocppproxy.journal.log_observer``, the path before the daemon package.
"""

from .daemon.journal import log_observer

__all__ = ["log_observer"]
