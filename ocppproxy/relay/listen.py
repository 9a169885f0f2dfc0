"""
A listening endpoint that reports how listening went: what the proxy's, the status
page's and the API's L{StreamServerEndpointService}s listen with; and, for the two HTTP
services, the listener child that logs the outcome and fires a Deferred with it.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from ..logs import proxy_logger


@implementer(IStreamServerEndpoint)
class ListenEndpoint:
    """
    The endpoint string C{description}, parsed only when listening starts, reporting the
    outcome: C{listening(port)} or C{failed(failure)}. A failure is consumed (the
    L{Deferred} from L{listen} then fires with None), so it is told once, by C{failed};
    a C{systemd:} string naming no inherited socket is such a failure, not a crash, and
    so, with C{parse_errors}, is a string that does not parse.
    """

    def __init__(
        self,
        reactor,
        description: str,
        listening: Callable[[object], None],
        failed: Callable[[Failure], None],
        parse_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self._reactor = reactor
        self.description = description
        self._listening = listening
        self._failed = failed
        self._parse_errors = parse_errors

    def listen(self, factory) -> Deferred:
        """Listen with C{factory}; fires with the port, or with None once a failure was reported."""
        try:
            endpoint = serverFromString(self._reactor, self.description)
        except (IndexError, KeyError) as error:
            if not self.description.startswith("systemd:"):
                if isinstance(error, self._parse_errors):
                    return fail(error).addErrback(self._failed)
                raise
            # Twisted's systemd: parser looks the inherited socket up in a list or by name.
            listening = fail(ValueError("systemd passed no such socket (is the socket unit active?)"))
        except self._parse_errors as error:
            return fail(error).addErrback(self._failed)
        else:
            listening = endpoint.listen(factory)
        return listening.addCallbacks(self._report_port, self._failed)

    def _report_port(self, port):
        self._listening(port)
        return port


class ReportedListener(StreamServerEndpointService):
    """
    A service listening on the endpoint string C{description} with C{factory}: once it
    listens, C{"<what> on <address>"} is logged and L{listening} fires with the port; if
    it cannot, one error line says so (C{"<name>: cannot listen on ...; running without
    <without>"}), L{listening} fails (handled) and the daemon goes on without it.
    """

    _log = proxy_logger()

    def __init__(self, reactor, description: str, factory, what: str, name: str, without: str) -> None:
        self.listening: Deferred = Deferred()
        self._description = description
        self._what, self._name, self._without = what, name, without
        endpoint = ListenEndpoint(
            reactor, description, self._listened, self._failed, parse_errors=(ValueError, KeyError, TypeError)
        )
        super().__init__(endpoint, factory)

    def _listened(self, port) -> None:
        self._log.info("{what} on {address}", what=self._what, address=port.getHost())
        self.listening.callback(port)

    def _failed(self, failure: Failure) -> None:
        self._log.error(
            "{name}: cannot listen on {listen}: {reason}; running without {without}",
            name=self._name,
            listen=self._description,
            reason=failure.getErrorMessage(),
            without=self._without,
        )
        self.listening.errback(failure)
        self.listening.addErrback(lambda _: None)
