"""An in-memory reactor that resolves host names the same way on every Twisted that setup.cfg allows."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution, IReactorPluggableNameResolver
from twisted.internet.testing import MemoryReactorClock
from zope.interface import implementer


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class LiteralResolver:
    """Resolves IP address literals at once (C{127.0.0.1}, C{::1}); no other name."""

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
        receiver.resolutionBegan(_Resolution(hostName))
        address = IPv6Address if ":" in hostName else IPv4Address
        receiver.addressResolved(address(transportSemantics, hostName, portNumber))
        receiver.resolutionComplete()
        return receiver


@implementer(IReactorPluggableNameResolver)
class ResolvingMemoryReactor(MemoryReactorClock):
    """
    L{MemoryReactorClock} whose C{HostnameEndpoint} connections show in C{tcpClients}
    at once. Twisted before 25 gave its memory reactor no name resolver, so the endpoint
    resolved in the global reactor's thread pool and the connection never showed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.nameResolver = LiteralResolver()

    def installNameResolver(self, resolver):
        previous, self.nameResolver = self.nameResolver, resolver
        return previous
