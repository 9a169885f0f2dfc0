"""
Stopping a tree of services without hiding a child's failure: Twisted's
L{MultiService.stopService} gathers its children in a L{DeferredList} that swallows
their errors (buildbot's C{AsyncMultiService} is the model).
"""

from __future__ import annotations

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.python.failure import Failure

from ..logs import proxy_logger

_log = proxy_logger(__name__)


def first_failure(results: list[tuple[bool, object]]) -> Failure | None:
    """The first failure of a L{DeferredList}'s C{results}, or None when all succeeded."""
    for succeeded, result in results:
        if not succeeded:
            return result
    return None


def stop_children(parent: MultiService) -> Deferred[None]:
    """
    Stop every running child of C{parent}, the last added first, all of them even when one
    fails; a failure is logged with the child's name. Fires once every child has stopped,
    with the first failure if any. (A child not running is left alone: stopping a
    L{StreamServerEndpointService} that never started would raise.)
    """
    children = [child for child in list(parent)[::-1] if child.running]
    stopping = [maybeDeferred(child.stopService) for child in children]
    for child, stopped in zip(children, stopping):
        stopped.addErrback(_log_stop_failure, child)
    return DeferredList(stopping, consumeErrors=True).addCallback(first_failure)


def _log_stop_failure(failure: Failure, child: Service) -> Failure:
    _log.failure("service {service} failed to stop", failure, service=child.name or type(child).__name__)
    return failure


class ServiceTree(MultiService):
    """
    A L{MultiService} whose L{stopService} reports its children's failures: every running
    child is stopped (the last added first), and the returned Deferred fails with the first
    child's failure once all of them have stopped.
    """

    def stopService(self) -> Deferred[None]:
        """Stop every child; fires when all have stopped, failing with the first child failure."""
        Service.stopService(self)
        return stop_children(self)
