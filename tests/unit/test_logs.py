"""The configured log level in front of twistd's observers: Twisted's own lines follow it too."""

from __future__ import annotations

from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.logs import filter_twistd_observers, set_log_level


class FilterTwistdObserversTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        self.publisher = LogPublisher(self.events.append)
        self.twisted_log = Logger(namespace="twisted.application.internet.ClientService", observer=self.publisher)
        self.addCleanup(set_log_level, "info")

    def test_info_lines_dropped_at_warn(self):
        """After the filter, a Twisted info line is dropped at warn and its warnings still pass."""
        self.assertTrue(filter_twistd_observers(self.publisher))
        set_log_level("warn")
        self.twisted_log.info("Scheduling retry {attempt}", attempt=1)
        self.twisted_log.warn("a warning")
        self.assertEqual([event["log_format"] for event in self.events], ["a warning"])

    def test_level_changes_apply(self):
        """The filter reads the level in force: back at info after a reload, info lines show again."""
        filter_twistd_observers(self.publisher)
        set_log_level("error")
        self.twisted_log.info("hidden")
        set_log_level("info")
        self.twisted_log.info("shown")
        self.assertEqual([event["log_format"] for event in self.events], ["shown"])

    def test_wrapped_once(self):
        """A second call wraps nothing again: each event reaches the observer once."""
        filter_twistd_observers(self.publisher)
        filter_twistd_observers(self.publisher)
        self.twisted_log.info("once")
        self.assertEqual(len(self.events), 1)

    def test_publisher_without_observer_list(self):
        """A Twisted without the private observer list: nothing changes, and False says so."""

        class Publisher:
            def __call__(self, event):
                pass

        self.assertFalse(filter_twistd_observers(Publisher()))


class ModuleLoggerNamespaceTests(SynchronousTestCase):
    def test_module_level_loggers_named_after_their_module(self):
        """Module-level loggers report their own module's name, not ocppproxy.logs."""
        from ocppproxy.daemon import tap
        from ocppproxy.notify import channels
        from ocppproxy.relay import connection_options, observers, service_tree
        from ocppproxy.status import service
        from ocppproxy.fastpath import check

        for module in (channels, tap, service_tree, connection_options, observers, check, service):
            self.assertEqual(module._log.namespace, module.__name__)
