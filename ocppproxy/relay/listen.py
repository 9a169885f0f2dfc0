"""
A listening endpoint that reports how listening went: what the proxy's and the status
page's L{StreamServerEndpointService}s listen with.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer


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
